// IDX files (LeCun's MNIST format, also Fashion-MNIST):
//   bytes 0-1: 0, byte 2: element type, byte 3: number of dims, then each dim as a big-endian
//   uint32, then the elements, big-endian, row-major.
#include <bit>

#include "convert.h"
#include "readers.h"

namespace nnc::data::internal {
namespace {

std::optional<DType> idxType(unsigned char code) {
  switch (code) {
    case 0x08:
      return DType::kUInt8;
    case 0x09:
      return DType::kInt8;
    case 0x0B:
      return DType::kInt16;
    case 0x0C:
      return DType::kInt32;
    case 0x0D:
      return DType::kFloat32;
    case 0x0E:
      return DType::kFloat64;
    default:
      return std::nullopt;
  }
}

constexpr int kMaxIdxDims = 8;

class IdxRows : public RawRows {
 public:
  IdxRows(std::unique_ptr<ByteSource> source, DType dtype, int64_t count, Shape sample_shape,
          int64_t data_offset)
      : source_(std::move(source)),
        dtype_(dtype),
        count_(count),
        sample_shape_(std::move(sample_shape)),
        data_offset_(data_offset),
        sample_bytes_(storageBytes(dtype, shapeNumel(sample_shape_))) {}

  DType dtype() const override { return dtype_; }
  const Shape& sampleShape() const override { return sample_shape_; }
  int64_t size() const override { return count_; }
  Status read(int64_t start, int64_t count, std::string& out) override {
    out.resize(static_cast<size_t>(count * sample_bytes_));
    NNC_RETURN_IF_ERROR(
        source_->read(data_offset_ + start * sample_bytes_, count * sample_bytes_, out.data()));
    if constexpr (std::endian::native == std::endian::little) {
      swapBytes(out.data(), count * sample_bytes_ / (dtypeBits(dtype_) / 8), dtypeBits(dtype_) / 8);
    }
    return Status::ok();
  }
  std::string description() const override {
    return std::string("IDX ") + dtypeName(dtype_) + (source_->gzipped() ? " (gzip)" : "");
  }

 private:
  std::unique_ptr<ByteSource> source_;
  DType dtype_;
  int64_t count_;
  Shape sample_shape_;
  int64_t data_offset_;
  int64_t sample_bytes_;
};

}  // namespace

bool looksLikeIdx(std::string_view head) {
  if (head.size() < 4 || head[0] != 0 || head[1] != 0) return false;
  const int ndim = static_cast<unsigned char>(head[3]);
  return idxType(static_cast<unsigned char>(head[2])).has_value() && ndim >= 1 &&
         ndim <= kMaxIdxDims;
}

StatusOr<std::unique_ptr<RawRows>> openIdxRows(std::unique_ptr<ByteSource> source) {
  const std::string& path = source->path();
  const std::string head = source->head(4 + 4 * kMaxIdxDims);
  if (!looksLikeIdx(head)) return invalidArgument(path + ": not an IDX file (bad magic number)");
  const DType dtype = *idxType(static_cast<unsigned char>(head[2]));
  const int ndim = static_cast<unsigned char>(head[3]);
  const int64_t data_offset = 4 + 4 * static_cast<int64_t>(ndim);
  if (static_cast<int64_t>(head.size()) < data_offset)
    return invalidArgument(path + ": IDX header is truncated");
  Shape dims;
  for (int i = 0; i < ndim; ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(head.data()) + 4 + 4 * i;
    dims.push_back((int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | p[3]);
  }
  Shape sample(dims.begin() + 1, dims.end());
  const int64_t want = checkedStorageBytes(dtype, dims);
  if (want < 0 || checkedStorageBytes(dtype, sample) < 0 || want != source->size() - data_offset) {
    return invalidArgument(path + ": IDX header says " + dtypeName(dtype) + " " +
                           shapeToString(dims) + " (" + std::to_string(want) +
                           " bytes of data) but the file has " +
                           std::to_string(source->size() - data_offset) +
                           " bytes after the header (truncated or not IDX)");
  }
  if (ndim == 3) sample.insert(sample.begin(), 1);  // [N, H, W] images -> [1, H, W] samples
  return std::unique_ptr<RawRows>(
      new IdxRows(std::move(source), dtype, dims[0], std::move(sample), data_offset));
}

}  // namespace nnc::data::internal
