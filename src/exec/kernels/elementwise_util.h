#pragma once
// Helpers for element-wise kernels: numpy broadcasting of up to three operands compiled into a
// plan of contiguous runs, the loops that walk such plans (binary fast paths for same-shape,
// scalar and per-channel operands fall out of the run structure), and float16 / bfloat16
// conversions. Header-only so that the unit tests can drive the loops directly.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "kernel_util.h"

namespace nnc::exec {

// ---------------------------------------------------------------------------------------------
// Broadcast plans
//
// The output is seen as `rows` runs of `inner` contiguous elements. Adjacent axes are merged
// whenever every operand stays linear across them, so e.g. [N,C,H,W] + [C,1,1] becomes rows
// over (N, C) with a run of H*W where the second operand is a scalar, and same-shape operands
// become a single run. Within a run each operand is either contiguous (stride 1) or a
// repeated scalar (stride 0).

struct BroadcastPlan {
  Shape out_shape;
  int64_t numel = 0;
  int64_t inner = 1;           // elements per run
  std::vector<int64_t> outer;  // merged outer axes (row-major); their product is rows()
  std::array<std::vector<int64_t>, 3> outer_strides;  // per operand, per outer axis
  std::array<int64_t, 3> inner_stride{};              // per operand: 0 or 1
  int count = 0;                                      // number of operands

