// openData / readLabels: recognise the format of a SPEC from its content and open the reader.
#include "nncompress/data/dataset.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>

#include "convert.h"
#include "nncompress/data/npy.h"
#include "nncompress/data/tensor_proto_file.h"
#include "pipeline.h"
#include "readers.h"

namespace nnc::data {
namespace internal {
namespace fs = std::filesystem;
namespace {

constexpr const char* kDataFormats =
    "IDX, .npy, a TensorProto .pb, an image, or a folder of .pb files or images";

class ArrayReader : public SampleReader {
 public:
  ArrayReader(std::string source, std::unique_ptr<RawRows> rows, Plan plan, Shape sample_shape)
      : source_(std::move(source)),
        rows_(std::move(rows)),
        plan_(std::move(plan)),
        sample_shape_(std::move(sample_shape)) {}

  int64_t size() const override { return rows_->size(); }
  Shape sampleShape() const override { return sample_shape_; }
  std::string description() const override {
    return rows_->description() + ", " + std::to_string(size()) + " samples of " +
           shapeToString(rows_->sampleShape());
  }

  StatusOr<Tensor> readBatch(int64_t start, int64_t count) override {
    if (start < 0 || count < 0 || start > size() || count > size() - start) {
      return invalidArgument(source_ + ": batch [" + std::to_string(start) + ", " +
                             std::to_string(start + count) + ") is outside the " +
                             std::to_string(size()) + " samples");
    }
    Shape batch_shape = sample_shape_;
    batch_shape.insert(batch_shape.begin(), count);
    Tensor batch(DType::kFloat32, batch_shape);
    if (count == 0) return batch;
    NNC_RETURN_IF_ERROR(rows_->read(start, count, raw_).withContext("while reading " + source_));
    const Shape& raw_shape = rows_->sampleShape();
    const int64_t raw_numel = shapeNumel(raw_shape);
    const int64_t raw_bytes = storageBytes(rows_->dtype(), raw_numel);
    const int64_t out_numel = shapeNumel(sample_shape_);
    float* out = batch.mutableData<float>().data();
    for (int64_t i = 0; i < count; ++i) {
      sample_.resize(static_cast<size_t>(raw_numel));
      convertToFloat(rows_->dtype(), raw_.data() + i * raw_bytes, raw_numel, sample_.data());
      applyPlan(plan_, raw_shape, sample_, out + i * out_numel);
    }
    return batch;
  }

  StatusOr<Tensor> readStored(int64_t start, int64_t count) override {
    if (start < 0 || count < 0 || start > size() || count > size() - start) {
      return invalidArgument(source_ + ": batch [" + std::to_string(start) + ", " +
                             std::to_string(start + count) + ") is outside the " +
                             std::to_string(size()) + " samples");
    }
    Shape shape = rows_->sampleShape();
    shape.insert(shape.begin(), count);
    std::string bytes;
    if (count > 0)
      NNC_RETURN_IF_ERROR(rows_->read(start, count, bytes).withContext("while reading " + source_));
    return Tensor::fromBytes(rows_->dtype(), shape, std::move(bytes));
  }

