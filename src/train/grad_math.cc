// Backward of math ops that normalisation layers and GELU decompose into (LayerNorm as ReduceMean,
// Sub, Pow, Sqrt, Div; GELU as Erf), and of ReduceMean / ReduceSum:
//   Erf: 2/sqrt(pi) exp(-x^2)   Sqrt: 1 / (2y)   Exp: y   Log: 1/x   Neg: -1
//   Pow (exponent p): dX = p x^(p-1) dY, dP = y ln(x) dY (x > 0)
//   ReduceMean/ReduceSum: dX = dY broadcast over the reduced axes (/ count for the mean)

#include <cmath>
#include <numbers>
#include <vector>

#include "backward.h"
#include "kernel_util.h"

namespace nnc::train {
namespace {

template <typename Deriv>
Status pointwise(const BackwardContext& c, std::span<Tensor> grads, Deriv deriv) {
  const float* x = c.inputs[0] ? fdata(*c.inputs[0]) : nullptr;
  const float* y = c.outputs[0] ? fdata(*c.outputs[0]) : nullptr;
  Tensor dx = takeOutputGrad(c, 0);
  float* d = fdata(dx);
  for (int64_t i = 0; i < dx.numel(); ++i) d[i] *= deriv(x ? x[i] : 0.f, y ? y[i] : 0.f);
  grads[0] = std::move(dx);
  return Status::ok();
}

Status erfBackward(const BackwardContext& c, std::span<Tensor> g) {
  const float k = 2.f / std::sqrt(std::numbers::pi_v<float>);
  return pointwise(c, g, [k](float x, float) { return k * std::exp(-x * x); });
}
Status sqrtBackward(const BackwardContext& c, std::span<Tensor> g) {
  return pointwise(c, g, [](float, float y) { return 0.5f / y; });
}
Status expBackward(const BackwardContext& c, std::span<Tensor> g) {
  return pointwise(c, g, [](float, float y) { return y; });
}
Status logBackward(const BackwardContext& c, std::span<Tensor> g) {
  return pointwise(c, g, [](float x, float) { return 1.f / x; });
}
Status negBackward(const BackwardContext& c, std::span<Tensor> g) {
  return pointwise(c, g, [](float, float) { return -1.f; });
}

// Pow with broadcasting between base and exponent (sums over broadcast axes like Mul).
Status powBackward(const BackwardContext& c, std::span<Tensor> grads) {
  const Tensor& dy = *c.output_grads[0];
  const Shape &as = c.input_shapes[0], &bs = c.input_shapes[1], &os = dy.shape();
  const auto sa = exec::broadcastStrides(as, os), sb = exec::broadcastStrides(bs, os);
  const float *a = fdata(*c.inputs[0]), *b = fdata(*c.inputs[1]), *g = fdata(dy);
  Tensor da, db;
  if (c.needs_grad[0]) da = zeros(as, &c.ctx);
  if (c.needs_grad[1]) db = zeros(bs, &c.ctx);
  std::vector<int64_t> idx(os.size(), 0);
  int64_t oa = 0, ob = 0;
  for (int64_t i = 0; i < dy.numel(); ++i) {
    const float x = a[oa], p = b[ob];
    if (c.needs_grad[0]) fdata(da)[oa] += g[i] * p * std::pow(x, p - 1.f);
    if (c.needs_grad[1] && x > 0.f) fdata(db)[ob] += g[i] * std::pow(x, p) * std::log(x);
    for (size_t d = os.size(); d-- > 0;) {
      oa += sa[d], ob += sb[d];
      if (++idx[d] < os[d]) break;
      oa -= sa[d] * os[d], ob -= sb[d] * os[d];
      idx[d] = 0;
    }
  }
  if (c.needs_grad[0]) grads[0] = std::move(da);
  if (c.needs_grad[1]) grads[1] = std::move(db);
  return Status::ok();
}

// Reduced axes: the `axes` attribute (before ReduceSum-13 / ReduceMean-18) or input 1; none
// given means every axis unless noop_with_empty_axes.
StatusOr<std::vector<bool>> reducedAxes(const BackwardContext& c, int rank) {
  std::vector<int64_t> axes = c.node.intsAttr("axes");
  if (c.inputs.size() > 1 && c.inputs[1]) axes = c.inputs[1]->toInt64Vector();
  std::vector<bool> reduced(rank, axes.empty() && c.node.intAttr("noop_with_empty_axes", 0) == 0);
  for (int64_t a : axes) {
    NNC_ASSIGN_OR_RETURN(int axis, exec::normaliseAxis(a, rank));
    reduced[axis] = true;
  }
  return reduced;
}

template <bool kMean>
Status reduceBackward(const BackwardContext& c, std::span<Tensor> grads) {
  const Shape& xs = c.input_shapes[0];
  NNC_ASSIGN_OR_RETURN(std::vector<bool> reduced, reducedAxes(c, static_cast<int>(xs.size())));
  Shape kept = xs;  // dY's shape with keepdims=1
  int64_t count = 1;
  for (size_t d = 0; d < xs.size(); ++d)
    if (reduced[d]) count *= xs[d], kept[d] = 1;
  const auto strides = exec::broadcastStrides(kept, xs);
  const float* g = fdata(*c.output_grads[0]);
  const float scale = kMean ? 1.f / static_cast<float>(std::max<int64_t>(1, count)) : 1.f;
  Tensor dx = c.ctx.newTensor(DType::kFloat32, xs);  // every element is written
  float* d = fdata(dx);
  std::vector<int64_t> idx(xs.size(), 0);
  int64_t o = 0;
  for (int64_t i = 0; i < dx.numel(); ++i) {
    d[i] = g[o] * scale;
    for (size_t k = xs.size(); k-- > 0;) {
      o += strides[k];
      if (++idx[k] < xs[k]) break;
      o -= strides[k] * xs[k];
      idx[k] = 0;
    }
  }
  grads[0] = std::move(dx);
  return Status::ok();
}

}  // namespace

void registerMathBackward(BackwardRegistry& r) {
  r.add("Erf", {erfBackward, 1, 0});
  r.add("Sqrt", {sqrtBackward, 0, 1});
  r.add("Exp", {expBackward, 0, 1});
  r.add("Log", {logBackward, 1, 0});
  r.add("Neg", {negBackward, 0, 0});
  r.add("Pow", {powBackward, 0b11, 0});
  r.add("ReduceMean", {reduceBackward<true>, 0b10, 0});
  r.add("ReduceSum", {reduceBackward<false>, 0b10, 0});
}

}  // namespace nnc::train
