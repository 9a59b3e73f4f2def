// A minimal reader of the protobuf wire format for onnx.TensorProto, so that src/data needs no
// protobuf headers. Each field is a key varint (field_number << 3 | wire_type) followed by a
// varint (type 0), 8 bytes (type 1), a length-prefixed payload (type 2) or 4 bytes (type 5).
// TensorProto fields used here:
//   1 dims (repeated int64)   2 data_type (int32)    4 float_data (repeated float)
//   5 int32_data              7 int64_data           8 name (string)
//   9 raw_data (bytes, little-endian)                10 double_data   11 uint64_data
//   14 data_location (1 = EXTERNAL: rejected)
// Repeated numeric fields may be packed (type 2) or not; other fields are skipped.
#include "nncompress/data/tensor_proto_file.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>

#include "byte_source.h"
#include "convert.h"
#include "readers.h"

namespace nnc::data {
namespace {

class WireReader {
 public:
  WireReader(const char* data, size_t size) : p_(data), end_(data + size) {}
  bool done() const { return p_ >= end_; }

  bool varint(uint64_t& out) {
    out = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) return false;
      const uint8_t b = static_cast<uint8_t>(*p_++);
      out |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;  // more than 10 bytes
  }
  bool fixed(int bytes, uint64_t& out) {
    if (end_ - p_ < bytes) return false;
    out = 0;
    for (int i = 0; i < bytes; ++i)
      out |= static_cast<uint64_t>(static_cast<uint8_t>(p_[i])) << (8 * i);
    p_ += bytes;
    return true;
  }
  bool bytes(std::string_view& out) {
    uint64_t len = 0;
    if (!varint(len) || len > static_cast<uint64_t>(end_ - p_)) return false;
    out = std::string_view(p_, static_cast<size_t>(len));
    p_ += len;
    return true;
  }
  bool skip(int wire_type) {
    uint64_t ignored = 0;
    std::string_view ignored_bytes;
    switch (wire_type) {
      case 0:
        return varint(ignored);
      case 1:
        return fixed(8, ignored);
      case 2:
        return bytes(ignored_bytes);
      case 5:
        return fixed(4, ignored);
      default:
        return false;  // groups (3, 4) are not used by ONNX
    }
  }

 private:
  const char* p_;
  const char* end_;
};

// Appends the values of a repeated scalar field (packed or one value per key) as raw uint64.
// `fixed_bytes` is 0 for varint encoding, else 4 or 8.
bool readRepeated(WireReader& wire, int wire_type, int fixed_bytes, std::vector<uint64_t>& out) {
  const int single_type = fixed_bytes == 0 ? 0 : (fixed_bytes == 4 ? 5 : 1);
  uint64_t v = 0;
  if (wire_type == single_type) {
    if (!(fixed_bytes == 0 ? wire.varint(v) : wire.fixed(fixed_bytes, v))) return false;
    out.push_back(v);
    return true;
  }
  if (wire_type != 2) return false;
  std::string_view payload;
  if (!wire.bytes(payload)) return false;
  WireReader packed(payload.data(), payload.size());
  while (!packed.done()) {
    if (!(fixed_bytes == 0 ? packed.varint(v) : packed.fixed(fixed_bytes, v))) return false;
    out.push_back(v);
  }
  return true;
}

template <typename T>
void storeAll(const std::vector<uint64_t>& values, Tensor& t, T (*cast)(uint64_t)) {
  auto dst = reinterpret_cast<char*>(t.mutableBytes().data());
  for (size_t i = 0; i < values.size(); ++i) {
    const T v = cast(values[i]);
    std::memcpy(dst + i * sizeof(T), &v, sizeof(T));
  }
}

// The TensorProto fields this reader uses, as they appear on the wire.
struct TensorFields {
  std::vector<uint64_t> dims, floats, int32s, int64s, doubles, uint64s;
  std::optional<int64_t> data_type;
  std::optional<std::string_view> raw;
  bool external = false;
};

// Reads one field into `f`; false when the field is malformed.
bool readField(WireReader& wire, int field, int type, TensorFields& f) {
  uint64_t v = 0;
  std::string_view payload;
  switch (field) {
    case 1:
      return readRepeated(wire, type, 0, f.dims);
    case 2:
      if (type != 0 || !wire.varint(v)) return false;
      f.data_type = static_cast<int64_t>(v);
      return true;
    case 4:
      return readRepeated(wire, type, 4, f.floats);
    case 5:
      return readRepeated(wire, type, 0, f.int32s);
    case 7:
      return readRepeated(wire, type, 0, f.int64s);
    case 9:
      if (type != 2 || !wire.bytes(payload)) return false;
      f.raw = payload;
      return true;
    case 10:
      return readRepeated(wire, type, 8, f.doubles);
    case 11:
      return readRepeated(wire, type, 0, f.uint64s);
    case 14:
      if (type != 0 || !wire.varint(v)) return false;
      f.external = v == 1;
      return true;
    default:
      return field != 0 && wire.skip(type);
  }
}

// Which typed field holds the data depends on the dtype.
const std::vector<uint64_t>& typedValues(const TensorFields& f, DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return f.floats;
    case DType::kFloat64:
      return f.doubles;
    case DType::kInt64:
      return f.int64s;
    case DType::kUInt32:
    case DType::kUInt64:
      return f.uint64s;
    default:  // int32, int16, int8, uint16, uint8, bool, float16, bfloat16
      return f.int32s;
  }
}

