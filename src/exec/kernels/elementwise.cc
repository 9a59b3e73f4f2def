// Element-wise ops: numpy-broadcast binary arithmetic, comparisons and logic (variadic Sum / Max /
// Min / Mean folded pairwise), activations and other unary math, Clip, Where, Cast / CastLike.
//
// Broadcasting goes through a BroadcastPlan (elementwise_util.h): axes are merged into runs in
// which every operand is contiguous or a repeated scalar, so same-shape, scalar and per-channel
// operands all become tight, vectorisable loops. Ops are functors inlined into typed loops; the
// dtype is dispatched once per call. float16 / bfloat16 operands of the math ops are widened to
// float32 for the computation and the result narrowed back.

#include <Eigen/Core>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "elementwise_util.h"
#include "kernel_util.h"
#include "kernels.h"

namespace nnc::exec {
namespace {

using In = std::span<const Tensor* const>;
using Out = std::span<Tensor>;

template <typename T>
constexpr bool kIsFloat = std::is_floating_point_v<T>;
template <typename T>
constexpr bool kIsInt = std::is_integral_v<T> && !std::is_same_v<T, bool>;
template <typename T>
constexpr bool kIsNumber = kIsFloat<T> || kIsInt<T>;
template <typename T>
constexpr bool kIsSigned = kIsNumber<T>&& std::is_signed_v<T>;

// Wrapping integer arithmetic (signed overflow is not UB this way).
template <typename T>
using Wide = std::conditional_t<(sizeof(T) < 4), uint32_t, std::make_unsigned_t<T>>;
template <typename T>
T wrapAdd(T a, T b) {
  return static_cast<T>(static_cast<Wide<T>>(a) + static_cast<Wide<T>>(b));
}
template <typename T>
T wrapSub(T a, T b) {
  return static_cast<T>(static_cast<Wide<T>>(a) - static_cast<Wide<T>>(b));
}
template <typename T>
T wrapMul(T a, T b) {
  return static_cast<T>(static_cast<Wide<T>>(a) * static_cast<Wide<T>>(b));
}

// ---------------------------------------------------------------------------------------------
// Binary functors. `ok<T>` says which element types an op accepts; operator() gives the result.

struct AddOp {
  template <typename T>
  static constexpr bool ok = kIsNumber<T>;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (kIsInt<T>)
      return wrapAdd(a, b);
    else
      return a + b;
  }
};
struct SubOp {
  template <typename T>
  static constexpr bool ok = kIsNumber<T>;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (kIsInt<T>)
      return wrapSub(a, b);
    else
      return a - b;
  }
};
struct MulOp {
  template <typename T>
  static constexpr bool ok = kIsNumber<T>;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (kIsInt<T>)
      return wrapMul(a, b);
    else
      return a * b;
  }
};
struct DivOp {
  template <typename T>
  static constexpr bool ok = kIsNumber<T>;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (kIsInt<T>) {
      if (b == 0) return 0;  // no trap on integer division by zero
      if constexpr (kIsSigned<T>)
        if (b == -1) return wrapSub(T(0), a);
      return static_cast<T>(a / b);
    } else {
      return a / b;
    }
  }
};
struct MaxOp {
  template <typename T>
  static constexpr bool ok = kIsNumber<T>;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (kIsFloat<T>)
      return (a < b || std::isnan(b)) ? b : a;  // NaN propagates
    else
      return a < b ? b : a;
  }
};
struct MinOp {
  template <typename T>
  static constexpr bool ok = kIsNumber<T>;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (kIsFloat<T>)
      return (b < a || std::isnan(b)) ? b : a;
    else
      return b < a ? b : a;
  }
};
// Mod with fmod=0: the result takes the sign of the divisor (Python / numpy).
struct ModOp {
  template <typename T>
  static constexpr bool ok = kIsNumber<T>;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (kIsInt<T>) {
      if (b == 0) return 0;
      if constexpr (kIsSigned<T>) {
        if (b == -1) return 0;
        T r = static_cast<T>(a % b);
        if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
        return r;
      } else {
        return static_cast<T>(a % b);
      }
    } else {
      T r = std::fmod(a, b);
      if (r != 0 && ((r < 0) != (b < 0))) r += b;
      return r;
    }
  }
};
// Mod with fmod=1: the result takes the sign of the dividend (C fmod / %).
struct FModOp {
  template <typename T>
  static constexpr bool ok = kIsNumber<T>;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (kIsInt<T>) {
      if (b == 0) return 0;
      if constexpr (kIsSigned<T>)
        if (b == -1) return 0;
      return static_cast<T>(a % b);
    } else {
      return std::fmod(a, b);
    }
  }
};
struct PReluOp {
  template <typename T>
  static constexpr bool ok = kIsNumber<T>;
  template <typename T>
  T operator()(T x, T slope) const {
    if constexpr (kIsInt<T>)
      return x < 0 ? wrapMul(x, slope) : x;
    else
      return x < 0 ? x * slope : x;
  }
};
struct BitShiftOp {
  bool left = true;
  template <typename T>
  static constexpr bool ok = kIsInt<T>&& std::is_unsigned_v<T>;
  template <typename T>
  T operator()(T a, T b) const {
    if (b >= sizeof(T) * 8) return 0;
    return left ? static_cast<T>(static_cast<Wide<T>>(a) << b) : static_cast<T>(a >> b);
  }
};

