// NumPy .npy format (numpy/lib/format.py):
//   "\x93NUMPY", major, minor, header length (uint16 LE for v1, uint32 LE for v2/v3), then a
//   Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
//   spaces and '\n' so that the data starts at a multiple of 64, then the raw C-order data.
#include "nncompress/data/npy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "convert.h"
#include "readers.h"

namespace nnc::data {
namespace internal {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

char nativeOrderChar() { return std::endian::native == std::endian::little ? '<' : '>'; }

// "<f4" -> float32 etc.; sets swap when the stored byte order is not ours.
std::optional<DType> dtypeFromDescr(const std::string& descr, bool& swap) {
  if (descr.size() < 3) return std::nullopt;
  const char order = descr[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') return std::nullopt;
  const std::string kind = descr.substr(1);
  swap = (order == '<' || order == '>') && order != nativeOrderChar();
  if (kind == "f4") return DType::kFloat32;
  if (kind == "f8") return DType::kFloat64;
  if (kind == "f2") return DType::kFloat16;
  if (kind == "u1") return DType::kUInt8;
  if (kind == "i1") return DType::kInt8;
  if (kind == "u2") return DType::kUInt16;
  if (kind == "i2") return DType::kInt16;
  if (kind == "u4") return DType::kUInt32;
  if (kind == "i4") return DType::kInt32;
  if (kind == "u8") return DType::kUInt64;
  if (kind == "i8") return DType::kInt64;
  if (kind == "b1") return DType::kBool;
  return std::nullopt;
}

std::optional<std::string> descrFromDtype(DType dtype) {
  const std::string o(1, nativeOrderChar());
  switch (dtype) {
    case DType::kFloat32:
      return o + "f4";
    case DType::kFloat64:
      return o + "f8";
    case DType::kFloat16:
      return o + "f2";
    case DType::kUInt8:
      return std::string("|u1");
    case DType::kInt8:
      return std::string("|i1");
    case DType::kBool:
      return std::string("|b1");
    case DType::kUInt16:
      return o + "u2";
    case DType::kInt16:
      return o + "i2";
    case DType::kUInt32:
      return o + "u4";
    case DType::kInt32:
      return o + "i4";
    case DType::kUInt64:
      return o + "u8";
    case DType::kInt64:
      return o + "i8";
    default:
      return std::nullopt;
  }
}

// A tiny reader for the header dict: string, bool and tuple-of-int values only.
class DictParser {
 public:
  explicit DictParser(std::string_view text) : text_(text) {}

  bool parse(std::string& descr, bool& fortran, Shape& shape) {
    bool has_descr = false, has_fortran = false, has_shape = false;
    if (!consume('{')) return false;
    while (true) {
      if (consume('}')) break;
      std::string key;
      if (!parseString(key) || !consume(':')) return false;
      if (key == "descr") {
        if (!parseString(descr)) return false;  // structured dtypes (lists) are not supported
        has_descr = true;
      } else if (key == "fortran_order") {
        if (!parseBool(fortran)) return false;
        has_fortran = true;
      } else if (key == "shape") {
        if (!parseTuple(shape)) return false;
        has_shape = true;
      } else {
        return false;
      }
      if (!consume(',')) {
        if (!consume('}')) return false;
        break;
      }
    }
    return has_descr && has_fortran && has_shape;
  }

 private:
  void skipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool consume(char c) {
    skipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool parseString(std::string& out) {
    skipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) return false;
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) return false;
    out = std::string(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return true;
  }
  bool parseBool(bool& out) {
    skipSpace();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}}) {
      const size_t n = std::strlen(word);
      if (text_.substr(pos_, n) == word) {
        pos_ += n;
        out = value;
        return true;
      }
    }
    return false;
  }
  bool parseTuple(Shape& out) {
    out.clear();
    if (!consume('(')) return false;
    while (true) {
      if (consume(')')) return true;
      skipSpace();
      int64_t value = 0;
      size_t digits = 0;
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
        if (value > (int64_t{1} << 56)) return false;
        value = value * 10 + (text_[pos_++] - '0');
        ++digits;
      }
      if (digits == 0) return false;
      // Python longs may carry an L suffix in files written by NumPy on Python 2.
      if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;
      out.push_back(value);
      if (!consume(',')) return consume(')');
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

class NpyRows : public RawRows {
 public:
  NpyRows(std::unique_ptr<ByteSource> source, NpyHeader header)
      : source_(std::move(source)), header_(std::move(header)) {
    sample_shape_.assign(header_.shape.begin() + 1, header_.shape.end());
    sample_bytes_ = storageBytes(header_.dtype, shapeNumel(sample_shape_));
  }
  DType dtype() const override { return header_.dtype; }
  const Shape& sampleShape() const override { return sample_shape_; }
  int64_t size() const override { return header_.shape[0]; }
  Status read(int64_t start, int64_t count, std::string& out) override {
    out.resize(static_cast<size_t>(count * sample_bytes_));
    NNC_RETURN_IF_ERROR(source_->read(header_.data_offset + start * sample_bytes_,
                                      count * sample_bytes_, out.data()));
    if (header_.swap_bytes) {
      const int width = dtypeBits(header_.dtype) / 8;
      swapBytes(out.data(), count * sample_bytes_ / width, width);
    }
    return Status::ok();
  }
  std::string description() const override {
    return std::string("npy ") + dtypeName(header_.dtype) + (source_->gzipped() ? " (gzip)" : "");
  }

 private:
  std::unique_ptr<ByteSource> source_;
  NpyHeader header_;
  Shape sample_shape_;
  int64_t sample_bytes_ = 0;
};

}  // namespace

bool looksLikeNpy(std::string_view head) {
  return head.size() >= kMagicSize && head.substr(0, kMagicSize) == std::string_view(kMagic);
}

StatusOr<NpyHeader> readNpyHeader(const ByteSource& source) {
  const std::string& path = source.path();
  const std::string pre = source.head(12);
  if (!looksLikeNpy(pre) || pre.size() < 10) return invalidArgument(path + ": not a .npy file");
  const int major = static_cast<unsigned char>(pre[6]);
  const auto byte = [&](size_t i) { return static_cast<int64_t>(static_cast<uint8_t>(pre[i])); };
  int64_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = byte(8) | (byte(9) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (pre.size() < 12) return invalidArgument(path + ": .npy header is truncated");
    header_len = byte(8) | (byte(9) << 8) | (byte(10) << 16) | (byte(11) << 24);
    header_start = 12;
  } else {
    return invalidArgument(path + ": unsupported .npy format version " + std::to_string(major));
  }
  if (header_start + header_len > source.size())
    return invalidArgument(path + ": .npy header is truncated");
  std::string header(static_cast<size_t>(header_len), '\0');
  NNC_RETURN_IF_ERROR(source.read(header_start, header_len, header.data()));

  NpyHeader out;
  std::string descr;
  bool fortran = false;
  if (!DictParser(header).parse(descr, fortran, out.shape))
    return invalidArgument(path + ": malformed .npy header: " + header);
  const auto dtype = dtypeFromDescr(descr, out.swap_bytes);
  if (!dtype) {
    return invalidArgument(path + ": unsupported .npy dtype '" + descr +
                           "' (supported: float16/32/64, int8-64, uint8-64, bool)");
  }
  out.dtype = *dtype;
  if (fortran) {
    return invalidArgument(path + ": .npy array is in Fortran order; save it in C order " +
                           "(numpy.ascontiguousarray)");
  }
  out.data_offset = header_start + header_len;
  const int64_t want = checkedStorageBytes(out.dtype, out.shape);
  const bool sample_ok =
      out.shape.empty() ||
      checkedStorageBytes(out.dtype, Shape(out.shape.begin() + 1, out.shape.end())) >= 0;
  if (want < 0 || !sample_ok || want != source.size() - out.data_offset) {
    return invalidArgument(
        path + ": .npy header says " + dtypeName(out.dtype) + " " + shapeToString(out.shape) +
        " (" + std::to_string(want) + " bytes of data) but the file has " +
        std::to_string(source.size() - out.data_offset) + " bytes after the header");
  }
  return out;
}

StatusOr<std::unique_ptr<RawRows>> openNpyRows(std::unique_ptr<ByteSource> source) {
  NNC_ASSIGN_OR_RETURN(NpyHeader header, readNpyHeader(*source));
  if (header.shape.empty()) {
    return invalidArgument(source->path() +
                           ": .npy holds a 0-d scalar; data needs at least one axis (samples)");
  }
  return std::unique_ptr<RawRows>(new NpyRows(std::move(source), std::move(header)));
}

}  // namespace internal

