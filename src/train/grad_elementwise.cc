// Backward of element-wise ops: activations (dX = dY * f'(x or y)), binary arithmetic with
// numpy broadcasting (gradients summed over broadcast axes), PRelu (slope trainable) and
// BatchNormalization with frozen statistics:
//   y = gamma * xhat + beta, xhat = (x - mean) / sqrt(var + eps)
//   dX = dY * gamma / sqrt(var + eps), dgamma[c] = sum dY * xhat, dbeta[c] = sum dY

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backward.h"
#include "kernel_util.h"

namespace nnc::train {
namespace {

// out[i] = f(i) over n elements, in parallel chunks.
template <typename F>
void forEach(int64_t n, const exec::RunContext& ctx, F&& f) {
  const int64_t chunk = 1 << 14;
  exec::parallelFor((n + chunk - 1) / chunk, ctx, chunk, [&](int64_t c) {
    const int64_t end = std::min(n, (c + 1) * chunk);
    for (int64_t i = c * chunk; i < end; ++i) f(i);
  });
}

// A unary op whose derivative is read from the kept input (kX) or output (kY).
enum class From { kX, kY };

template <From kFrom, typename Deriv>
Status unary(const BackwardContext& c, std::span<Tensor> grads, Deriv deriv) {
  const Tensor* src = kFrom == From::kX ? c.inputs[0] : c.outputs[0];
  if (!src) return internalError("kept tensor missing");
  Tensor dx = takeOutputGrad(c, 0);  // dX = dY * f', in place
  const float* v = fdata(*src);
  float* d = fdata(dx);
  forEach(dx.numel(), c.ctx, [&](int64_t i) { d[i] *= deriv(v[i]); });
  grads[0] = std::move(dx);
  return Status::ok();
}

Status reluBackward(const BackwardContext& c, std::span<Tensor> g) {
  return unary<From::kY>(c, g, [](float y) { return y > 0.f ? 1.f : 0.f; });
}
Status leakyReluBackward(const BackwardContext& c, std::span<Tensor> g) {
  const float alpha = c.node.floatAttr("alpha", 0.01f);
  return unary<From::kX>(c, g, [alpha](float x) { return x > 0.f ? 1.f : alpha; });
}
Status sigmoidBackward(const BackwardContext& c, std::span<Tensor> g) {
  return unary<From::kY>(c, g, [](float y) { return y * (1.f - y); });
}
Status tanhBackward(const BackwardContext& c, std::span<Tensor> g) {
  return unary<From::kY>(c, g, [](float y) { return 1.f - y * y; });
}
Status hardSigmoidBackward(const BackwardContext& c, std::span<Tensor> g) {
  const float alpha = c.node.floatAttr("alpha", 0.2f), beta = c.node.floatAttr("beta", 0.5f);
  return unary<From::kX>(c, g, [=](float x) {
    const float t = alpha * x + beta;
    return t > 0.f && t < 1.f ? alpha : 0.f;
  });
}
Status hardSwishBackward(const BackwardContext& c, std::span<Tensor> g) {
  // y = x * clamp(x / 6 + 1/2, 0, 1)
  return unary<From::kX>(c, g, [](float x) {
    return x <= -3.f ? 0.f : x >= 3.f ? 1.f : x / 3.f + 0.5f;
  });
}
// Clip bounds: attributes before opset 11, optional inputs 1 and 2 after.
Status clipBackward(const BackwardContext& c, std::span<Tensor> g) {
  float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
  if (c.opset < 11) {
    lo = c.node.floatAttr("min", lo), hi = c.node.floatAttr("max", hi);
  } else {
    for (size_t i = 1; i < 3 && i < c.inputs.size(); ++i)
      if (c.inputs[i] && c.inputs[i]->numel() > 0) (i == 1 ? lo : hi) = fdata(*c.inputs[i])[0];
  }
  return unary<From::kX>(c, g, [=](float x) { return x >= lo && x <= hi ? 1.f : 0.f; });
}

// Broadcast binary op: walks the output once with A's and B's broadcast offsets.
template <typename DA, typename DB>
Status binary(const BackwardContext& c, std::span<Tensor> grads, DA da_of, DB db_of) {
  const Tensor& dy = *c.output_grads[0];
  const Shape &as = c.input_shapes[0], &bs = c.input_shapes[1], &os = dy.shape();
  const bool want_a = c.needs_grad[0], want_b = c.needs_grad[1];
  const float* av = c.inputs[0] ? fdata(*c.inputs[0]) : nullptr;
  const float* bv = c.inputs[1] ? fdata(*c.inputs[1]) : nullptr;
  const float* g = fdata(dy);
  const int64_t n = dy.numel();
  if (as == os && bs == os) {  // the common case: no broadcasting, parallel
    Tensor da, db;
    if (want_b) db = c.ctx.newTensor(DType::kFloat32, bs);
    if (want_a) da = takeOutputGrad(c, 0);  // dA in place of dY (dB is read first)
    float* pa = want_a ? fdata(da) : nullptr;
    float* pb = want_b ? fdata(db) : nullptr;
    if (pa) g = pa;
    const float* mask = c.relu_mask ? fdata(*c.relu_mask) : nullptr;  // a fused Relu after Add
    forEach(n, c.ctx, [&](int64_t i) {
      const float a = av ? av[i] : 0.f, b = bv ? bv[i] : 0.f;
      float gi = g[i];
      if (mask) gi = mask[i] > 0.f ? gi : 0.f;  // a select (the load is unconditional)
      if (pb) pb[i] = gi * db_of(a, b);
      if (pa) pa[i] = gi * da_of(a, b);
    });
    if (want_a) grads[0] = std::move(da);
    if (want_b) grads[1] = std::move(db);
    return Status::ok();
  }
  if (c.relu_mask) return internalError("a fused Relu after a broadcasting op");
  const auto sa = exec::broadcastStrides(as, os), sb = exec::broadcastStrides(bs, os);
  Tensor da, db;
  if (want_a) da = zeros(as, &c.ctx);
  if (want_b) db = zeros(bs, &c.ctx);
  float* pa = want_a ? fdata(da) : nullptr;
  float* pb = want_b ? fdata(db) : nullptr;
  std::vector<int64_t> idx(os.size(), 0);
  int64_t oa = 0, ob = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float a = av ? av[oa] : 0.f, b = bv ? bv[ob] : 0.f;
    if (pa) pa[oa] += g[i] * da_of(a, b);
    if (pb) pb[ob] += g[i] * db_of(a, b);
    for (size_t d = os.size(); d-- > 0;) {  // odometer step
      oa += sa[d], ob += sb[d];
      if (++idx[d] < os[d]) break;
      oa -= sa[d] * os[d], ob -= sb[d] * os[d];
      idx[d] = 0;
    }
  }
  if (want_a) grads[0] = std::move(da);
  if (want_b) grads[1] = std::move(db);
  return Status::ok();
}

Status addBackward(const BackwardContext& c, std::span<Tensor> g) {
  return binary(
      c, g, [](float, float) { return 1.f; }, [](float, float) { return 1.f; });
}
Status subBackward(const BackwardContext& c, std::span<Tensor> g) {
  return binary(
      c, g, [](float, float) { return 1.f; }, [](float, float) { return -1.f; });
}
Status mulBackward(const BackwardContext& c, std::span<Tensor> g) {
  return binary(
      c, g, [](float, float b) { return b; }, [](float a, float) { return a; });
}
Status divBackward(const BackwardContext& c, std::span<Tensor> g) {
  return binary(
      c, g, [](float, float b) { return 1.f / b; }, [](float a, float b) { return -a / (b * b); });
}
// PRelu: y = x > 0 ? x : slope * x (slope broadcast to x).
Status preluBackward(const BackwardContext& c, std::span<Tensor> g) {
  return binary(
      c, g, [](float x, float s) { return x > 0.f ? 1.f : s; },
      [](float x, float) { return x > 0.f ? 0.f : x; });
}

// One pass per (n, c) plane: a fused Relu's mask applied to dY (tape_fusion.cc), the sums for
// dgamma / dbeta read dY, then dX = dY * a overwrites it.
Status batchNormBackward(const BackwardContext& c, std::span<Tensor> grads) {
  const Shape& xs = c.input_shapes[0];
  for (int i = 1; i <= 4; ++i)
    if (!c.inputs[i]) return internalError("BatchNormalization parameter not available");
  const float eps = c.node.floatAttr("epsilon", 1e-5f);
  const int64_t ch = xs[1], planes = xs[0] * ch,
                inner = shapeNumel(xs) / std::max<int64_t>(1, planes);
  const float *gamma = fdata(*c.inputs[1]), *mean = fdata(*c.inputs[3]), *var = fdata(*c.inputs[4]);
  std::vector<float> inv(ch);
  for (int64_t k = 0; k < ch; ++k) inv[k] = 1.f / std::sqrt(var[k] + eps);
  const bool want_x = c.needs_grad[0], want_gamma = c.needs_grad[1], want_beta = c.needs_grad[2];
  if (want_gamma && !c.inputs[0]) return internalError("BatchNormalization input not kept");
  const float* x = want_gamma ? fdata(*c.inputs[0]) : nullptr;
  const float* mask = c.relu_mask ? fdata(*c.relu_mask) : nullptr;
  const bool own = want_x || mask;  // dY is overwritten
  Tensor dx = own ? takeOutputGrad(c, 0) : Tensor();
  float* gw = own ? fdata(dx) : nullptr;
  const float* g = own ? gw : fdata(*c.output_grads[0]);
  float* d = want_x ? gw : nullptr;
  std::vector<double> plane_gx(planes), plane_g(planes);
  exec::parallelFor(planes, c.ctx, inner, [&](int64_t p) {
    const int64_t k = p % ch;
    const float* gp = g + p * inner;
    if (mask) {  // the Relu backward: dY where y > 0, else 0 (a select: a multiply by the
                 // 0/1 mask compiled to a mispredicted branch)
      float* gp_w = gw + p * inner;
      const float* mp = mask + p * inner;
#pragma omp simd
      for (int64_t j = 0; j < inner; ++j) gp_w[j] = mp[j] > 0.f ? gp_w[j] : 0.f;
    }
    float sg = 0, sgx = 0;
    if (want_beta) {
#pragma omp simd reduction(+ : sg)
      for (int64_t j = 0; j < inner; ++j) sg += gp[j];
    }
    if (x) {
      const float* xp = x + p * inner;
      const float mk = mean[k];
#pragma omp simd reduction(+ : sgx)
      for (int64_t j = 0; j < inner; ++j) sgx += gp[j] * (xp[j] - mk);
    }
    plane_g[p] = sg, plane_gx[p] = double(sgx) * inv[k];
    if (d) {
      const float a = gamma[k] * inv[k];
      for (int64_t j = 0; j < inner; ++j) d[p * inner + j] *= a;
    }
  });
  if (want_x) grads[0] = std::move(dx);
  for (int which = 1; which <= 2; ++which) {
    if (!c.needs_grad[which]) continue;
    const std::vector<double>& per_plane = which == 1 ? plane_gx : plane_g;
    std::vector<double> sum(ch, 0.0);
    for (int64_t p = 0; p < planes; ++p) sum[p % ch] += per_plane[p];
    grads[which] = zeros(c.input_shapes[which]);
    for (int64_t k = 0; k < ch; ++k) fdata(grads[which])[k] = static_cast<float>(sum[k]);
  }
  return Status::ok();
}

std::string batchNormCheck(const Node& n, int64_t) {
  if (n.intAttr("training_mode", 0) != 0) return "training_mode=1";
  for (size_t i = 1; i < n.outputs().size(); ++i)
    if (n.output(i) && n.output(i)->hasUses()) return "running statistics outputs read";
  return "";
}

}  // namespace

void registerElementwiseBackward(BackwardRegistry& r) {
  constexpr uint32_t kIn0 = 1, kOut0 = 1, kBoth = 0b11;
  r.add("Relu", {reluBackward, 0, kOut0});
  r.add("LeakyRelu", {leakyReluBackward, kIn0, 0});
  r.add("Sigmoid", {sigmoidBackward, 0, kOut0});
  r.add("Tanh", {tanhBackward, 0, kOut0});
  r.add("HardSigmoid", {hardSigmoidBackward, kIn0, 0});
  r.add("HardSwish", {hardSwishBackward, kIn0, 0});
  r.add("Clip", {clipBackward, kIn0, 0});
  r.add("Add", {addBackward, 0, 0});
  r.add("Sub", {subBackward, 0, 0});
  r.add("Mul", {mulBackward, kBoth, 0});
  r.add("Div", {divBackward, kBoth, 0});
  r.add("PRelu", {preluBackward, kBoth, 0});
  r.add("BatchNormalization", {batchNormBackward, 0b11111, 0, batchNormCheck});
}

}  // namespace nnc::train