Tensor tensorFromTypedValues(const std::vector<uint64_t>& values, DType dtype, const Shape& shape) {
  Tensor t(dtype, shape);
  switch (dtypeBits(dtype)) {
    case 8:
      storeAll<uint8_t>(values, t, [](uint64_t v) { return static_cast<uint8_t>(v); });
      break;
    case 16:
      storeAll<uint16_t>(values, t, [](uint64_t v) { return static_cast<uint16_t>(v); });
      break;
    case 32:  // float bits, int32 (sign-extended varint, truncation keeps it) or uint32
      storeAll<uint32_t>(values, t, [](uint64_t v) { return static_cast<uint32_t>(v); });
      break;
    default:  // int64, uint64, double bits
      storeAll<uint64_t>(values, t, [](uint64_t v) { return v; });
  }
  return t;
}

}  // namespace

StatusOr<Tensor> parseTensorProto(const std::string& bytes, const std::string& source) {
  auto malformed = [&](const std::string& why) {
    return invalidArgument(source + ": not a valid TensorProto (" + why + ")");
  };
  WireReader wire(bytes.data(), bytes.size());
  TensorFields f;
  while (!wire.done()) {
    uint64_t key = 0;
    if (!wire.varint(key)) return malformed("truncated field key");
    const int field = static_cast<int>(key >> 3);
    if (!readField(wire, field, static_cast<int>(key & 7), f))
      return malformed("bad field " + std::to_string(field));
  }
  if (!f.data_type) return malformed("no data_type");
  if (f.external) {
    return invalidArgument(source + ": TensorProto keeps its data in an external file, " +
                           "which data files do not support");
  }
  const auto dtype = dtypeFromOnnx(static_cast<int32_t>(*f.data_type));
  if (!dtype || !internal::isConvertibleToFloat(*dtype)) {
    return invalidArgument(source + ": TensorProto data_type " + std::to_string(*f.data_type) +
                           (dtype ? std::string(" (") + dtypeName(*dtype) + ")" : "") +
                           " is not supported for data (numeric types only)");
  }
  Shape shape;
  for (uint64_t d : f.dims) {
    if (d > (uint64_t{1} << 40)) return malformed("dimension out of range");
    shape.push_back(static_cast<int64_t>(d));
  }
  const int64_t want_bytes = internal::checkedStorageBytes(*dtype, shape);
  if (want_bytes < 0 || (!shape.empty() && internal::checkedStorageBytes(
                                               *dtype, Shape(shape.begin() + 1, shape.end())) < 0))
    return malformed("dims too large");
  const int64_t numel = shapeNumel(shape);
  const std::string described =
      source + ": TensorProto " + dtypeName(*dtype) + " " + shapeToString(shape);
  if (f.raw) {
    if (static_cast<int64_t>(f.raw->size()) != want_bytes) {
      return invalidArgument(described + " needs " + std::to_string(want_bytes) +
                             " bytes of raw_data but has " + std::to_string(f.raw->size()));
    }
    std::string data(*f.raw);
    if constexpr (std::endian::native == std::endian::big) {
      internal::swapBytes(data.data(), numel, dtypeBits(*dtype) / 8);
    }
    return Tensor::fromBytes(*dtype, shape, std::move(data));
  }
  const std::vector<uint64_t>& values = typedValues(f, *dtype);
  if (static_cast<int64_t>(values.size()) != numel) {
    return invalidArgument(described + " has " + std::to_string(values.size()) +
                           " values, expected " + std::to_string(numel));
  }
  return tensorFromTypedValues(values, *dtype, shape);
}

StatusOr<Tensor> readTensorProtoFile(const std::string& path) {
  NNC_ASSIGN_OR_RETURN(auto source, internal::ByteSource::open(path));
  NNC_ASSIGN_OR_RETURN(std::string bytes, source->readAll());
  return parseTensorProto(bytes, path);
}

