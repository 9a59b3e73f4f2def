// Reductions (ReduceSum / Mean / Max / Min / Prod / L1 / L2 / SumSquare / LogSum / LogSumExp),
// ArgMax / ArgMin, and Softmax / LogSoftmax / Hardmax.
//
// The input is viewed as [O, R, I] whenever the reduced axes form one block after merging
// adjacent axes (the usual case: trailing axes, a single axis, global pooling); rows with I == 1
// reduce contiguous memory (Eigen, vectorised), rows with I > 1 accumulate whole inner vectors.
// Other axis sets (e.g. {0, 2}) use a general gather over the reduced sub-block.
// Softmax-like ops: opset < 13 flattens to [prod(dims < axis), prod(dims >= axis)]; from 13 the
// op works on the single given axis. Both are [O, R, I] with max-subtraction for stability.

#include <Eigen/Core>
#include <cmath>
#include <limits>

#include "elementwise_util.h"
#include "kernel_util.h"
#include "kernels.h"

namespace nnc::exec {
namespace {

using In = std::span<const Tensor* const>;
using Out = std::span<Tensor>;

template <typename T>
using ArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

enum class RK { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kSumSquare, kLogSum };

// Accumulation rules of one reduction kind for element type T.
template <RK K, typename T>
struct Reducer {
  static constexpr bool kFloat = std::is_floating_point_v<T>;
  static T init() {
    if constexpr (K == RK::kMax)
      return kFloat ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
    else if constexpr (K == RK::kMin)
      return kFloat ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
    else if constexpr (K == RK::kProd)
      return T(1);
    else
      return T(0);
  }
  static T add(T a, T x) {
    if constexpr (K == RK::kMax)
      return (x > a || (kFloat && x != x)) ? x : a;
    else if constexpr (K == RK::kMin)
      return (x < a || (kFloat && x != x)) ? x : a;
    else if constexpr (K == RK::kProd)
      return static_cast<T>(a * x);
    else if constexpr (K == RK::kL1) {
      if constexpr (std::is_signed_v<T>)
        return static_cast<T>(a + (x < 0 ? -x : x));
      else
        return static_cast<T>(a + x);
    } else if constexpr (K == RK::kL2 || K == RK::kSumSquare)
      return static_cast<T>(a + x * x);
    else
      return static_cast<T>(a + x);
  }
  static T finish(T a, int64_t n) {
    if constexpr (K == RK::kMean)
      return n == 0 ? (kFloat ? std::numeric_limits<T>::quiet_NaN() : T(0))
                    : static_cast<T>(a / static_cast<T>(n));
    else if constexpr (K == RK::kL2)
      return static_cast<T>(std::sqrt(static_cast<double>(a)));
    else if constexpr (K == RK::kLogSum)
      return static_cast<T>(std::log(static_cast<double>(a)));
    else
      return a;
  }
  // Reduction of n contiguous values.
  static T contiguous(const T* x, int64_t n) {
    if constexpr (kFloat) {
      if (n > 0) {
        const ArrMap<T> m(x, n);
        if constexpr (K == RK::kSum || K == RK::kMean || K == RK::kLogSum)
          return finish(m.sum(), n);
        else if constexpr (K == RK::kMax) {
          if (m.isNaN().any()) return std::numeric_limits<T>::quiet_NaN();
          return m.maxCoeff();
        } else if constexpr (K == RK::kMin) {
          if (m.isNaN().any()) return std::numeric_limits<T>::quiet_NaN();
          return m.minCoeff();
        } else if constexpr (K == RK::kProd)
          return m.prod();
        else if constexpr (K == RK::kL1)
          return m.abs().sum();
        else if constexpr (K == RK::kL2)
          return std::sqrt(m.square().sum());
        else if constexpr (K == RK::kSumSquare)
          return m.square().sum();
      }
    }
    T a = init();
    for (int64_t i = 0; i < n; ++i) a = add(a, x[i]);
    return finish(a, n);
  }
};

// How the input splits for a reduction.
struct ReduceLayout {
  Shape out_shape;     // with keepdims applied
  Shape keep_shape;    // reduced axes kept as 1 (for broadcasting back)
  bool single = true;  // [O, R, I] form
  int64_t O = 1, R = 1, I = 1;
  // General form: output element -> input offset over kept blocks; reduced-block offsets.
  std::vector<int64_t> kept_dims, kept_strides, red_offsets;
};

ReduceLayout makeLayout(const Shape& shape, const std::vector<bool>& reduced, bool keepdims) {
  ReduceLayout l;
  const size_t rank = shape.size();
  for (size_t d = 0; d < rank; ++d) {
    l.keep_shape.push_back(reduced[d] ? 1 : shape[d]);
    if (!reduced[d])
      l.out_shape.push_back(shape[d]);
    else if (keepdims)
      l.out_shape.push_back(1);
  }
  // Merge adjacent axes of the same kind (size-1 axes dropped).
  struct Block {
    int64_t extent, stride;
    bool red;
  };
  std::vector<Block> blocks;
  int64_t stride = 1;
  std::vector<int64_t> strides(rank);
  for (size_t d = rank; d-- > 0;) {
    strides[d] = stride;
    stride *= shape[d];
  }
  for (size_t d = 0; d < rank; ++d) {
    if (shape[d] == 1) continue;
    if (!blocks.empty() && blocks.back().red == reduced[d]) {
      blocks.back().extent *= shape[d];
      blocks.back().stride = strides[d];
    } else {
      blocks.push_back({shape[d], strides[d], static_cast<bool>(reduced[d])});
    }
  }
  int red_blocks = 0;
  for (const Block& b : blocks) red_blocks += b.red;
  if (red_blocks <= 1) {
    bool seen = false;
    for (const Block& b : blocks) {
      if (b.red) {
        l.R = b.extent;
        seen = true;
      } else {
        (seen ? l.I : l.O) *= b.extent;
      }
    }
    return l;
  }
  l.single = false;
  std::vector<int64_t> red_dims, red_strides;
  for (const Block& b : blocks) {
    if (b.red) {
      red_dims.push_back(b.extent);
      red_strides.push_back(b.stride);
    } else {
      l.kept_dims.push_back(b.extent);
      l.kept_strides.push_back(b.stride);
    }
  }
  int64_t count = 1;
  for (int64_t e : red_dims) count *= e;
  l.red_offsets.resize(count);
  for (int64_t i = 0; i < count; ++i) {
    int64_t rem = i, off = 0;
    for (size_t j = red_dims.size(); j-- > 0;) {
      off += (rem % red_dims[j]) * red_strides[j];
      rem /= red_dims[j];
    }
    l.red_offsets[i] = off;
  }
  return l;
}

template <RK K, typename T>
void reduceTyped(const ReduceLayout& l, const T* x, T* y, const RunContext& ctx) {
  using Red = Reducer<K, T>;
  if (!l.single) {
    int64_t n_out = 1;
    for (int64_t e : l.kept_dims) n_out *= e;
    const int64_t nr = static_cast<int64_t>(l.red_offsets.size());
    parallelFor(n_out, ctx, nr, [&](int64_t o) {
      int64_t rem = o, base = 0;
      for (size_t j = l.kept_dims.size(); j-- > 0;) {
        base += (rem % l.kept_dims[j]) * l.kept_strides[j];
        rem /= l.kept_dims[j];
      }
      T a = Red::init();
      for (int64_t off : l.red_offsets) a = Red::add(a, x[base + off]);
      y[o] = Red::finish(a, nr);
    });
    return;
  }
  const int64_t O = l.O, R = l.R, I = l.I;
  if (I == 1) {
    parallelFor(O, ctx, R, [&](int64_t o) { y[o] = Red::contiguous(x + o * R, R); });
    return;
  }
  constexpr int64_t kChunk = 1024;
  const int64_t chunks = (I + kChunk - 1) / kChunk;
  parallelFor(O * chunks, ctx, R * std::min(I, kChunk), [&](int64_t item) {
    const int64_t o = item / chunks, s = (item % chunks) * kChunk, len = std::min(kChunk, I - s);
    T* acc = y + o * I + s;
    for (int64_t i = 0; i < len; ++i) acc[i] = Red::init();
    for (int64_t r = 0; r < R; ++r) {
      const T* row = x + (o * R + r) * I + s;
      for (int64_t i = 0; i < len; ++i) acc[i] = Red::add(acc[i], row[i]);
    }
    for (int64_t i = 0; i < len; ++i) acc[i] = Red::finish(acc[i], R);
  });
}

template <RK K>
StatusOr<Tensor> reduceTensor(const Tensor& x, const ReduceLayout& l, const RunContext& ctx,
                              const char* name) {
  Tensor y;
  NNC_RETURN_IF_ERROR(visitNumeric(x.dtype(), name, [&](auto tag) -> Status {
    using T = decltype(tag);
    y = Tensor(x.dtype(), l.out_shape);
    if (y.numel() == 0) return Status::ok();
    reduceTyped<K, T>(l, x.data<T>().data(), y.mutableData<T>().data(), ctx);
    return Status::ok();
  }));
  return y;
}

// Axes from the attribute or (opset 13 ReduceSum, opset 18 others) the optional second input.
struct ReduceAttrs {
  std::vector<int64_t> axes;
  bool keepdims = true;
  bool noop_with_empty_axes = false;
};

StatusOr<std::vector<bool>> reducedAxes(const ReduceAttrs& a, In in, int rank, bool& noop) {
  std::vector<int64_t> axes = a.axes;
  if (in.size() > 1 && in[1]) axes = in[1]->toInt64Vector();
  std::vector<bool> mask(rank, false);
  noop = false;
  if (axes.empty()) {
    if (a.noop_with_empty_axes)
      noop = true;
    else
      mask.assign(rank, true);
    return mask;
  }
  for (int64_t ax : axes) {
    NNC_ASSIGN_OR_RETURN(int d, normaliseAxis(ax, rank));
    mask[d] = true;
  }
  return mask;
}

template <RK K>
StatusOr<KernelFn> makeReduce(const KernelBuildContext& b, const char* name) {
  ReduceAttrs a;
  a.axes = b.node.intsAttr("axes");
  a.keepdims = b.node.intAttr("keepdims", 1) != 0;
  a.noop_with_empty_axes = b.node.intAttr("noop_with_empty_axes", 0) != 0;
  return withHalfAsFloat([a, name](In in, Out out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    bool noop = false;
    NNC_ASSIGN_OR_RETURN(std::vector<bool> mask, reducedAxes(a, in, x.rank(), noop));
    if (noop) {
      out[0] = x;
      return Status::ok();
    }
    const ReduceLayout l = makeLayout(x.shape(), mask, a.keepdims);
    NNC_ASSIGN_OR_RETURN(out[0], reduceTensor<K>(x, l, ctx, name));
    return Status::ok();
  });
}

// log(sum(exp(x))) computed as m + log(sum(exp(x - m))) with m the max over the same axes.
StatusOr<KernelFn> makeReduceLogSumExp(const KernelBuildContext& b) {
  ReduceAttrs a;
  a.axes = b.node.intsAttr("axes");
  a.keepdims = b.node.intAttr("keepdims", 1) != 0;
  a.noop_with_empty_axes = b.node.intAttr("noop_with_empty_axes", 0) != 0;
  return withHalfAsFloat([a](In in, Out out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    bool noop = false;
    NNC_ASSIGN_OR_RETURN(std::vector<bool> mask, reducedAxes(a, in, x.rank(), noop));
    if (noop) {
      out[0] = x;
      return Status::ok();
    }
    const ReduceLayout l = makeLayout(x.shape(), mask, a.keepdims);
    NNC_ASSIGN_OR_RETURN(Tensor m, reduceTensor<RK::kMax>(x, l, ctx, "ReduceLogSumExp"));
    Tensor result;
    NNC_RETURN_IF_ERROR(visitNumeric(x.dtype(), "ReduceLogSumExp", [&](auto tag) -> Status {
      using T = decltype(tag);
      if constexpr (std::is_floating_point_v<T>) {
        auto md = m.mutableData<T>();
        for (auto& v : md)
          if (!std::isfinite(v)) v = 0;  // shift only by finite maxima
        NNC_ASSIGN_OR_RETURN(BroadcastPlan plan, makeBroadcastPlan({&x.shape(), &l.keep_shape}));
        Tensor e(x.dtype(), x.shape());
        broadcastBinary(
            plan, x.data<T>().data(), md.data(), e.mutableData<T>().data(), ctx,
            [](T u, T v) { return std::exp(u - v); }, 8);
        NNC_ASSIGN_OR_RETURN(result, reduceTensor<RK::kSum>(e, l, ctx, "ReduceLogSumExp"));
        auto rd = result.mutableData<T>();
        for (size_t i = 0; i < rd.size(); ++i) rd[i] = md[i] + std::log(rd[i]);
        return Status::ok();
      } else {
        return unsupported("ReduceLogSumExp: integer input");
      }
    }));
    out[0] = std::move(result);
    return Status::ok();
  });
}

// ---------------------------------------------------------------------------------------------
// ArgMax / ArgMin

template <bool kMax>
StatusOr<KernelFn> makeArg(const KernelBuildContext& b) {
  const int64_t axis = b.node.intAttr("axis", 0);
  const bool keepdims = b.node.intAttr("keepdims", 1) != 0;
  const bool last = b.node.intAttr("select_last_index", 0) != 0;
  return withHalfAsFloat([=](In in, Out out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    const int rank = std::max(1, x.rank());
    NNC_ASSIGN_OR_RETURN(int ax, normaliseAxis(axis, rank));
    Shape shape = x.shape();
    if (shape.empty()) shape = {1};
    int64_t O = 1, R = shape[ax], I = 1;
    for (int d = 0; d < ax; ++d) O *= shape[d];
    for (size_t d = ax + 1; d < shape.size(); ++d) I *= shape[d];
    if (R == 0) return invalidModel("ArgMax/ArgMin over an empty axis");
    Shape out_shape;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (static_cast<int>(d) != ax)
        out_shape.push_back(shape[d]);
      else if (keepdims)
        out_shape.push_back(1);
    }
    Tensor y(DType::kInt64, out_shape);
    int64_t* yd = y.mutableData<int64_t>().data();
    NNC_RETURN_IF_ERROR(
        visitNumeric(x.dtype(), kMax ? "ArgMax" : "ArgMin", [&](auto tag) -> Status {
          using T = decltype(tag);
          const T* xd = x.data<T>().data();
          // Strictly better, or equally good when the last index is wanted.
          auto better = [last](T v, T best) {
            if constexpr (kMax)
              return last ? v >= best : v > best;
            else
              return last ? v <= best : v < best;
          };
          parallelFor(O * I, ctx, R, [&](int64_t oi) {
            const int64_t o = oi / I, i = oi % I;
            const T* p = xd + o * R * I + i;
            T best = p[0];
            int64_t idx = 0;
            for (int64_t r = 1; r < R; ++r)
              if (better(p[r * I], best)) {
                best = p[r * I];
                idx = r;
              }
            yd[oi] = idx;
          });
          return Status::ok();
        }));
    out[0] = std::move(y);
    return Status::ok();
  });
}

// ---------------------------------------------------------------------------------------------
// Softmax, LogSoftmax, Hardmax

enum class SK { kSoftmax, kLogSoftmax, kHardmax };

template <SK K, typename T>
void softmaxTyped(const T* x, T* y, int64_t O, int64_t R, int64_t I, const RunContext& ctx) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  if (I == 1) {
    parallelFor(O, ctx, R * 8, [&](int64_t o) {
      const Eigen::Map<const Arr> xr(x + o * R, R);
      Eigen::Map<Arr> yr(y + o * R, R);
      if constexpr (K == SK::kHardmax) {
        Eigen::Index arg = 0;
        for (Eigen::Index r = 1; r < R; ++r)
          if (xr[r] > xr[arg]) arg = r;
        yr.setZero();
        yr[arg] = 1;
      } else {
        const T m = xr.maxCoeff();
        yr = (xr - m).exp();
        const T s = yr.sum();
        if constexpr (K == SK::kSoftmax)
          yr /= s;
        else
          yr = (xr - m) - std::log(s);
      }
    });
    return;
  }
  constexpr int64_t kChunk = 512;
  const int64_t chunks = (I + kChunk - 1) / kChunk;
  parallelFor(O * chunks, ctx, R * std::min(I, kChunk) * 8, [&](int64_t item) {
    const int64_t o = item / chunks, s = (item % chunks) * kChunk, len = std::min(kChunk, I - s);
    const T* xb = x + o * R * I + s;
    T* yb = y + o * R * I + s;
    Arr m = Eigen::Map<const Arr>(xb, len);
    Eigen::Array<int64_t, Eigen::Dynamic, 1> arg;
    if constexpr (K == SK::kHardmax) arg = Eigen::Array<int64_t, Eigen::Dynamic, 1>::Zero(len);
    for (int64_t r = 1; r < R; ++r) {
      const T* row = xb + r * I;
      for (int64_t i = 0; i < len; ++i)
        if (row[i] > m[i]) {
          m[i] = row[i];
          if constexpr (K == SK::kHardmax) arg[i] = r;
        }
    }
    if constexpr (K == SK::kHardmax) {
      for (int64_t r = 0; r < R; ++r)
        for (int64_t i = 0; i < len; ++i) yb[r * I + i] = arg[i] == r ? T(1) : T(0);
      return;
    }
    Arr sum = Arr::Zero(len);
    for (int64_t r = 0; r < R; ++r) {
      Eigen::Map<Arr> yr(yb + r * I, len);
      yr = (Eigen::Map<const Arr>(xb + r * I, len) - m).exp();
      sum += yr;
    }
    if constexpr (K == SK::kSoftmax) {
      const Arr inv = sum.inverse();
      for (int64_t r = 0; r < R; ++r) Eigen::Map<Arr>(yb + r * I, len) *= inv;
    } else {
      const Arr shift = m + sum.log();
      for (int64_t r = 0; r < R; ++r)
        Eigen::Map<Arr>(yb + r * I, len) = Eigen::Map<const Arr>(xb + r * I, len) - shift;
    }
  });
}