 private:
  std::string source_;
  std::unique_ptr<RawRows> rows_;
  Plan plan_;
  Shape sample_shape_;
  std::string raw_;            // reused between batches
  std::vector<float> sample_;  // reused between samples
};

bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string lowerExtension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

StatusOr<std::unique_ptr<SampleReader>> openDirectory(const std::string& dir,
                                                      const Preprocess& preprocess,
                                                      FolderLayout layout) {
  // A folder with .pb files is a TensorProto folder (ONNX test_data_set_N: input_0.pb, ...
  // are the data, output_*.pb the expected outputs); anything else is an image folder.
  std::error_code ec;
  std::vector<std::string> pb_files, inputs;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    const std::string name = it->path().filename().string();
    if (name.starts_with(".") || !it->is_regular_file(type_ec)) continue;
    if (lowerExtension(name) != ".pb") continue;
    pb_files.push_back(it->path().string());
    if (name.starts_with("input_")) inputs.push_back(it->path().string());
  }
  if (ec) return ioError(dir + ": cannot list: " + ec.message());
  if (pb_files.empty()) return openImageFolder(dir, preprocess, layout);
  std::vector<std::string>& files = inputs.empty() ? pb_files : inputs;
  std::sort(files.begin(), files.end(), naturalLess);
  NNC_ASSIGN_OR_RETURN(auto rows, openTensorProtoRows(std::move(files), dir));
  return openArrayReader(std::move(rows), preprocess, dir);
}

Status checkExists(const std::string& spec) {
  if (spec.empty()) return invalidArgument("empty data path");
  std::error_code ec;
  const auto status = fs::status(spec, ec);
  if (status.type() == fs::file_type::not_found)
    return ioError(spec + ": no such file or directory");
  if (ec) return ioError(spec + ": " + ec.message());
  return Status::ok();
}

bool isDirectory(const std::string& spec) {
  std::error_code ec;
  return fs::is_directory(spec, ec);
}

StatusOr<std::vector<int64_t>> labelsFromText(const std::string& text, const std::string& path) {
  std::vector<int64_t> labels;
  size_t begin = 0;
  int64_t line_number = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    ++line_number;
    std::string_view line(text.data() + begin, end - begin);
    begin = end + 1;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
      line.remove_suffix(1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front())))
      line.remove_prefix(1);
    if (line.empty()) continue;
    int64_t value = 0;
    const auto [ptr, errc] = std::from_chars(line.data(), line.data() + line.size(), value);
    if (errc != std::errc() || ptr != line.data() + line.size()) {
      return invalidArgument(path + ":" + std::to_string(line_number) + ": '" +
                             std::string(line.substr(0, 40)) +
                             "' is not an integer label (expected one integer per line)");
    }
    labels.push_back(value);
  }
  if (labels.empty()) return invalidArgument(path + ": the label file has no labels");
  return labels;
}

// Labels from a tensor: [N] or [N, 1], integer values (integral floats are accepted).
StatusOr<std::vector<int64_t>> labelsFromTensor(const Tensor& t, const std::string& path) {
  const Shape& s = t.shape();
  if (!(s.size() == 1 || (s.size() == 2 && s[1] == 1))) {
    return invalidArgument(path + ": labels must have shape [N] or [N,1], not " + shapeToString(s));
  }
  if (!isConvertibleToFloat(t.dtype())) {
    return invalidArgument(path + ": labels of dtype " + dtypeName(t.dtype()) +
                           " are not supported (expected integers)");
  }
  std::vector<int64_t> labels(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (isInteger(t.dtype()) || t.dtype() == DType::kBool) {
      labels[i] = t.dtype() == DType::kInt64 ? t.data<int64_t>()[i]
                                             : static_cast<int64_t>(t.elementAsDouble(i));
      continue;
    }
    const double v = t.elementAsDouble(i);
    if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 9e15) {
      return invalidArgument(path + ": label " + std::to_string(i) + " is " + std::to_string(v) +
                             ", not an integer");
    }
    labels[i] = static_cast<int64_t>(v);
  }
  return labels;
}

// Reads a RawRows source whole (labels are small).
StatusOr<Tensor> rowsToTensor(RawRows& rows) {
  std::string bytes;
  NNC_RETURN_IF_ERROR(rows.read(0, rows.size(), bytes));
  Shape shape = rows.sampleShape();
  shape.insert(shape.begin(), rows.size());
  return Tensor::fromBytes(rows.dtype(), shape, std::move(bytes));
}

}  // namespace

StatusOr<std::unique_ptr<SampleReader>> openArrayReader(std::unique_ptr<RawRows> rows,
                                                        const Preprocess& preprocess,
                                                        const std::string& source) {
  if (!isConvertibleToFloat(rows->dtype())) {
    return invalidArgument(source + ": " + dtypeName(rows->dtype()) +
                           " data is not supported (numeric types only)");
  }
  NNC_ASSIGN_OR_RETURN(Plan plan, makePlan(preprocess, rows->dtype() == DType::kUInt8));
  NNC_ASSIGN_OR_RETURN(Shape shape, planOutputShape(plan, rows->sampleShape(), source));
  return std::unique_ptr<SampleReader>(
      new ArrayReader(source, std::move(rows), std::move(plan), std::move(shape)));
}

bool looksLikeText(std::string_view bytes) {
  if (bytes.empty()) return false;
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (!(std::isprint(c) || c == '\n' || c == '\r' || c == '\t')) return false;
  }
  return true;
}

