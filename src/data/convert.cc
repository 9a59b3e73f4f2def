#include "convert.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "nncompress/ir/status.h"

namespace nnc::data::internal {
namespace {

template <typename T>
void convertAs(const char* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
    dst[i] = static_cast<float>(v);
  }
}

float bitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// IEEE half -> float, subnormals, infinities and NaN included.
float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24
    const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  if (exp == 31) return bitsToFloat(sign | 0x7f800000u | (mant << 13));
  return bitsToFloat(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

}  // namespace

bool isConvertibleToFloat(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
    case DType::kFloat64:
    case DType::kFloat16:
    case DType::kBFloat16:
    case DType::kUInt8:
    case DType::kInt8:
    case DType::kUInt16:
    case DType::kInt16:
    case DType::kUInt32:
    case DType::kInt32:
    case DType::kUInt64:
    case DType::kInt64:
    case DType::kBool:
      return true;
    default:
      return false;
  }
}

void convertToFloat(DType dtype, const char* src, int64_t n, float* dst) {
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kFloat64:
      return convertAs<double>(src, n, dst);
    case DType::kUInt8:
    case DType::kBool:
      return convertAs<uint8_t>(src, n, dst);
    case DType::kInt8:
      return convertAs<int8_t>(src, n, dst);
    case DType::kUInt16:
      return convertAs<uint16_t>(src, n, dst);
    case DType::kInt16:
      return convertAs<int16_t>(src, n, dst);
    case DType::kUInt32:
      return convertAs<uint32_t>(src, n, dst);
    case DType::kInt32:
      return convertAs<int32_t>(src, n, dst);
    case DType::kUInt64:
      return convertAs<uint64_t>(src, n, dst);
    case DType::kInt64:
      return convertAs<int64_t>(src, n, dst);
    case DType::kFloat16:
    case DType::kBFloat16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        dst[i] = dtype == DType::kFloat16 ? halfToFloat(bits)
                                          : bitsToFloat(static_cast<uint32_t>(bits) << 16);
      }
      return;
    default:
      NNC_CHECK(false, std::string("convertToFloat: callers must check the dtype, got ") +
                           dtypeName(dtype));
  }
}

int64_t checkedStorageBytes(DType dtype, const Shape& shape) {
  const int64_t numel = shapeNumel(shape);
  const int64_t bits = dtypeBits(dtype);
  if (numel < 0 || bits <= 0 || numel > (INT64_MAX - 8) / bits) return -1;
  return storageBytes(dtype, numel);
}

void swapBytes(char* data, int64_t n, int width) {
  if (width <= 1) return;
  for (int64_t i = 0; i < n; ++i) std::reverse(data + i * width, data + (i + 1) * width);
}

}  // namespace nnc::data::internal