#define NNC_COMPARE_OP(Name, expr)           \
  struct Name {                              \
    template <typename T>                    \
    static constexpr bool ok = kIsNumber<T>; \
    template <typename T>                    \
    bool operator()(T a, T b) const {        \
      return expr;                           \
    }                                        \
  };
NNC_COMPARE_OP(LessOp, a < b)
NNC_COMPARE_OP(GreaterOp, a > b)
NNC_COMPARE_OP(LessOrEqualOp, a <= b)
NNC_COMPARE_OP(GreaterOrEqualOp, a >= b)
#undef NNC_COMPARE_OP
struct EqualOp {
  template <typename T>
  static constexpr bool ok = kIsNumber<T> || std::is_same_v<T, bool>;
  template <typename T>
  bool operator()(T a, T b) const {
    return a == b;
  }
};
#define NNC_LOGIC_OP(Name, expr)                        \
  struct Name {                                         \
    template <typename T>                               \
    static constexpr bool ok = std::is_same_v<T, bool>; \
    template <typename T>                               \
    bool operator()(T a, T b) const {                   \
      return expr;                                      \
    }                                                   \
  };
NNC_LOGIC_OP(AndOp, a&& b)
NNC_LOGIC_OP(OrOp, a || b)
NNC_LOGIC_OP(XorOp, a != b)
#undef NNC_LOGIC_OP

// a (op) b with numpy broadcasting; both operands of one dtype.
template <typename Op>
StatusOr<Tensor> applyBinary(const Tensor& a, const Tensor& b, const RunContext& ctx,
                             const char* name, const Op& op) {
  if (a.dtype() != b.dtype())
    return invalidModel(std::string(name) + ": operand dtypes differ (" + dtypeName(a.dtype()) +
                        " and " + dtypeName(b.dtype()) + ")");
  NNC_ASSIGN_OR_RETURN(BroadcastPlan plan, makeBroadcastPlan({&a.shape(), &b.shape()}));
  Tensor y;
  NNC_RETURN_IF_ERROR(visitNumericOrBool(a.dtype(), name, [&](auto tag) -> Status {
    using T = decltype(tag);
    if constexpr (Op::template ok<T>) {
      using R = decltype(op(T{}, T{}));
      y = ctx.newTensor(DTypeOf<R>::value, plan.out_shape);  // every element is written
      broadcastBinary(plan, a.data<T>().data(), b.data<T>().data(), y.mutableData<R>().data(), ctx,
                      op);
      return Status::ok();
    } else {
      return unsupported(std::string(name) + ": dtype " + dtypeName(a.dtype()) +
                         " is not supported");
    }
  }));
  return y;
}

// Folds the (non-omitted) inputs left to right: ((in0 op in1) op in2) ...
template <typename Op>
StatusOr<Tensor> foldInputs(In in, const RunContext& ctx, const char* name, const Op& op,
                            int* count = nullptr) {
  const Tensor* first = nullptr;
  Tensor acc;
  int n = 0;
  for (const Tensor* t : in) {
    if (!t) continue;
    ++n;
    if (!first) {
      first = t;
      continue;
    }
    NNC_ASSIGN_OR_RETURN(Tensor next, applyBinary(n == 2 ? *first : acc, *t, ctx, name, op));
    acc = std::move(next);
  }
  if (!first) return invalidModel(std::string(name) + " needs at least one input");
  if (count) *count = n;
  if (n == 1) return Tensor(*first);
  return acc;
}

// Opset < 7 binary ops broadcast only with broadcast=1, B aligned to A at `axis` (default: the
// trailing axes). Returns B reshaped so that numpy broadcasting gives that alignment.
StatusOr<Tensor> legacyBroadcastOperand(const Tensor& a, const Tensor& b, int64_t axis) {
  const int ra = a.rank(), rb = b.rank();
  if (axis < 0) axis += ra;  // an explicit negative axis counts from A's end
  if (axis < 0 || axis + rb > ra) return invalidModel("legacy broadcast: bad axis");
  Shape shape = b.shape();
  shape.resize(static_cast<size_t>(ra - axis), 1);
  return Tensor::fromBytes(b.dtype(), std::move(shape), b.bytes());
}

template <typename Op>
void addBinary(KernelRegistry& r, const char* name, bool half = true) {
  r.addFunction(name, [name, half](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    const bool legacy = b.opset < 7 && b.node.intAttr("broadcast", 0) != 0;
    const bool has_axis = b.node.hasAttribute("axis");
    const int64_t axis = b.node.intAttr("axis", 0);
    KernelFn fn = [=](In in, Out out, const RunContext& ctx) -> Status {
      NNC_RETURN_IF_ERROR(requireInput(in, 0, "A"));
      NNC_RETURN_IF_ERROR(requireInput(in, 1, "B"));
      if (legacy && has_axis && in[1]->rank() > 0) {
        NNC_ASSIGN_OR_RETURN(Tensor bb, legacyBroadcastOperand(*in[0], *in[1], axis));
        NNC_ASSIGN_OR_RETURN(out[0], applyBinary(*in[0], bb, ctx, name, Op{}));
        return Status::ok();
      }
      NNC_ASSIGN_OR_RETURN(out[0], applyBinary(*in[0], *in[1], ctx, name, Op{}));
      return Status::ok();
    };
    return half ? withHalfAsFloat(std::move(fn)) : fn;
  });
}