StatusOr<Tensor> readNpy(const std::string& path) {
  NNC_ASSIGN_OR_RETURN(auto source, internal::ByteSource::open(path));
  NNC_ASSIGN_OR_RETURN(internal::NpyHeader header, internal::readNpyHeader(*source));
  std::string bytes(static_cast<size_t>(source->size() - header.data_offset), '\0');
  NNC_RETURN_IF_ERROR(
      source->read(header.data_offset, static_cast<int64_t>(bytes.size()), bytes.data()));
  if (header.swap_bytes) {
    const int width = dtypeBits(header.dtype) / 8;
    internal::swapBytes(bytes.data(), static_cast<int64_t>(bytes.size()) / width, width);
  }
  return Tensor::fromBytes(header.dtype, header.shape, std::move(bytes));
}

Status writeNpy(const std::string& path, const Tensor& tensor) {
  const auto descr = internal::descrFromDtype(tensor.dtype());
  if (!descr) {
    return Status(StatusCode::kUnsupported, path + ": cannot write " + dtypeName(tensor.dtype()) +
                                                " to .npy (NumPy has no such dtype)");
  }
  // Python tuple syntax: "()", "(3,)", "(2, 3)".
  std::string shape = "(";
  for (size_t i = 0; i < tensor.shape().size(); ++i) {
    if (i > 0) shape += ", ";
    shape += std::to_string(tensor.shape()[i]);
  }
  shape += tensor.shape().size() == 1 ? ",)" : ")";
  std::string dict =
      "{'descr': '" + *descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces so that magic + version + length + dict + '\n' is a multiple of 64.
  const bool v2 = dict.size() + 1 + 10 > 65535;
  const size_t prefix = v2 ? 12 : 10;
  dict.append((64 - (prefix + dict.size() + 1) % 64) % 64, ' ');
  dict += '\n';
  std::string out(internal::kMagic, internal::kMagicSize);
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  const uint32_t len = static_cast<uint32_t>(dict.size());
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  if (v2) {
    out += static_cast<char>((len >> 16) & 0xff);
    out += static_cast<char>((len >> 24) & 0xff);
  }
  out += dict;

  // Atomic write: temp file beside the target, renamed when complete.
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string temp_name = ".";  // hidden, beside the target so the rename stays on one disk
  temp_name.append(target.filename().string()).append(".tmp.XXXXXX");
  std::string tmpl = (dir / temp_name).string();
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) return ioError(path + ": cannot create: " + std::strerror(errno));
  ::fchmod(fd, 0644);
  Status status;
  for (const std::string* part : {static_cast<const std::string*>(&out), &tensor.bytes()}) {
    size_t done = 0;
    while (status.isOk() && done < part->size()) {
      const ssize_t n = ::write(fd, part->data() + done, part->size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) status = ioError(path + ": write failed: " + std::strerror(errno));
      if (n > 0) done += static_cast<size_t>(n);
    }
  }
  if (::close(fd) != 0 && status.isOk())
    status = ioError(path + ": close failed: " + std::strerror(errno));
  if (status.isOk() && ::rename(tmpl.c_str(), path.c_str()) != 0)
    status = ioError(path + ": cannot write: " + std::strerror(errno));
  if (!status.isOk()) ::unlink(tmpl.c_str());
  return status;
}

}  // namespace nnc::data