template <SK K>
StatusOr<KernelFn> makeSoftmax(const KernelBuildContext& b) {
  const bool legacy = b.opset < 13;  // coerce to 2-D at `axis`
  const int64_t axis = b.node.intAttr("axis", legacy ? 1 : -1);
  return withHalfAsFloat([=](In in, Out out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
    const Tensor& x = *in[0];
    Shape shape = x.shape();
    if (shape.empty()) shape = {1};
    const int rank = static_cast<int>(shape.size());
    NNC_ASSIGN_OR_RETURN(int ax, normaliseAxis(axis, rank));
    int64_t O = 1, R = 1, I = 1;
    for (int d = 0; d < ax; ++d) O *= shape[d];
    if (legacy) {
      for (int d = ax; d < rank; ++d) R *= shape[d];
    } else {
      R = shape[ax];
      for (int d = ax + 1; d < rank; ++d) I *= shape[d];
    }
    Tensor y(x.dtype(), x.shape());
    if (x.numel() > 0) {
      if (x.dtype() == DType::kFloat32)
        softmaxTyped<K, float>(x.data<float>().data(), y.mutableData<float>().data(), O, R, I, ctx);
      else if (x.dtype() == DType::kFloat64)
        softmaxTyped<K, double>(x.data<double>().data(), y.mutableData<double>().data(), O, R, I,
                                ctx);
      else
        return unsupported(std::string("Softmax-like op on ") + dtypeName(x.dtype()));
    }
    out[0] = std::move(y);
    return Status::ok();
  });
}