template <typename Op>
void addVariadic(KernelRegistry& r, const char* name) {
  r.addFunction(name, [name](const KernelBuildContext&) -> StatusOr<KernelFn> {
    return withHalfAsFloat([name](In in, Out out, const RunContext& ctx) -> Status {
      NNC_ASSIGN_OR_RETURN(out[0], foldInputs(in, ctx, name, Op{}));
      return Status::ok();
    });
  });
}

Status meanKernel(In in, Out out, const RunContext& ctx) {
  int n = 0;
  NNC_ASSIGN_OR_RETURN(Tensor sum, foldInputs(in, ctx, "Mean", AddOp{}, &n));
  NNC_RETURN_IF_ERROR(visitNumeric(sum.dtype(), "Mean", [&](auto tag) -> Status {
    using T = decltype(tag);
    auto d = sum.mutableData<T>();
    const T count = static_cast<T>(n);
    for (auto& v : d) v = static_cast<T>(v / count);
    return Status::ok();
  }));
  out[0] = std::move(sum);
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Casting

struct F16 {
  uint16_t bits;
};
struct BF16 {
  uint16_t bits;
};
// How a stored element type is computed with: 16-bit floats through float.
template <typename T>
struct CastTraits {
  using Compute = T;
  static T load(T v) { return v; }
  static T store(T v) { return v; }
};
template <>
struct CastTraits<F16> {
  using Compute = float;
  static float load(F16 v) { return halfToFloat(v.bits); }
  static F16 store(float v) { return {floatToHalf(v)}; }
};
template <>
struct CastTraits<BF16> {
  using Compute = float;
  static float load(BF16 v) { return bfloat16ToFloat(v.bits); }
  static BF16 store(float v) { return {floatToBfloat16(v)}; }
};

// One value from S to D: float -> integer truncates toward zero (saturating, NaN -> 0);
// anything -> bool is "!= 0".
template <typename S, typename D>
D convertValue(S v) {
  if constexpr (std::is_same_v<D, bool>) {
    return v != S(0);
  } else if constexpr (kIsFloat<S> && kIsInt<D>) {
    if (std::isnan(v)) return 0;
    const double t = std::trunc(static_cast<double>(v));
    if (t <= static_cast<double>(std::numeric_limits<D>::lowest()))
      return std::numeric_limits<D>::lowest();
    if (t >= static_cast<double>(std::numeric_limits<D>::max()))
      return std::numeric_limits<D>::max();
    return static_cast<D>(t);
  } else {
    return static_cast<D>(v);
  }
}

template <typename Fn>
Status visitCastType(DType dt, Fn&& fn) {
  if (dt == DType::kFloat16) return fn(F16{});
  if (dt == DType::kBFloat16) return fn(BF16{});
  return visitNumericOrBool(dt, "Cast", std::forward<Fn>(fn));
}

// Formats like numpy's str() of a float32 (shortest round-trip digits).
std::string floatToString(float v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  const float a = std::fabs(v);
  const bool sci = a != 0 && (a < 1e-4f || a >= 1e16f);
  auto res = std::to_chars(buf, buf + sizeof(buf), v,
                           sci ? std::chars_format::scientific : std::chars_format::fixed);
  std::string s(buf, res.ptr);
  if (!sci && s.find('.') == std::string::npos) s += ".0";
  return s;
}

StatusOr<Tensor> castTensor(const Tensor& x, DType to, const RunContext& ctx) {
  if (x.dtype() == to) return Tensor(x);
  if (to == DType::kString) {
    std::vector<std::string> strs(static_cast<size_t>(x.numel()));
    if (x.dtype() == DType::kBool) {
      for (int64_t i = 0; i < x.numel(); ++i) strs[i] = x.data<bool>()[i] ? "True" : "False";
    } else if (isFloatingPoint(x.dtype())) {
      if (x.dtype() == DType::kFloat64) {
        for (int64_t i = 0; i < x.numel(); ++i) {
          char buf[64];
          auto res = std::to_chars(buf, buf + sizeof(buf), x.data<double>()[i]);
          strs[i] = std::string(buf, res.ptr);
        }
      } else {
        for (int64_t i = 0; i < x.numel(); ++i)
          strs[i] = floatToString(static_cast<float>(x.elementAsDouble(i)));
      }
    } else {
      const auto v = x.toInt64Vector();
      for (size_t i = 0; i < v.size(); ++i) strs[i] = std::to_string(v[i]);
    }
    return Tensor::fromStrings(x.shape(), std::move(strs));
  }
  if (x.dtype() == DType::kString) {
    // Parse as double, then cast like any double.
    Tensor d(DType::kFloat64, x.shape());
    auto dd = d.mutableData<double>();
    for (size_t i = 0; i < dd.size(); ++i) dd[i] = std::strtod(x.strings()[i].c_str(), nullptr);
    return castTensor(d, to, ctx);
  }
  Tensor y;
  NNC_RETURN_IF_ERROR(visitCastType(x.dtype(), [&](auto stag) -> Status {
    using S = decltype(stag);
    return visitCastType(to, [&](auto dtag) -> Status {
      using D = decltype(dtag);
      using SC = typename CastTraits<S>::Compute;
      using DC = typename CastTraits<D>::Compute;
      y = Tensor(to, x.shape());
      const S* src = reinterpret_cast<const S*>(x.bytes().data());
      D* dst = reinterpret_cast<D*>(y.mutableBytes().data());
      unaryMap(src, dst, x.numel(), ctx, [](S v) {
        return CastTraits<D>::store(convertValue<SC, DC>(CastTraits<S>::load(v)));
      });
      return Status::ok();
    });
  }));
  return y;
}

StatusOr<KernelFn> makeCast(const KernelBuildContext& b) {
  const auto to = dtypeFromOnnx(static_cast<int32_t>(b.node.intAttr("to", 0)));
  if (!to) return invalidModel("Cast: bad or missing 'to' attribute");
  const DType target = *to;
  return KernelFn([target](In in, Out out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
    NNC_ASSIGN_OR_RETURN(out[0], castTensor(*in[0], target, ctx));
    return Status::ok();
  });
}

Status castLike(In in, Out out, const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "target_type"));
  NNC_ASSIGN_OR_RETURN(out[0], castTensor(*in[0], in[1]->dtype(), ctx));
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Pow: the output has the base's type; the exponent may be of another numeric type.