namespace internal {
namespace {

// "[Nx3x224x224]" for samples [3x224x224].
std::string batchShapeText(const Shape& sample) {
  return sample.empty() ? "[N]" : "[Nx" + shapeToString(sample).substr(1);
}

std::string fileName(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// Files are parsed once when opened (to learn their shapes) and again when a batch needs their
// rows; the last file read is cached, so sequential batches parse each file once more.
class TensorProtoRows : public RawRows {
 public:
  struct File {
    std::string path;
    int64_t first_row = 0;
    int64_t rows = 0;
  };
  TensorProtoRows(std::vector<File> files, DType dtype, Shape sample_shape, int64_t rows)
      : files_(std::move(files)),
        dtype_(dtype),
        sample_shape_(std::move(sample_shape)),
        rows_(rows),
        sample_bytes_(storageBytes(dtype_, shapeNumel(sample_shape_))) {}

  DType dtype() const override { return dtype_; }
  const Shape& sampleShape() const override { return sample_shape_; }
  int64_t size() const override { return rows_; }
  std::string description() const override {
    return std::string("TensorProto ") + dtypeName(dtype_) + " (" + std::to_string(files_.size()) +
           (files_.size() == 1 ? " file)" : " files)");
  }
  Status read(int64_t start, int64_t count, std::string& out) override {
    out.resize(static_cast<size_t>(count * sample_bytes_));
    int64_t row = start;
    while (row < start + count) {
      // The file holding `row`: the last one whose first_row <= row.
      auto it = std::upper_bound(files_.begin(), files_.end(), row,
                                 [](int64_t r, const File& f) { return r < f.first_row; });
      const size_t index = static_cast<size_t>(std::distance(files_.begin(), it) - 1);
      const File& file = files_[index];
      if (cached_index_ != index) {
        NNC_ASSIGN_OR_RETURN(Tensor t, readTensorProtoFile(file.path));
        if (t.dtype() != dtype_ || t.numel() != file.rows * shapeNumel(sample_shape_))
          return invalidArgument(file.path + ": changed since the dataset was opened");
        cached_ = std::move(t);
        cached_index_ = index;
      }
      const int64_t take = std::min(start + count, file.first_row + file.rows) - row;
      std::memcpy(out.data() + (row - start) * sample_bytes_,
                  cached_.bytes().data() + (row - file.first_row) * sample_bytes_,
                  static_cast<size_t>(take * sample_bytes_));
      row += take;
    }
    return Status::ok();
  }

 private:
  std::vector<File> files_;
  DType dtype_;
  Shape sample_shape_;
  int64_t rows_;
  int64_t sample_bytes_;
  size_t cached_index_ = static_cast<size_t>(-1);
  Tensor cached_;
};

}  // namespace

StatusOr<std::unique_ptr<RawRows>> openTensorProtoRows(std::vector<std::string> paths,
                                                       const std::string& source) {
  if (paths.empty()) return invalidArgument(source + ": no .pb files");
  struct Meta {
    DType dtype;
    Shape shape;
  };
  std::vector<Meta> metas;
  size_t max_rank = 0;
  for (const std::string& path : paths) {
    NNC_ASSIGN_OR_RETURN(Tensor t, readTensorProtoFile(path));
    max_rank = std::max(max_rank, t.shape().size());
    metas.push_back({t.dtype(), t.shape()});
  }
  if (max_rank == 0) {
    return invalidArgument(source + ": the TensorProto files hold scalars; data needs at " +
                           "least one axis (samples)");
  }
  // The first file of the highest rank fixes the sample shape (its dims after axis 0).
  size_t ref = 0;
  while (metas[ref].shape.size() != max_rank) ++ref;
  const Shape sample(metas[ref].shape.begin() + 1, metas[ref].shape.end());
  std::vector<TensorProtoRows::File> files;
  int64_t rows = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    const Meta& m = metas[i];
    if (m.dtype != metas[ref].dtype) {
      return invalidArgument(source + ": " + fileName(paths[i]) + " is " + dtypeName(m.dtype) +
                             " but " + fileName(paths[ref]) + " is " + dtypeName(metas[ref].dtype) +
                             " (all files must share one dtype)");
    }
    int64_t file_rows = -1;
    if (m.shape.size() == max_rank && Shape(m.shape.begin() + 1, m.shape.end()) == sample) {
      file_rows = m.shape[0];  // a batch
    } else if (m.shape == sample) {
      file_rows = 1;  // one sample
    }
    if (file_rows < 0) {
      return invalidArgument(source + ": inconsistent shapes: " + fileName(paths[i]) + " is " +
                             shapeToString(m.shape) + " but " + fileName(paths[ref]) + " is " +
                             shapeToString(metas[ref].shape) + " (every file must be a batch " +
                             batchShapeText(sample) + " or one sample " + shapeToString(sample) +
                             "; a model with several inputs takes NAME=SPEC per input)");
    }
    files.push_back({paths[i], rows, file_rows});
    rows += file_rows;
  }
  return std::unique_ptr<RawRows>(
      new TensorProtoRows(std::move(files), metas[ref].dtype, sample, rows));
}

}  // namespace internal
}  // namespace nnc::data
