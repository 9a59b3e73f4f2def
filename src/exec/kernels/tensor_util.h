#pragma once
// Internal to exec: dtype-generic data movement for kernels that only move elements (Slice,
// Transpose, Pad, Expand, ...). Elements are copied as opaque blocks of their byte size, so one
// code path serves every fixed-width dtype; strings and packed 4-bit types are not movable.

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_util.h"

namespace nnc::exec {

// Bytes per element of a dtype whose elements can be moved one by one; fails for strings and
// packed sub-byte types.
inline StatusOr<size_t> movableElementSize(DType dtype, const char* op) {
  const int bits = dtypeBits(dtype);
  if (dtype == DType::kString || bits <= 0 || bits % 8 != 0)
    return unsupported(std::string(op) + " on " + dtypeName(dtype) + " tensors");
  return static_cast<size_t>(bits / 8);
}

// A copy of `t` with a new shape of the same element count (works for every dtype).
inline StatusOr<Tensor> withShape(const Tensor& t, Shape shape) {
  if (shapeNumel(shape) != t.numel())
    return shapeMismatch("cannot reshape " + shapeToString(t.shape()) + " to " +
                         shapeToString(shape));
  if (t.dtype() == DType::kString) return Tensor::fromStrings(std::move(shape), t.strings());
  return Tensor::fromBytes(t.dtype(), std::move(shape), t.bytes());
}

// Same, moving the storage out of an owned tensor.
inline StatusOr<Tensor> withShape(Tensor&& t, Shape shape) {
  if (shapeNumel(shape) != t.numel())
    return shapeMismatch("cannot reshape " + shapeToString(t.shape()) + " to " +
                         shapeToString(shape));
  if (t.dtype() == DType::kString) return Tensor::fromStrings(std::move(shape), t.strings());
  const DType dtype = t.dtype();
  return Tensor::fromBytes(dtype, std::move(shape), t.releaseBytes());
}

// Integer values of an index tensor (int32 or int64 fast; other integer types via the slow
// path).
inline std::vector<int64_t> readIndices(const Tensor& t) {
  if (t.dtype() == DType::kInt64) {
    auto d = t.data<int64_t>();
    return {d.begin(), d.end()};
  }
  if (t.dtype() == DType::kInt32) {
    auto d = t.data<int32_t>();
    return {d.begin(), d.end()};
  }
  return t.toInt64Vector();
}

inline uint16_t floatToHalfBits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t raw_exp = (x >> 23) & 0xffu;
  uint32_t mant = x & 0x7fffffu;
  if (raw_exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
  const int32_t exp = static_cast<int32_t>(raw_exp) - 127 + 15;
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;  // may carry into inf: correct
  return static_cast<uint16_t>(half);
}

// The bytes of one element of `dtype` holding `v` (for pad values, ones, ...).
inline StatusOr<std::string> scalarBytes(DType dtype, double v) {
  auto put = [](auto x) { return std::string(reinterpret_cast<const char*>(&x), sizeof(x)); };
  switch (dtype) {
    case DType::kFloat32:
      return put(static_cast<float>(v));
    case DType::kFloat64:
      return put(v);
    case DType::kFloat16:
      return put(floatToHalfBits(static_cast<float>(v)));
    case DType::kBFloat16: {
      const float f = static_cast<float>(v);
      uint32_t x;
      std::memcpy(&x, &f, 4);
      x += 0x7fffu + ((x >> 16) & 1u);
      return put(static_cast<uint16_t>(x >> 16));
    }
    case DType::kInt8:
      return put(static_cast<int8_t>(v));
    case DType::kUInt8:
      return put(static_cast<uint8_t>(v));
    case DType::kInt16:
      return put(static_cast<int16_t>(v));
    case DType::kUInt16:
      return put(static_cast<uint16_t>(v));
    case DType::kInt32:
      return put(static_cast<int32_t>(v));
    case DType::kUInt32:
      return put(static_cast<uint32_t>(v));
    case DType::kInt64:
      return put(static_cast<int64_t>(v));
    case DType::kUInt64:
      return put(static_cast<uint64_t>(v));
    case DType::kBool:
      return put(static_cast<uint8_t>(v != 0));
    default:
      return unsupported(std::string("scalar value of dtype ") + dtypeName(dtype));
  }
}

// Fills `count` elements of `esize` bytes at dst with the element `value`.
inline void fillElements(char* dst, int64_t count, const char* value, size_t esize) {
  if (count <= 0) return;
  bool all_zero = true;
  for (size_t b = 0; b < esize; ++b) all_zero &= value[b] == 0;
  if (all_zero) {
    std::memset(dst, 0, static_cast<size_t>(count) * esize);
    return;
  }
  // Doubling copies: O(log n) memcpy calls.
  std::memcpy(dst, value, esize);
  int64_t done = 1;
  while (done < count) {
    const int64_t n = std::min(done, count - done);
    std::memcpy(dst + done * esize, dst, static_cast<size_t>(n) * esize);
    done += n;
  }
}

namespace detail {

template <size_t E>
struct Elem {
  char b[E];
};
template <size_t E>
using ElemT = std::conditional_t<
    E == 1, uint8_t,
    std::conditional_t<
        E == 2, uint16_t,
        std::conditional_t<E == 4, uint32_t, std::conditional_t<E == 8, uint64_t, Elem<E>>>>>;

// Contiguous destination over `dims`; source offset of each index via `strides` (elements).
template <typename T>
void stridedCopyT(const T* src, T* dst, const std::vector<int64_t>& dims,
                  const std::vector<int64_t>& strides, const RunContext& ctx) {
  const int r = static_cast<int>(dims.size());
  const int64_t inner = dims[r - 1], sin = strides[r - 1];
  int64_t outer = 1;
  for (int d = 0; d < r - 1; ++d) outer *= dims[d];
  auto srcOffset = [&](int64_t row, int skip) {  // offset of outer row `row` (dims[0..r-2])
    int64_t off = 0;
    for (int d = r - 2; d >= 0; --d) {
      if (d == skip) continue;
      off += (row % dims[d]) * strides[d];
      row /= dims[d];
    }
    return off;
  };
  if (sin == 1) {
    parallelFor(outer, ctx, inner, [&](int64_t row) {
      std::memcpy(dst + row * inner, src + srcOffset(row, -1), sizeof(T) * inner);
    });
    return;
  }
  // A unit source stride on an outer axis: blocked 2-D transposes between that axis and the
  // innermost one, so both reads and writes stay within a few cache lines.
  int j = -1;
  for (int d = r - 2; d >= 0; --d)
    if (strides[d] == 1 && dims[d] >= 4) j = d;
  if (j >= 0 && inner >= 4) {
    constexpr int64_t kB = 32;
    int64_t dst_j = 1;  // destination stride of axis j
    for (int d = j + 1; d < r; ++d) dst_j *= dims[d];
    const int64_t rows_j = dims[j];
    const int64_t others = outer / rows_j;
    const int64_t tiles_a = (rows_j + kB - 1) / kB, tiles_b = (inner + kB - 1) / kB;
    parallelFor(others * tiles_a, ctx, kB * inner, [&](int64_t item) {
      const int64_t o = item / tiles_a, ta = item % tiles_a;
      // Decompose o over the other axes (row-major), accumulating src and dst offsets.
      int64_t rem = o, s_off = 0, d_off = 0, dst_stride = inner;
      for (int d = r - 2; d >= 0; --d) {
        if (d == j) {
          dst_stride *= dims[d];
          continue;
        }
        const int64_t idx = rem % dims[d];
        rem /= dims[d];
        s_off += idx * strides[d];
        d_off += idx * dst_stride;
        dst_stride *= dims[d];
      }
      const int64_t a0 = ta * kB, a1 = std::min(rows_j, a0 + kB);
      for (int64_t tb = 0; tb < tiles_b; ++tb) {
        const int64_t b0 = tb * kB, b1 = std::min(inner, b0 + kB);
        for (int64_t a = a0; a < a1; ++a) {
          const T* s = src + s_off + a;
          T* dd = dst + d_off + a * dst_j;
          for (int64_t b = b0; b < b1; ++b) dd[b] = s[b * sin];
        }
      }
    });
    return;
  }
  parallelFor(outer, ctx, inner, [&](int64_t row) {
    const T* s = src + srcOffset(row, -1);
    T* dd = dst + row * inner;
    if (sin == 0) {
      std::fill(dd, dd + inner, *s);
    } else {
      for (int64_t b = 0; b < inner; ++b) dd[b] = s[b * sin];
    }
  });
}

}  // namespace detail

// dst, contiguous row-major over `shape`, gets dst[i] = src[offset + sum_d i_d * strides[d]]
// (strides in elements, any sign, 0 for broadcast). Axes are coalesced first, so the common
// cases become row memcpys or blocked 2-D transposes.
inline void stridedCopy(const char* src, char* dst, size_t esize, const Shape& shape,
                        const std::vector<int64_t>& strides, int64_t offset,
                        const RunContext& ctx) {
  const int64_t n = shapeNumel(shape);
  if (n <= 0) return;
  // Coalesce: drop unit axes; merge an axis into the next when contiguous in the source.
  std::vector<int64_t> dims, st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!dims.empty() && st.back() == strides[d] * shape[d]) {
      dims.back() *= shape[d];
      st.back() = strides[d];
    } else {
      dims.push_back(shape[d]);
      st.push_back(strides[d]);
    }
  }
  if (dims.empty()) {
    dims.push_back(1);
    st.push_back(1);
  }
  src += offset * static_cast<int64_t>(esize);
  switch (esize) {
#define NNC_STRIDED_CASE(E)                                                        \
  case E:                                                                          \
    detail::stridedCopyT(reinterpret_cast<const detail::ElemT<E>*>(src),           \
                         reinterpret_cast<detail::ElemT<E>*>(dst), dims, st, ctx); \
    return;
    NNC_STRIDED_CASE(1)
    NNC_STRIDED_CASE(2)
    NNC_STRIDED_CASE(4)
    NNC_STRIDED_CASE(8)
    NNC_STRIDED_CASE(16)
#undef NNC_STRIDED_CASE
    default: {
      // Any other width: expand each element into bytes (an extra trailing axis).
      dims.push_back(static_cast<int64_t>(esize));
      for (auto& s : st) s *= static_cast<int64_t>(esize);
      st.push_back(1);
      detail::stridedCopyT(reinterpret_cast<const uint8_t*>(src), reinterpret_cast<uint8_t*>(dst),
                           dims, st, ctx);
    }
  }
}

// Calls fn.template operator()<T>() with an unsigned integer type T of `esize` bytes (1, 2, 4,
// 8), for element loops that only copy; returns false for any other width.
template <typename Fn>
bool dispatchElementSize(size_t esize, Fn&& fn) {
  switch (esize) {
    case 1:
      fn.template operator()<uint8_t>();
      return true;
    case 2:
      fn.template operator()<uint16_t>();
      return true;
    case 4:
      fn.template operator()<uint32_t>();
      return true;
    case 8:
      fn.template operator()<uint64_t>();
      return true;
    case 16:
      fn.template operator()<detail::Elem<16>>();
      return true;
    default:
      return false;
  }
}

// Row-major strides (in elements) of a shape.
inline std::vector<int64_t> contiguousStrides(const Shape& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) s[d - 1] = s[d] * shape[d];
  return s;
}

}  // namespace nnc::exec