int64_t intPow(int64_t base, int64_t exp) {
  if (exp < 0) {
    if (base == 1) return 1;
    if (base == -1) return (exp & 1) ? -1 : 1;
    return 0;
  }
  uint64_t result = 1, b = static_cast<uint64_t>(base);
  auto e = static_cast<uint64_t>(exp);
  while (e) {
    if (e & 1) result *= b;
    b *= b;
    e >>= 1;
  }
  return static_cast<int64_t>(result);
}

Status powKernel(In in, Out out, const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "Y"));
  const Tensor& a = *in[0];
  const Tensor& b = *in[1];
  if (a.dtype() == DType::kFloat32 && b.dtype() == DType::kFloat32) {
    if (b.numel() == 1 && b.rank() <= a.rank()) {
      // Scalar exponent: common constants get exact, vectorisable forms.
      const float e = b.data<float>()[0];
      NNC_ASSIGN_OR_RETURN(BroadcastPlan plan, makeBroadcastPlan({&a.shape(), &b.shape()}));
      Tensor y(DType::kFloat32, plan.out_shape);
      const float* x = a.data<float>().data();
      float* yd = y.mutableData<float>().data();
      const int64_t n = a.numel();
      if (e == 2.f)
        unaryMap(x, yd, n, ctx, [](float v) { return v * v; });
      else if (e == 3.f)
        unaryMap(x, yd, n, ctx, [](float v) { return v * v * v; });
      else if (e == 1.f)
        unaryMap(x, yd, n, ctx, [](float v) { return v; });
      else if (e == 0.5f)
        unaryMap(x, yd, n, ctx, [](float v) { return std::sqrt(v); });
      else if (e == -1.f)
        unaryMap(x, yd, n, ctx, [](float v) { return 1.f / v; });
      else
        unaryMap(
            x, yd, n, ctx, [e](float v) { return std::pow(v, e); }, 8);
      out[0] = std::move(y);
      return Status::ok();
    }
    NNC_ASSIGN_OR_RETURN(BroadcastPlan plan, makeBroadcastPlan({&a.shape(), &b.shape()}));
    Tensor y(DType::kFloat32, plan.out_shape);
    broadcastBinary(
        plan, a.data<float>().data(), b.data<float>().data(), y.mutableData<float>().data(), ctx,
        [](float u, float v) { return std::pow(u, v); }, 8);
    out[0] = std::move(y);
    return Status::ok();
  }
  if (!isFloatingPoint(a.dtype()) && !isInteger(a.dtype()))
    return unsupported(std::string("Pow: base dtype ") + dtypeName(a.dtype()));
  if (!isFloatingPoint(b.dtype()) && !isInteger(b.dtype()))
    return unsupported(std::string("Pow: exponent dtype ") + dtypeName(b.dtype()));
  NNC_ASSIGN_OR_RETURN(BroadcastPlan plan, makeBroadcastPlan({&a.shape(), &b.shape()}));
  Tensor result;
  if (isInteger(a.dtype()) && isInteger(b.dtype())) {
    NNC_ASSIGN_OR_RETURN(Tensor ai, castTensor(a, DType::kInt64, ctx));
    NNC_ASSIGN_OR_RETURN(Tensor bi, castTensor(b, DType::kInt64, ctx));
    result = Tensor(DType::kInt64, plan.out_shape);
    broadcastBinary(plan, ai.data<int64_t>().data(), bi.data<int64_t>().data(),
                    result.mutableData<int64_t>().data(), ctx, intPow, 8);
  } else {
    NNC_ASSIGN_OR_RETURN(Tensor ad, castTensor(a, DType::kFloat64, ctx));
    NNC_ASSIGN_OR_RETURN(Tensor bd, castTensor(b, DType::kFloat64, ctx));
    result = Tensor(DType::kFloat64, plan.out_shape);
    broadcastBinary(
        plan, ad.data<double>().data(), bd.data<double>().data(),
        result.mutableData<double>().data(), ctx, [](double u, double v) { return std::pow(u, v); },
        8);
  }
  NNC_ASSIGN_OR_RETURN(out[0], castTensor(result, a.dtype(), ctx));
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Unary ops