  int64_t rows() const { return inner == 0 ? 0 : numel / inner; }
};

inline StatusOr<BroadcastPlan> makeBroadcastPlan(std::initializer_list<const Shape*> shapes) {
  BroadcastPlan p;
  p.count = static_cast<int>(shapes.size());
  NNC_CHECK(p.count >= 1 && p.count <= 3, "broadcast plan takes 1 to 3 operands");
  Shape out;
  for (const Shape* s : shapes) {
    NNC_ASSIGN_OR_RETURN(Shape b, broadcastShapes(out, *s));
    out = std::move(b);
  }
  p.out_shape = out;
  p.numel = shapeNumel(out);
  if (p.numel < 0) return shapeMismatch("bad broadcast shape " + shapeToString(out));
  if (p.numel == 0) {
    p.inner = 0;
    return p;
  }
  std::array<std::vector<int64_t>, 3> strides;
  int k = 0;
  for (const Shape* s : shapes) strides[k++] = broadcastStrides(*s, out);
  // Merge from the innermost axis outwards, skipping size-1 axes.
  std::vector<int64_t> dims;                     // merged, innermost first
  std::array<std::vector<int64_t>, 3> mstrides;  // merged strides, innermost first
  for (size_t d = out.size(); d-- > 0;) {
    if (out[d] == 1) continue;
    bool merge = !dims.empty();
    for (int i = 0; i < p.count && merge; ++i)
      merge = strides[i][d] == mstrides[i].back() * dims.back();
    if (merge) {
      dims.back() *= out[d];
    } else {
      dims.push_back(out[d]);
      for (int i = 0; i < p.count; ++i) mstrides[i].push_back(strides[i][d]);
    }
  }
  if (dims.empty()) {  // every axis has size 1: one element
    p.inner = 1;
    for (int i = 0; i < p.count; ++i) p.inner_stride[i] = 0;
    return p;
  }
  p.inner = dims[0];
  for (int i = 0; i < p.count; ++i) p.inner_stride[i] = mstrides[i][0];
  for (size_t j = dims.size(); j-- > 1;) {
    p.outer.push_back(dims[j]);
    for (int i = 0; i < p.count; ++i) p.outer_strides[i].push_back(mstrides[i][j]);
  }
  return p;
}

// Calls fn(out_offset, in_offsets, len) for runs (or pieces of runs) covering the output once,
// in parallel when the output is large. `cost` is the relative work per element.
template <typename Fn>
void forEachRun(const BroadcastPlan& p, const RunContext& ctx, int64_t cost, Fn&& fn) {
  constexpr int64_t kBlock = 16384;
  if (p.numel == 0) return;
  const int64_t rows = p.rows();
  const size_t nd = p.outer.size();
  // Offsets of row r's first element, per operand.
  auto rowOffsets = [&](int64_t r, int64_t* idx, int64_t* offs) {
    for (int i = 0; i < p.count; ++i) offs[i] = 0;
    for (size_t d = nd; d-- > 0;) {
      idx[d] = r % p.outer[d];
      r /= p.outer[d];
      for (int i = 0; i < p.count; ++i) offs[i] += idx[d] * p.outer_strides[i][d];
    }
  };
  if (p.inner >= kBlock) {
    // Long runs: split each run into blocks.
    const int64_t per_row = (p.inner + kBlock - 1) / kBlock;
    parallelFor(rows * per_row, ctx, kBlock * cost, [&](int64_t item) {
      const int64_t r = item / per_row, start = (item % per_row) * kBlock;
      const int64_t len = std::min(kBlock, p.inner - start);
      int64_t idx[16], offs[3];
      std::vector<int64_t> idx_heap;
      int64_t* ip = idx;
      if (nd > 16) {
        idx_heap.resize(nd);
        ip = idx_heap.data();
      }
      rowOffsets(r, ip, offs);
      for (int i = 0; i < p.count; ++i) offs[i] += start * p.inner_stride[i];
      fn(r * p.inner + start, static_cast<const int64_t*>(offs), len);
    });
    return;
  }
  // Short runs: group rows into blocks and walk them with an odometer.
  const int64_t rows_per_item = std::max<int64_t>(1, kBlock / p.inner);
  const int64_t items = (rows + rows_per_item - 1) / rows_per_item;
  parallelFor(items, ctx, rows_per_item * p.inner * cost, [&](int64_t item) {
    const int64_t r0 = item * rows_per_item, r1 = std::min(rows, r0 + rows_per_item);
    std::vector<int64_t> idx(nd);
    int64_t offs[3];
    rowOffsets(r0, idx.data(), offs);
    for (int64_t r = r0; r < r1; ++r) {
      fn(r * p.inner, static_cast<const int64_t*>(offs), p.inner);
      for (size_t d = nd; d-- > 0;) {
        for (int i = 0; i < p.count; ++i) offs[i] += p.outer_strides[i][d];
        if (++idx[d] < p.outer[d]) break;
        for (int i = 0; i < p.count; ++i) offs[i] -= p.outer_strides[i][d] * p.outer[d];
        idx[d] = 0;
      }
    }
  });
}

// One run of a binary op; sa / sb are 0 (repeat element 0) or 1 (contiguous).
template <typename T, typename U, typename R, typename Op>
inline void binaryRun(const T* a, int64_t sa, const U* b, int64_t sb, R* out, int64_t n,
                      const Op& op) {
  if (sa && sb) {
    for (int64_t i = 0; i < n; ++i) out[i] = op(a[i], b[i]);
  } else if (sa) {
    const U y = b[0];
    for (int64_t i = 0; i < n; ++i) out[i] = op(a[i], y);
  } else if (sb) {
    const T x = a[0];
    for (int64_t i = 0; i < n; ++i) out[i] = op(x, b[i]);
  } else {
    const R v = op(a[0], b[0]);
    std::fill(out, out + n, v);
  }
}

// out[i] = op(a[...], b[...]) over a two-operand plan; writes every output element.
template <typename T, typename U, typename R, typename Op>
void broadcastBinary(const BroadcastPlan& p, const T* a, const U* b, R* out, const RunContext& ctx,
                     const Op& op, int64_t cost = 1) {
  forEachRun(p, ctx, cost, [&](int64_t o, const int64_t* in, int64_t n) {
    binaryRun(a + in[0], p.inner_stride[0], b + in[1], p.inner_stride[1], out + o, n, op);
  });
}

// out[i] = op(a[...], b[...], c[...]) over a three-operand plan.
template <typename A, typename B, typename C, typename R, typename Op>
void broadcastTernary(const BroadcastPlan& p, const A* a, const B* b, const C* c, R* out,
                      const RunContext& ctx, const Op& op) {
  forEachRun(p, ctx, 1, [&](int64_t o, const int64_t* in, int64_t n) {
    const A* pa = a + in[0];
    const B* pb = b + in[1];
    const C* pc = c + in[2];
    const int64_t sa = p.inner_stride[0], sb = p.inner_stride[1], sc = p.inner_stride[2];
    R* po = out + o;
    if (sa && sb && sc) {
      for (int64_t i = 0; i < n; ++i) po[i] = op(pa[i], pb[i], pc[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) po[i] = op(pa[i * sa], pb[i * sb], pc[i * sc]);
    }
  });
}

// out[i] = op(x[i]) over n elements, in parallel blocks.
template <typename T, typename R, typename Op>
void unaryMap(const T* x, R* out, int64_t n, const RunContext& ctx, const Op& op,
              int64_t cost = 1) {
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  parallelFor(blocks, ctx, kBlock * cost, [&](int64_t b) {
    const int64_t s = b * kBlock, e = std::min(n, s + kBlock);
    for (int64_t i = s; i < e; ++i) out[i] = op(x[i]);
  });
}

// ---------------------------------------------------------------------------------------------
// 16-bit floats

inline float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
  uint32_t x;
  if (e == 0) {
    const float f = static_cast<float>(m) * (1.0f / 16777216.0f);  // m * 2^-24
    std::memcpy(&x, &f, 4);
    x |= sign;
  } else if (e == 31) {
    x = sign | 0x7f800000u | (m << 13);
  } else {
    x = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// Round to nearest even; overflow to infinity; NaN stays NaN.
inline uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u)  // inf / nan
    return static_cast<uint16_t>(sign | 0x7c00 |
                                 (mag > 0x7f800000u ? 0x200 | ((mag >> 13) & 0x3ff) : 0));
  if (mag >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00);  // rounds past 65504
  if (mag < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    float af;
    std::memcpy(&af, &mag, 4);
    const auto v = static_cast<uint32_t>(std::nearbyint(af * 16777216.0f));
    return static_cast<uint16_t>(sign | v);
  }
  uint32_t h = (((mag >> 23) - 112) << 10) | ((mag & 0x7fffff) >> 13);
  const uint32_t rem = mag & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

inline float bfloat16ToFloat(uint16_t h) {
  const uint32_t x = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t floatToBfloat16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

inline bool isHalfType(DType d) { return d == DType::kFloat16 || d == DType::kBFloat16; }

// A float16 / bfloat16 tensor widened to float32.
inline Tensor halfTensorToFloat(const Tensor& t) {
  Tensor out(DType::kFloat32, t.shape());
  const auto* src = reinterpret_cast<const uint16_t*>(t.bytes().data());
  float* dst = out.mutableData<float>().data();
  const bool bf = t.dtype() == DType::kBFloat16;
  for (int64_t i = 0; i < t.numel(); ++i)
    dst[i] = bf ? bfloat16ToFloat(src[i]) : halfToFloat(src[i]);
  return out;
}

// A float32 tensor narrowed to float16 or bfloat16.
inline Tensor floatTensorToHalf(const Tensor& t, DType half) {
  Tensor out(half, t.shape());
  auto* dst = reinterpret_cast<uint16_t*>(out.mutableBytes().data());
  const float* src = t.data<float>().data();
  const bool bf = half == DType::kBFloat16;
  for (int64_t i = 0; i < t.numel(); ++i)
    dst[i] = bf ? floatToBfloat16(src[i]) : floatToHalf(src[i]);
  return out;
}

// Runs `fn` with float16 / bfloat16 inputs widened to float32; when input `type_input` was a
// 16-bit float, float32 outputs are narrowed back to its type.
inline KernelFn withHalfAsFloat(KernelFn fn, size_t type_input = 0) {
  return [fn = std::move(fn), type_input](std::span<const Tensor* const> in, std::span<Tensor> out,
                                          const RunContext& ctx) -> Status {
    bool any = false;
    for (const Tensor* t : in) any = any || (t && isHalfType(t->dtype()));
    if (!any) return fn(in, out, ctx);
    const DType back =
        type_input < in.size() && in[type_input] && isHalfType(in[type_input]->dtype())
            ? in[type_input]->dtype()
            : DType::kUndefined;
    std::vector<Tensor> widened(in.size());
    std::vector<const Tensor*> ptrs(in.begin(), in.end());
    for (size_t i = 0; i < in.size(); ++i) {
      if (in[i] && isHalfType(in[i]->dtype())) {
        widened[i] = halfTensorToFloat(*in[i]);
        ptrs[i] = &widened[i];
      }
    }
    NNC_RETURN_IF_ERROR(fn(ptrs, out, ctx));
    if (back != DType::kUndefined)
      for (Tensor& t : out)
        if (t.dtype() == DType::kFloat32 && t.byteSize() == static_cast<size_t>(t.numel()) * 4)
          t = floatTensorToHalf(t, back);  // (an unassigned output has no bytes)
    return Status::ok();
  };
}

// ---------------------------------------------------------------------------------------------
// dtype dispatch: fn(T{}) for the C++ type of a numeric dtype.

template <typename Fn>
Status visitNumeric(DType dt, const char* what, Fn&& fn) {
  switch (dt) {
    case DType::kFloat32:
      return fn(float{});
    case DType::kFloat64:
      return fn(double{});
    case DType::kInt8:
      return fn(int8_t{});
    case DType::kInt16:
      return fn(int16_t{});
    case DType::kInt32:
      return fn(int32_t{});
    case DType::kInt64:
      return fn(int64_t{});
    case DType::kUInt8:
      return fn(uint8_t{});
    case DType::kUInt16:
      return fn(uint16_t{});
    case DType::kUInt32:
      return fn(uint32_t{});
    case DType::kUInt64:
      return fn(uint64_t{});
    default:
      return unsupported(std::string(what) + ": dtype " + dtypeName(dt) + " is not supported");
  }
}

// Like visitNumeric, plus bool.
template <typename Fn>
Status visitNumericOrBool(DType dt, const char* what, Fn&& fn) {
  if (dt == DType::kBool) return fn(bool{});
  return visitNumeric(dt, what, std::forward<Fn>(fn));
}

}  // namespace nnc::exec