template <RK K>
void addReduce(KernelRegistry& r, const char* name) {
  r.addFunction(name, [name](const KernelBuildContext& b) { return makeReduce<K>(b, name); });
}

}  // namespace

void registerReduceKernels(KernelRegistry& r) {
  addReduce<RK::kSum>(r, "ReduceSum");
  addReduce<RK::kMean>(r, "ReduceMean");
  addReduce<RK::kMax>(r, "ReduceMax");
  addReduce<RK::kMin>(r, "ReduceMin");
  addReduce<RK::kProd>(r, "ReduceProd");
  addReduce<RK::kL1>(r, "ReduceL1");
  addReduce<RK::kL2>(r, "ReduceL2");
  addReduce<RK::kSumSquare>(r, "ReduceSumSquare");
  addReduce<RK::kLogSum>(r, "ReduceLogSum");
  r.addFunction("ReduceLogSumExp", makeReduceLogSumExp);
  r.addFunction("ArgMax", makeArg<true>);
  r.addFunction("ArgMin", makeArg<false>);
  r.addFunction("Softmax", makeSoftmax<SK::kSoftmax>);
  r.addFunction("LogSoftmax", makeSoftmax<SK::kLogSoftmax>);
  r.addFunction("Hardmax", makeSoftmax<SK::kHardmax>);
}

}  // namespace nnc::exec