template <typename Op, typename T>
concept HasEigen = requires(const Op& op,
                            const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>& a) {
  op.eigen(a);
};

template <typename Op>
StatusOr<Tensor> applyUnary(const Tensor& x, const RunContext& ctx, const char* name,
                            const Op& op) {
  Tensor y;
  NNC_RETURN_IF_ERROR(visitNumericOrBool(x.dtype(), name, [&](auto tag) -> Status {
    using T = decltype(tag);
    if constexpr (Op::template ok<T>) {
      using R = decltype(op(T{}));
      y = ctx.newTensor(DTypeOf<R>::value, x.shape());  // every element is written
      const T* xd = x.data<T>().data();
      R* yd = y.mutableData<R>().data();
      if constexpr (HasEigen<Op, T> && std::is_same_v<R, T>) {
        // Vectorised transcendental functions from Eigen.
        constexpr int64_t kBlock = 16384;
        const int64_t n = x.numel(), blocks = (n + kBlock - 1) / kBlock;
        parallelFor(blocks, ctx, kBlock * Op::kCost, [&](int64_t bi) {
          const int64_t s = bi * kBlock, len = std::min(kBlock, n - s);
          using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
          Eigen::Map<Arr>(yd + s, len) = op.eigen(Eigen::Map<const Arr>(xd + s, len));
        });
      } else {
        unaryMap(xd, yd, x.numel(), ctx, op, Op::kCost);
      }
      return Status::ok();
    } else {
      return unsupported(std::string(name) + ": dtype " + dtypeName(x.dtype()) +
                         " is not supported");
    }
  }));
  return y;
}

// A unary op on floating-point data from a generic lambda.
template <typename F, int Cost = 4>
struct FloatUnary {
  F f;
  static constexpr int64_t kCost = Cost;
  template <typename T>
  static constexpr bool ok = kIsFloat<T>;
  template <typename T>
  auto operator()(T x) const {
    return f(x);
  }
};
template <int Cost = 4, typename F>
FloatUnary<F, Cost> floatOp(F f) {
  return {f};
}

// A unary op on any number (signed or not).
template <typename F>
struct NumberUnary {
  F f;
  static constexpr int64_t kCost = 1;
  template <typename T>
  static constexpr bool ok = kIsNumber<T>;
  template <typename T>
  T operator()(T x) const {
    return f(x);
  }
};
template <typename F>
NumberUnary<F> numberOp(F f) {
  return {f};
}

#define NNC_EIGEN_UNARY(Name, scalar_expr, array_expr) \
  struct Name {                                        \
    static constexpr int64_t kCost = 8;                \
    template <typename T>                              \
    static constexpr bool ok = kIsFloat<T>;            \
    template <typename T>                              \
    T operator()(T x) const {                          \
      return scalar_expr;                              \
    }                                                  \
    template <typename A>                              \
    auto eigen(const A& x) const {                     \
      return array_expr;                               \
    }                                                  \
  };
NNC_EIGEN_UNARY(ExpOp, std::exp(x), x.exp())
NNC_EIGEN_UNARY(LogOp, std::log(x), x.log())
NNC_EIGEN_UNARY(SqrtOp, std::sqrt(x), x.sqrt())
NNC_EIGEN_UNARY(TanhOp, std::tanh(x), x.tanh())
NNC_EIGEN_UNARY(SigmoidOp,
                x >= 0 ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x)),
                x.logistic())
#undef NNC_EIGEN_UNARY

struct NotOp {
  static constexpr int64_t kCost = 1;
  template <typename T>
  static constexpr bool ok = std::is_same_v<T, bool>;
  template <typename T>
  bool operator()(T x) const {
    return !x;
  }
};

// Registers a unary op whose functor is made from the node by `make`.
template <typename Make>
void addUnary(KernelRegistry& r, const char* name, Make make) {
  r.addFunction(name, [name, make](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    auto op = make(b);
    return withHalfAsFloat([name, op](In in, Out out, const RunContext& ctx) -> Status {
      NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
      NNC_ASSIGN_OR_RETURN(out[0], applyUnary(*in[0], ctx, name, op));
      return Status::ok();
    });
  });
}

template <typename Op>
void addUnaryOp(KernelRegistry& r, const char* name) {
  addUnary(r, name, [](const KernelBuildContext&) { return Op{}; });
}

// ---------------------------------------------------------------------------------------------
// Clip: bounds are attributes before opset 11, optional scalar inputs from 11.