bool naturalLess(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (isDigit(a[i]) && isDigit(b[j])) {
      size_t ie = i, je = j;
      while (ie < a.size() && isDigit(a[ie])) ++ie;
      while (je < b.size() && isDigit(b[je])) ++je;
      // Compare the numbers by value: strip leading zeros, then by length, then digits.
      size_t is = i, js = j;
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      const int cmp = a.compare(is, ie - is, b, js, je - js);
      if (cmp != 0) return cmp < 0;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  if ((a.size() - i) != (b.size() - j)) return a.size() - i < b.size() - j;
  return a < b;
}

}  // namespace internal

StatusOr<Tensor> SampleReader::readStored(int64_t, int64_t) {
  return unsupported(description() +
                     ": decoded data has no stored integer values (give a .npy or .pb file)");
}

StatusOr<std::vector<Tensor>> SampleReader::readFeeds(int64_t start, int64_t count) {
  NNC_ASSIGN_OR_RETURN(Tensor x, readBatch(start, count));
  std::vector<Tensor> feeds;
  feeds.push_back(std::move(x));
  return feeds;
}

using internal::ByteSource;

StatusOr<std::unique_ptr<SampleReader>> openData(const std::string& spec,
                                                 const Preprocess& preprocess,
                                                 FolderLayout layout) {
  NNC_RETURN_IF_ERROR(internal::checkExists(spec));
  if (internal::isDirectory(spec)) return internal::openDirectory(spec, preprocess, layout);
  NNC_ASSIGN_OR_RETURN(auto source, ByteSource::open(spec));
  if (source->size() == 0) return invalidArgument(spec + ": file is empty");
  const std::string head = source->head(64);
  if (internal::looksLikeIdx(head)) {
    NNC_ASSIGN_OR_RETURN(auto rows, internal::openIdxRows(std::move(source)));
    return internal::openArrayReader(std::move(rows), preprocess, spec);
  }
  if (internal::looksLikeNpy(head)) {
    NNC_ASSIGN_OR_RETURN(auto rows, internal::openNpyRows(std::move(source)));
    return internal::openArrayReader(std::move(rows), preprocess, spec);
  }
  if (!source->gzipped() && internal::looksLikeImage(head))
    return internal::openImageFile(spec, preprocess);
  NNC_ASSIGN_OR_RETURN(std::string bytes, source->readAll());
  if (internal::looksLikeText(std::string_view(bytes).substr(0, 1 << 16))) {
    return invalidArgument(spec + ": is a text file (labels?), not data; --data takes " +
                           internal::kDataFormats);
  }
  // TensorProto has no magic number: accept the file when it parses as one.
  auto tensor = parseTensorProto(bytes, spec);
  if (tensor.isOk()) {
    std::vector<std::string> files = {spec};
    NNC_ASSIGN_OR_RETURN(auto rows, internal::openTensorProtoRows(std::move(files), spec));
    return internal::openArrayReader(std::move(rows), preprocess, spec);
  }
  if (internal::lowerExtension(spec) == ".pb") return tensor.status();
  return invalidArgument(spec + ": not a recognised data format (expected " +
                         internal::kDataFormats + ")");
}

StatusOr<std::vector<int64_t>> readLabels(const std::string& spec) {
  NNC_RETURN_IF_ERROR(internal::checkExists(spec));
  if (internal::isDirectory(spec)) return internal::imageFolderLabels(spec);
  NNC_ASSIGN_OR_RETURN(auto source, ByteSource::open(spec));
  if (source->size() == 0) return invalidArgument(spec + ": file is empty");
  const std::string head = source->head(64);
  std::optional<Tensor> tensor;
  if (internal::looksLikeIdx(head)) {
    NNC_ASSIGN_OR_RETURN(auto rows, internal::openIdxRows(std::move(source)));
    NNC_ASSIGN_OR_RETURN(tensor, internal::rowsToTensor(*rows));
  } else if (internal::looksLikeNpy(head)) {
    NNC_ASSIGN_OR_RETURN(tensor, readNpy(spec));
  } else {
    NNC_ASSIGN_OR_RETURN(std::string bytes, source->readAll());
    if (internal::looksLikeText(bytes)) return internal::labelsFromText(bytes, spec);
    auto parsed = parseTensorProto(bytes, spec);
    if (!parsed.isOk()) {
      if (internal::lowerExtension(spec) == ".pb") return parsed.status();
      return invalidArgument(spec + ": not a recognised label format (expected IDX, .npy or " +
                             "TensorProto .pb of integers, a text file of one integer per " +
                             "line, or an image folder with class subfolders)");
    }
    tensor = std::move(parsed).value();
  }
  return internal::labelsFromTensor(*tensor, spec);
}

}  // namespace nnc::data
