#pragma once
// Helpers for the quantization kernels (quant.cc): integer/float element access for the dtypes
// quantized models use, and rounding that matches ONNX (half to even) and ONNX Runtime (float32
// arithmetic, clamp before rounding).

#include <Eigen/Core>
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "nncompress/ir/tensor.h"

namespace nnc::exec::quant {

// Integer dtypes that QuantizeLinear produces / DequantizeLinear consumes.
inline bool isQuantIntType(DType t) {
  switch (t) {
    case DType::kUInt8:
    case DType::kInt8:
    case DType::kUInt16:
    case DType::kInt16:
    case DType::kUInt4:
    case DType::kInt4:
      return true;
    default:
      return false;
  }
}

// Saturation range of a quantized integer dtype.
inline void quantRange(DType t, int32_t& lo, int32_t& hi) {
  switch (t) {
    case DType::kUInt8:
      lo = 0, hi = 255;
      return;
    case DType::kInt8:
      lo = -128, hi = 127;
      return;
    case DType::kUInt16:
      lo = 0, hi = 65535;
      return;
    case DType::kInt16:
      lo = -32768, hi = 32767;
      return;
    case DType::kUInt4:
      lo = 0, hi = 15;
      return;
    case DType::kInt4:
      lo = -8, hi = 7;
      return;
    default:
      lo = INT32_MIN, hi = INT32_MAX;
      return;
  }
}

inline bool isLoadableInt(DType t) { return isQuantIntType(t) || t == DType::kInt32; }

// All elements of an integer tensor (8/16/32-bit or packed 4-bit) widened to int32.
inline Status loadInts(const Tensor& t, std::vector<int32_t>& out, const char* what) {
  const int64_t n = t.numel();
  out.resize(static_cast<size_t>(n));
  auto widen = [&](auto span) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(span[i]);
  };
  switch (t.dtype()) {
    case DType::kUInt8:
      widen(t.data<uint8_t>());
      break;
    case DType::kInt8:
      widen(t.data<int8_t>());
      break;
    case DType::kUInt16:
      widen(t.data<uint16_t>());
      break;
    case DType::kInt16:
      widen(t.data<int16_t>());
      break;
    case DType::kInt32:
      widen(t.data<int32_t>());
      break;
    case DType::kUInt4:
    case DType::kInt4: {
      const bool is_signed = t.dtype() == DType::kInt4;
      for (int64_t i = 0; i < n; ++i) out[i] = packedNibble(t.bytes(), i, is_signed);
      break;
    }
    default:
      return unsupported(std::string(what) + ": integer type expected, got " +
                         dtypeName(t.dtype()));
  }
  return Status::ok();
}

inline bool isLoadableFloat(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kBFloat16 ||
         t == DType::kFloat64;
}

// All elements of a floating-point tensor (float32/float16/bfloat16/double) as float.
inline Status loadFloats(const Tensor& t, std::vector<float>& out, const char* what) {
  const int64_t n = t.numel();
  out.resize(static_cast<size_t>(n));
  const char* raw = t.bytes().data();
  switch (t.dtype()) {
    case DType::kFloat32:
      if (n) std::memcpy(out.data(), raw, static_cast<size_t>(n) * sizeof(float));
      break;
    case DType::kFloat64: {
      const auto d = t.data<double>();
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(d[i]);
      break;
    }
    case DType::kFloat16:
    case DType::kBFloat16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, raw + 2 * i, 2);
        out[i] = t.dtype() == DType::kFloat16
                     ? static_cast<float>(std::bit_cast<Eigen::half>(bits))
                     : static_cast<float>(std::bit_cast<Eigen::bfloat16>(bits));
      }
      break;
    default:
      return unsupported(std::string(what) + ": floating-point type expected, got " +
                         dtypeName(t.dtype()));
  }
  return Status::ok();
}

// A float32 tensor converted to another floating-point dtype (round to nearest even).
inline Tensor convertFloats(Tensor f32, DType to) {
  if (to == DType::kFloat32) return f32;
  Tensor out(to, f32.shape());
  const auto src = f32.data<float>();
  char* raw = out.mutableBytes().data();
  for (size_t i = 0; i < src.size(); ++i) {
    if (to == DType::kFloat64) {
      const double d = src[i];
      std::memcpy(raw + 8 * i, &d, 8);
    } else {
      const uint16_t bits = to == DType::kFloat16
                                ? std::bit_cast<uint16_t>(Eigen::half(src[i]))
                                : std::bit_cast<uint16_t>(Eigen::bfloat16(src[i]));
      std::memcpy(raw + 2 * i, &bits, 2);
    }
  }
  return out;
}

// Rounds half to even. Exact for |v| < 2^22 (callers clamp first); relies on the default
// rounding mode, like std::nearbyint, without a libm call.
inline float roundHalfEvenSmall(float v) {
  constexpr float kMagic = 12582912.f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}

// round_half_even(v) + zp saturated to [lo, hi], computed as ONNX Runtime does: clamp v to
// [lo - zp, hi - zp] in float (NaN goes to the low end), round, add zp.
inline int32_t saturateRound(float v, int32_t zp, int32_t lo, int32_t hi) {
  const float flo = static_cast<float>(lo - zp), fhi = static_cast<float>(hi - zp);
  v = v > flo ? v : flo;
  v = v < fhi ? v : fhi;
  return static_cast<int32_t>(roundHalfEvenSmall(v)) + zp;
}

}  // namespace nnc::exec::quant
