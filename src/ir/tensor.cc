#include "nncompress/ir/tensor.h"

#include <limits>

namespace nnc {

int64_t shapeNumel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

std::string shapeToString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += "x";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  numel_ = shapeNumel(shape_);
  NNC_CHECK(numel_ >= 0, "tensor with negative dimension " + shapeToString(shape_));
  if (dtype_ == DType::kString) {
    strings_.resize(numel_);
  } else {
    bytes_ = std::make_shared<std::string>(storageBytes(dtype_, numel_), '\0');
  }
}

StatusOr<Tensor> Tensor::fromBytes(DType dtype, Shape shape, std::string bytes) {
  const int64_t n = shapeNumel(shape);
  if (n < 0) return invalidModel("tensor shape " + shapeToString(shape) + " is not valid");
  if (dtype == DType::kString || dtypeBits(dtype) == 0)
    return invalidModel(std::string("dtype ") + dtypeName(dtype) + " cannot be held as raw bytes");
  const int64_t expected = storageBytes(dtype, n);
  if (static_cast<int64_t>(bytes.size()) != expected) {
    return invalidModel("tensor of shape " + shapeToString(shape) + " and dtype " +
                        dtypeName(dtype) + " needs " + std::to_string(expected) +
                        " bytes but has " + std::to_string(bytes.size()));
  }
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.numel_ = n;
  t.bytes_ = std::make_shared<std::string>(std::move(bytes));
  return t;
}

const std::string& Tensor::emptyBytes() {
  static const std::string empty;
  return empty;
}

std::string& Tensor::mutableBytes() {
  if (!bytes_) {
    bytes_ = std::make_shared<std::string>();
  } else if (bytes_.use_count() > 1) {
    bytes_ = std::make_shared<std::string>(*bytes_);
  }
  return *bytes_;
}

std::string Tensor::releaseBytes() {
  if (!bytes_) return {};
  std::string out = bytes_.use_count() > 1 ? *bytes_ : std::move(*bytes_);
  bytes_.reset();
  return out;
}

Tensor Tensor::fromStrings(Shape shape, std::vector<std::string> strings) {
  Tensor t;
  t.dtype_ = DType::kString;
  t.shape_ = std::move(shape);
  t.numel_ = shapeNumel(t.shape_);
  NNC_CHECK(t.numel_ == static_cast<int64_t>(strings.size()), "string tensor size mismatch");
  t.strings_ = std::move(strings);
  return t;
}

namespace {
template <typename T>
T load(const std::string& bytes, int64_t i) {
  T v;
  std::memcpy(&v, bytes.data() + i * sizeof(T), sizeof(T));
  return v;
}

float halfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ff;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
}  // namespace

int packedNibble(const std::string& bytes, int64_t index, bool is_signed) {
  const uint8_t byte = static_cast<uint8_t>(bytes[index / 2]);
  int v = (index % 2 == 0) ? (byte & 0x0f) : (byte >> 4);
  if (is_signed && v >= 8) v -= 16;
  return v;
}

void setPackedNibble(std::string& bytes, int64_t index, int value) {
  uint8_t& byte = reinterpret_cast<uint8_t&>(bytes[index / 2]);
  const uint8_t nibble = static_cast<uint8_t>(value) & 0x0f;
  if (index % 2 == 0) {
    byte = (byte & 0xf0) | nibble;
  } else {
    byte = (byte & 0x0f) | static_cast<uint8_t>(nibble << 4);
  }
}

double Tensor::elementAsDouble(int64_t i) const {
  NNC_CHECK(i >= 0 && i < numel_, "element index out of range");
  switch (dtype_) {
    case DType::kFloat32:
      return load<float>(bytes(), i);
    case DType::kFloat64:
      return load<double>(bytes(), i);
    case DType::kFloat16:
      return halfToFloat(load<uint16_t>(bytes(), i));
    case DType::kBFloat16: {
      const uint32_t bits = static_cast<uint32_t>(load<uint16_t>(bytes(), i)) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    case DType::kUInt8:
    case DType::kBool:
      return load<uint8_t>(bytes(), i);
    case DType::kInt8:
      return load<int8_t>(bytes(), i);
    case DType::kUInt16:
      return load<uint16_t>(bytes(), i);
    case DType::kInt16:
      return load<int16_t>(bytes(), i);
    case DType::kInt32:
      return load<int32_t>(bytes(), i);
    case DType::kUInt32:
      return load<uint32_t>(bytes(), i);
    case DType::kInt64:
      return static_cast<double>(load<int64_t>(bytes(), i));
    case DType::kUInt64:
      return static_cast<double>(load<uint64_t>(bytes(), i));
    case DType::kInt4:
      return packedNibble(bytes(), i, true);
    case DType::kUInt4:
      return packedNibble(bytes(), i, false);
    default:
      NNC_CHECK(false, std::string("elementAsDouble on ") + dtypeName(dtype_));
  }
}

std::vector<int64_t> Tensor::toInt64Vector() const {
  std::vector<int64_t> out(numel_);
  for (int64_t i = 0; i < numel_; ++i) {
    if (dtype_ == DType::kInt64) {
      out[i] = load<int64_t>(bytes(), i);
    } else if (dtype_ == DType::kUInt64) {
      out[i] = static_cast<int64_t>(load<uint64_t>(bytes(), i));
    } else {
      out[i] = static_cast<int64_t>(elementAsDouble(i));
    }
  }
  return out;
}

StatusOr<Tensor> Tensor::gather(int axis, std::span<const int64_t> keep) const {
  if (axis < 0) axis += rank();
  if (axis < 0 || axis >= rank())
    return invalidArgument("gather axis " + std::to_string(axis) + " out of range for rank " +
                           std::to_string(rank()));
  const int64_t extent = shape_[axis];
  for (int64_t k : keep) {
    if (k < 0 || k >= extent)
      return invalidArgument("gather index " + std::to_string(k) + " out of range [0, " +
                             std::to_string(extent) + ")");
  }
  int64_t outer = 1, inner = 1;
  for (int a = 0; a < axis; ++a) outer *= shape_[a];
  for (int a = axis + 1; a < rank(); ++a) inner *= shape_[a];
  Shape out_shape = shape_;
  out_shape[axis] = static_cast<int64_t>(keep.size());
  Tensor out(dtype_, out_shape);
  const int64_t kept = static_cast<int64_t>(keep.size());
  if (dtype_ == DType::kString) {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < kept; ++j)
        for (int64_t i = 0; i < inner; ++i)
          out.strings_[(o * kept + j) * inner + i] = strings_[(o * extent + keep[j]) * inner + i];
    return out;
  }
  const int bits = dtypeBits(dtype_);
  const std::string& from = bytes();
  std::string& to = out.mutableBytes();
  if (bits % 8 == 0) {
    const size_t block = static_cast<size_t>(inner) * (bits / 8);
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < kept; ++j)
        std::memcpy(to.data() + (o * kept + j) * block,
                    from.data() + (o * extent + keep[j]) * block, block);
    return out;
  }
  // Packed 4-bit: element by element.
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < kept; ++j)
      for (int64_t i = 0; i < inner; ++i)
        setPackedNibble(to, (o * kept + j) * inner + i,
                        packedNibble(from, (o * extent + keep[j]) * inner + i, false));
  return out;
}

}  // namespace nnc