StatusOr<KernelFn> makeClip(const KernelBuildContext& b) {
  const bool attr_form = b.opset < 11;
  const float amin = b.node.floatAttr("min", -std::numeric_limits<float>::infinity());
  const float amax = b.node.floatAttr("max", std::numeric_limits<float>::infinity());
  return withHalfAsFloat([=](In in, Out out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
    const Tensor& x = *in[0];
    const Tensor* tmin = !attr_form && in.size() > 1 ? in[1] : nullptr;
    const Tensor* tmax = !attr_form && in.size() > 2 ? in[2] : nullptr;
    for (const Tensor* t : {tmin, tmax}) {
      if (!t) continue;
      if (t->dtype() != x.dtype()) return invalidModel("Clip: bound dtype differs from input");
      if (t->numel() != 1) return invalidModel("Clip: bounds must be scalars");
    }
    return visitNumeric(x.dtype(), "Clip", [&](auto tag) -> Status {
      using T = decltype(tag);
      T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
      if (attr_form) {
        if constexpr (kIsFloat<T>) {
          lo = static_cast<T>(amin);
          hi = static_cast<T>(amax);
        }
      }
      if (tmin) lo = tmin->data<T>()[0];
      if (tmax) hi = tmax->data<T>()[0];
      Tensor y = ctx.newTensor(x.dtype(), x.shape());  // every element is written
      unaryMap(x.data<T>().data(), y.mutableData<T>().data(), x.numel(), ctx, [lo, hi](T v) {
        const T t = v < lo ? lo : v;
        return t > hi ? hi : t;
      });
      out[0] = std::move(y);
      return Status::ok();
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Where(condition, X, Y): broadcast over all three; any element type (copied as raw bits).

template <size_t N>
struct Bits;
template <>
struct Bits<1> {
  using type = uint8_t;
};
template <>
struct Bits<2> {
  using type = uint16_t;
};
template <>
struct Bits<4> {
  using type = uint32_t;
};
template <>
struct Bits<8> {
  using type = uint64_t;
};

template <size_t N>
void whereTyped(const BroadcastPlan& plan, const Tensor& c, const Tensor& x, const Tensor& y,
                Tensor& out, const RunContext& ctx) {
  using U = typename Bits<N>::type;
  broadcastTernary(plan, c.data<bool>().data(), reinterpret_cast<const U*>(x.bytes().data()),
                   reinterpret_cast<const U*>(y.bytes().data()),
                   reinterpret_cast<U*>(out.mutableBytes().data()), ctx,
                   [](bool cond, U a, U b) { return cond ? a : b; });
}

Status whereKernel(In in, Out out, const RunContext& ctx) {
  for (size_t i = 0; i < 3; ++i) NNC_RETURN_IF_ERROR(requireInput(in, i, "Where operand"));
  const Tensor &c = *in[0], &x = *in[1], &y = *in[2];
  NNC_RETURN_IF_ERROR(requireDType(c, DType::kBool, "Where condition"));
  if (x.dtype() != y.dtype()) return invalidModel("Where: X and Y dtypes differ");
  NNC_ASSIGN_OR_RETURN(BroadcastPlan plan, makeBroadcastPlan({&c.shape(), &x.shape(), &y.shape()}));
  if (x.dtype() == DType::kString) {
    std::vector<std::string> strs(static_cast<size_t>(plan.numel));
    // Index tensors broadcast like the data, then gather the strings.
    std::vector<int64_t> xi(x.numel()), yi(y.numel());
    for (int64_t i = 0; i < x.numel(); ++i) xi[i] = i;
    for (int64_t i = 0; i < y.numel(); ++i) yi[i] = -1 - i;
    std::vector<int64_t> pick(plan.numel);
    broadcastTernary(plan, c.data<bool>().data(), xi.data(), yi.data(), pick.data(), RunContext{},
                     [](bool cond, int64_t a, int64_t b) { return cond ? a : b; });
    for (int64_t i = 0; i < plan.numel; ++i)
      strs[i] = pick[i] >= 0 ? x.strings()[pick[i]] : y.strings()[-1 - pick[i]];
    out[0] = Tensor::fromStrings(plan.out_shape, std::move(strs));
    return Status::ok();
  }
  Tensor result(x.dtype(), plan.out_shape);
  const int bits = dtypeBits(x.dtype());
  switch (bits) {
    case 8:
      whereTyped<1>(plan, c, x, y, result, ctx);
      break;
    case 16:
      whereTyped<2>(plan, c, x, y, result, ctx);
      break;
    case 32:
      whereTyped<4>(plan, c, x, y, result, ctx);
      break;
    case 64:
      whereTyped<8>(plan, c, x, y, result, ctx);
      break;
    default:
      return unsupported(std::string("Where: dtype ") + dtypeName(x.dtype()));
  }
  out[0] = std::move(result);
  return Status::ok();
}

// IsInf / IsNaN (float inputs, bool output).
StatusOr<KernelFn> makeIsInf(const KernelBuildContext& b) {
  const bool neg = b.node.intAttr("detect_negative", 1) != 0;
  const bool pos = b.node.intAttr("detect_positive", 1) != 0;
  return withHalfAsFloat([=](In in, Out out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
    NNC_ASSIGN_OR_RETURN(out[0], applyUnary(*in[0], ctx, "IsInf", floatOp<1>([=](auto x) -> bool {
                           return std::isinf(x) && ((x > 0 && pos) || (x < 0 && neg));
                         })));
    return Status::ok();
  });
}

using K = const KernelBuildContext&;

// Binary arithmetic, comparisons, logic and the variadic reductions.
void registerBinaryKernels(KernelRegistry& r) {
  addBinary<AddOp>(r, "Add");
  addBinary<SubOp>(r, "Sub");
  addBinary<MulOp>(r, "Mul");
  addBinary<DivOp>(r, "Div");
  addBinary<PReluOp>(r, "PRelu");
  addBinary<EqualOp>(r, "Equal");
  addBinary<LessOp>(r, "Less");
  addBinary<GreaterOp>(r, "Greater");
  addBinary<LessOrEqualOp>(r, "LessOrEqual");
  addBinary<GreaterOrEqualOp>(r, "GreaterOrEqual");
  addBinary<AndOp>(r, "And", false);
  addBinary<OrOp>(r, "Or", false);
  addBinary<XorOp>(r, "Xor", false);
  r.addFunction("Mod", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    const bool fmod = b.node.intAttr("fmod", 0) != 0;
    return withHalfAsFloat([fmod](In in, Out out, const RunContext& ctx) -> Status {
      NNC_RETURN_IF_ERROR(requireInput(in, 0, "A"));
      NNC_RETURN_IF_ERROR(requireInput(in, 1, "B"));
      if (fmod) {
        NNC_ASSIGN_OR_RETURN(out[0], applyBinary(*in[0], *in[1], ctx, "Mod", FModOp{}));
      } else {
        NNC_ASSIGN_OR_RETURN(out[0], applyBinary(*in[0], *in[1], ctx, "Mod", ModOp{}));
      }
      return Status::ok();
    });
  });
  r.addFunction("BitShift", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    const std::string dir = b.node.stringAttr("direction", "");
    if (dir != "LEFT" && dir != "RIGHT")
      return invalidModel("BitShift: bad direction '" + dir + "'");
    const BitShiftOp op{dir == "LEFT"};
    return KernelFn([op](In in, Out out, const RunContext& ctx) -> Status {
      NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
      NNC_RETURN_IF_ERROR(requireInput(in, 1, "Y"));
      NNC_ASSIGN_OR_RETURN(out[0], applyBinary(*in[0], *in[1], ctx, "BitShift", op));
      return Status::ok();
    });
  });
  r.addFunction("Pow", [](const KernelBuildContext&) -> StatusOr<KernelFn> {
    return withHalfAsFloat(powKernel);
  });
  addVariadic<AddOp>(r, "Sum");
  addVariadic<MaxOp>(r, "Max");
  addVariadic<MinOp>(r, "Min");
  r.addFunction("Mean", [](const KernelBuildContext&) -> StatusOr<KernelFn> {
    return withHalfAsFloat(meanKernel);
  });
}

// Activations (with their attributes) and sign/abs/neg.
void registerActivationKernels(KernelRegistry& r) {
  addUnaryOp<TanhOp>(r, "Tanh");
  addUnaryOp<SigmoidOp>(r, "Sigmoid");
  addUnary(r, "Relu",
           [](K) { return numberOp([](auto x) { return x > 0 ? x : decltype(x)(0); }); });
  addUnary(r, "Abs", [](K) {
    return numberOp([](auto x) {
      using T = decltype(x);
      if constexpr (kIsFloat<T>)
        return std::fabs(x);
      else if constexpr (kIsSigned<T>)
        return x < 0 ? wrapSub(T(0), x) : x;
      else
        return x;
    });
  });
  addUnary(r, "Neg", [](K) {
    return numberOp([](auto x) {
      using T = decltype(x);
      if constexpr (kIsInt<T>)
        return wrapSub(T(0), x);
      else
        return -x;
    });
  });
  addUnary(r, "Sign", [](K) {
    return numberOp([](auto x) {
      using T = decltype(x);
      return static_cast<T>(x > T(0) ? 1 : (x < T(0) ? -1 : 0));
    });
  });
  addUnary(r, "LeakyRelu", [](K b) {
    const float alpha = b.node.floatAttr("alpha", 0.01f);
    return floatOp<1>([alpha](auto x) { return x < 0 ? static_cast<decltype(x)>(alpha) * x : x; });
  });
  addUnary(r, "ThresholdedRelu", [](K b) {
    const float alpha = b.node.floatAttr("alpha", 1.f);
    return floatOp<1>(
        [alpha](auto x) { return x > static_cast<decltype(x)>(alpha) ? x : decltype(x)(0); });
  });
  addUnary(r, "HardSigmoid", [](K b) {
    const float alpha = b.node.floatAttr("alpha", 0.2f), beta = b.node.floatAttr("beta", 0.5f);
    return floatOp<1>([alpha, beta](auto x) {
      using T = decltype(x);
      const T v = static_cast<T>(alpha) * x + static_cast<T>(beta);
      return v < 0 ? T(0) : (v > 1 ? T(1) : v);
    });
  });
  addUnary(r, "HardSwish", [](K) {
    return floatOp<1>([](auto x) {
      using T = decltype(x);
      const T v = x / T(6) + T(0.5);
      return x * (v < 0 ? T(0) : (v > 1 ? T(1) : v));
    });
  });
  addUnary(r, "Shrink", [](K b) {
    const float bias = b.node.floatAttr("bias", 0.f), lambd = b.node.floatAttr("lambd", 0.5f);
    return floatOp<1>([bias, lambd](auto x) {
      using T = decltype(x);
      return x < -static_cast<T>(lambd)  ? x + static_cast<T>(bias)
             : x > static_cast<T>(lambd) ? x - static_cast<T>(bias)
                                         : T(0);
    });
  });
}

// The exponential family: Elu, Celu, Selu, Softplus, Softsign.
void registerExponentialActivations(KernelRegistry& r) {
  addUnary(r, "Elu", [](K b) {
    const float alpha = b.node.floatAttr("alpha", 1.f);
    return floatOp([alpha](auto x) {
      using T = decltype(x);
      return x < 0 ? static_cast<T>(alpha) * std::expm1(x) : x;
    });
  });
  addUnary(r, "Celu", [](K b) {
    const float alpha = b.node.floatAttr("alpha", 1.f);
    return floatOp([alpha](auto x) {
      using T = decltype(x);
      const T a = static_cast<T>(alpha);
      return x > 0 ? x : a * std::expm1(x / a);
    });
  });
  addUnary(r, "Selu", [](K b) {
    const float alpha = b.node.floatAttr("alpha", 1.67326319217681884765625f);
    const float gamma = b.node.floatAttr("gamma", 1.05070102214813232421875f);
    return floatOp([alpha, gamma](auto x) {
      using T = decltype(x);
      return static_cast<T>(gamma) * (x > 0 ? x : static_cast<T>(alpha) * std::expm1(x));
    });
  });
  addUnary(r, "Softplus", [](K) {
    return floatOp(
        [](auto x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); });
  });
  addUnary(r, "Softsign", [](K) {
    return floatOp<1>([](auto x) { return x / (decltype(x)(1) + std::fabs(x)); });
  });
}

// Unary math, predicates, Clip, Where and casts.
void registerMathKernels(KernelRegistry& r) {
  addUnaryOp<ExpOp>(r, "Exp");
  addUnaryOp<LogOp>(r, "Log");
  addUnaryOp<SqrtOp>(r, "Sqrt");
  addUnaryOp<NotOp>(r, "Not");
  addUnary(r, "Reciprocal",
           [](K) { return floatOp<1>([](auto x) { return decltype(x)(1) / x; }); });
  addUnary(r, "Floor", [](K) { return floatOp<1>([](auto x) { return std::floor(x); }); });
  addUnary(r, "Ceil", [](K) { return floatOp<1>([](auto x) { return std::ceil(x); }); });
  addUnary(r, "Round", [](K) { return floatOp<1>([](auto x) { return std::nearbyint(x); }); });
  addUnary(r, "Erf", [](K) { return floatOp([](auto x) { return std::erf(x); }); });
  addUnary(r, "Sin", [](K) { return floatOp([](auto x) { return std::sin(x); }); });
  addUnary(r, "Cos", [](K) { return floatOp([](auto x) { return std::cos(x); }); });
  addUnary(r, "Tan", [](K) { return floatOp([](auto x) { return std::tan(x); }); });
  addUnary(r, "Asin", [](K) { return floatOp([](auto x) { return std::asin(x); }); });
  addUnary(r, "Acos", [](K) { return floatOp([](auto x) { return std::acos(x); }); });
  addUnary(r, "Atan", [](K) { return floatOp([](auto x) { return std::atan(x); }); });
  addUnary(r, "Sinh", [](K) { return floatOp([](auto x) { return std::sinh(x); }); });
  addUnary(r, "Cosh", [](K) { return floatOp([](auto x) { return std::cosh(x); }); });
  addUnary(r, "Asinh", [](K) { return floatOp([](auto x) { return std::asinh(x); }); });
  addUnary(r, "Acosh", [](K) { return floatOp([](auto x) { return std::acosh(x); }); });
  addUnary(r, "Atanh", [](K) { return floatOp([](auto x) { return std::atanh(x); }); });
  addUnary(r, "IsNaN", [](K) { return floatOp<1>([](auto x) -> bool { return std::isnan(x); }); });
  r.addFunction("IsInf", makeIsInf);

  r.addFunction("Clip", makeClip);
  r.addFunction("Where", [](K) -> StatusOr<KernelFn> { return KernelFn(whereKernel); });
  r.addFunction("Cast", makeCast);
  r.addFunction("CastLike", [](K) -> StatusOr<KernelFn> { return KernelFn(castLike); });
}

}  // namespace

void registerElementwiseKernels(KernelRegistry& r) {
  registerBinaryKernels(r);
  registerActivationKernels(r);
  registerExponentialActivations(r);
  registerMathKernels(r);
}

}  // namespace nnc::exec
