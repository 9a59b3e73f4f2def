// BatchNormalization in inference form, folded per channel into one multiply-add:
//   y = x * a[c] + b[c],  a = scale / sqrt(var + eps),  b = bias - mean * a
// InstanceNormalization: the same multiply-add with mean and variance taken per (n, c) over the
// spatial axes (in double: one pass over large planes loses precision in float).
// LayerNormalization and GroupNormalization: the same statistics over the last axes, or over
// each group of channels and space. LRN and MeanVarianceNormalization: see their kernels.

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kernel_util.h"
#include "kernels.h"

namespace nnc::exec {
namespace {

// Checks X (rank >= min_rank, float) and `params` per-channel float inputs after it.
Status checkNormInputs(std::span<const Tensor* const> in, size_t params, int min_rank,
                       const char* op) {
  for (size_t i = 0; i <= params; ++i) NNC_RETURN_IF_ERROR(requireInput(in, i, op));
  const Tensor& x = *in[0];
  NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, op));
  if (x.rank() < min_rank) return shapeMismatch(std::string(op) + " input rank is too low");
  for (size_t i = 1; i <= params; ++i) {
    NNC_RETURN_IF_ERROR(requireDType(*in[i], DType::kFloat32, op));
    if (in[i]->numel() != x.dim(1))
      return shapeMismatch(std::string(op) + " parameter size differs from channels");
  }
  return Status::ok();
}

// y = x * a + b on every (n, c) plane, with (a, b) from `coefficients(plane index, plane)`.
template <typename Coefficients>
Tensor affinePerPlane(const Tensor& x, const RunContext& ctx, Coefficients coefficients) {
  const int64_t planes = x.dim(0) * x.dim(1), inner = x.numel() / std::max<int64_t>(1, planes);
  Tensor y = ctx.newTensor(DType::kFloat32, x.shape());  // every element is written
  const float* xd = x.data<float>().data();
  float* yd = y.mutableData<float>().data();
  parallelFor(planes, ctx, inner, [&](int64_t i) {
    const float* src = xd + i * inner;
    const auto [a, b] = coefficients(i, std::span<const float>(src, inner));
    float* dst = yd + i * inner;
    for (int64_t j = 0; j < inner; ++j) dst[j] = src[j] * a + b;
  });
  return y;
}

StatusOr<KernelFn> makeBatchNorm(const KernelBuildContext& b) {
  const float eps = b.node.floatAttr("epsilon", 1e-5f);
  if (b.node.intAttr("training_mode", 0) != 0)
    return unsupported("BatchNormalization with training_mode=1 (only inference is supported)");
  return KernelFn([eps](std::span<const Tensor* const> in, std::span<Tensor> out,
                        const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(checkNormInputs(in, 4, 2, "BatchNormalization"));
    const int64_t c = in[0]->dim(1);
    const float *scale = in[1]->data<float>().data(), *bias = in[2]->data<float>().data(),
                *mean = in[3]->data<float>().data(), *var = in[4]->data<float>().data();
    std::vector<float> mul(c), add(c);
    for (int64_t i = 0; i < c; ++i) {
      mul[i] = scale[i] / std::sqrt(var[i] + eps);
      add[i] = bias[i] - mean[i] * mul[i];
    }
    out[0] = affinePerPlane(*in[0], ctx, [&](int64_t i, std::span<const float>) {
      return std::pair{mul[i % c], add[i % c]};
    });
    return Status::ok();
  });
}

StatusOr<KernelFn> makeInstanceNorm(const KernelBuildContext& b) {
  const float eps = b.node.floatAttr("epsilon", 1e-5f);
  return KernelFn([eps](std::span<const Tensor* const> in, std::span<Tensor> out,
                        const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(checkNormInputs(in, 2, 3, "InstanceNormalization"));
    const int64_t c = in[0]->dim(1);
    const float *scale = in[1]->data<float>().data(), *bias = in[2]->data<float>().data();
    out[0] = affinePerPlane(*in[0], ctx, [&](int64_t i, std::span<const float> plane) {
      double sum = 0, sum_sq = 0;
      for (float v : plane) sum += v;
      const double mean = plane.empty() ? 0 : sum / plane.size();
      for (float v : plane) sum_sq += (v - mean) * (v - mean);
      const double var = plane.empty() ? 0 : sum_sq / plane.size();
      const float a = static_cast<float>(scale[i % c] / std::sqrt(var + eps));
      return std::pair{a, static_cast<float>(bias[i % c] - mean * a)};
    });
    return Status::ok();
  });
}

// Mean and 1 / sqrt(var + eps) of `n` values, in double.
std::pair<double, double> moments(const float* v, int64_t n, float eps) {
  double sum = 0, sum_sq = 0;
  for (int64_t i = 0; i < n; ++i) sum += v[i];
  const double mean = n ? sum / n : 0;
  for (int64_t i = 0; i < n; ++i) sum_sq += (v[i] - mean) * (v[i] - mean);
  return {mean, 1.0 / std::sqrt((n ? sum_sq / n : 0) + eps)};
}

// LayerNormalization (17): over the axes from `axis` on,
//   y = (x - mean) / sqrt(var + eps) * scale + bias,  scale and bias of the normalised shape.
// The optional Mean and InvStdDev outputs (training graphs) have x's shape with the normalised
// axes kept as 1 (stash_type float).
StatusOr<KernelFn> makeLayerNorm(const KernelBuildContext& b) {
  const float eps = b.node.floatAttr("epsilon", 1e-5f);
  const int64_t axis_attr = b.node.intAttr("axis", -1);
  return KernelFn([eps, axis_attr](std::span<const Tensor* const> in, std::span<Tensor> out,
                                   const RunContext& ctx) -> Status {
    const char* op = "LayerNormalization";
    for (size_t i = 0; i < 2; ++i) NNC_RETURN_IF_ERROR(requireInput(in, i, op));
    const Tensor& x = *in[0];
    NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, op));
    const int64_t axis = axis_attr < 0 ? axis_attr + x.rank() : axis_attr;
    if (axis < 0 || axis >= x.rank()) return shapeMismatch("LayerNormalization axis out of range");
    int64_t inner = 1;
    for (int a = static_cast<int>(axis); a < x.rank(); ++a) inner *= x.dim(a);
    const bool has_bias = in.size() > 2 && in[2];
    for (size_t i = 1; i < (has_bias ? 3u : 2u); ++i) {
      NNC_RETURN_IF_ERROR(requireDType(*in[i], DType::kFloat32, op));
      if (in[i]->numel() != inner)
        return unsupported("LayerNormalization scale/bias not of the normalised shape");
    }
    const float* scale = in[1]->data<float>().data();
    const float* bias = has_bias ? in[2]->data<float>().data() : nullptr;
    const int64_t rows = inner ? x.numel() / inner : 0;
    Tensor y = ctx.newTensor(DType::kFloat32, x.shape());
    const float* xd = x.data<float>().data();
    float* yd = y.mutableData<float>().data();
    Shape stat_shape = x.shape();
    for (int a = static_cast<int>(axis); a < x.rank(); ++a) stat_shape[a] = 1;
    std::vector<float> means(out.size() > 1 ? rows : 0), invs(out.size() > 2 ? rows : 0);
    parallelFor(rows, ctx, inner, [&](int64_t r) {
      const float* src = xd + r * inner;
      const auto [mean, inv] = moments(src, inner, eps);
      if (!means.empty()) means[r] = static_cast<float>(mean);
      if (!invs.empty()) invs[r] = static_cast<float>(inv);
      float* dst = yd + r * inner;
      for (int64_t j = 0; j < inner; ++j)
        dst[j] = static_cast<float>((src[j] - mean) * inv) * scale[j] + (bias ? bias[j] : 0.f);
    });
    out[0] = std::move(y);
    if (out.size() > 1) out[1] = Tensor::fromVector<float>(stat_shape, means);
    if (out.size() > 2) out[2] = Tensor::fromVector<float>(stat_shape, invs);
    return Status::ok();
  });
}

// GroupNormalization (18, 21): each of `num_groups` groups of consecutive channels is
// normalised per sample over its channels and space; scale and bias are per group before
// opset 21, per channel from 21.
StatusOr<KernelFn> makeGroupNorm(const KernelBuildContext& b) {
  const float eps = b.node.floatAttr("epsilon", 1e-5f);
  const int64_t groups = b.node.intAttr("num_groups", 0);
  return KernelFn([eps, groups](std::span<const Tensor* const> in, std::span<Tensor> out,
                                const RunContext& ctx) -> Status {
    const char* op = "GroupNormalization";
    for (size_t i = 0; i < 3; ++i) NNC_RETURN_IF_ERROR(requireInput(in, i, op));
    const Tensor& x = *in[0];
    NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, op));
    if (x.rank() < 2 || groups <= 0 || x.dim(1) % groups != 0)
      return shapeMismatch("GroupNormalization num_groups does not divide the channels");
    const int64_t c = x.dim(1), per_group = c / groups;
    const int64_t params = in[1]->numel();
    if (in[2]->numel() != params || (params != groups && params != c))
      return shapeMismatch("GroupNormalization scale/bias size is neither groups nor channels");
    const int64_t spatial = x.numel() / std::max<int64_t>(1, x.dim(0) * c);
    const int64_t inner = per_group * spatial;
    const float *scale = in[1]->data<float>().data(), *bias = in[2]->data<float>().data();
    Tensor y = ctx.newTensor(DType::kFloat32, x.shape());
    const float* xd = x.data<float>().data();
    float* yd = y.mutableData<float>().data();
    parallelFor(x.dim(0) * groups, ctx, inner, [&](int64_t i) {
      const int64_t g = i % groups;
      const float* src = xd + i * inner;
      const auto [mean, inv] = moments(src, inner, eps);
      for (int64_t j = 0; j < inner; ++j) {
        const int64_t p = params == c ? g * per_group + j / spatial : g;
        yd[i * inner + j] = static_cast<float>((src[j] - mean) * inv) * scale[p] + bias[p];
      }
    });
    out[0] = std::move(y);
    return Status::ok();
  });
}

// LRN (1, 13): y = x / (bias + alpha / size * square_sum) ^ beta, where square_sum runs over the
// channels from c - floor((size - 1) / 2) to c + ceil((size - 1) / 2), clipped to [0, C).
struct LrnAttrs {
  int64_t size = 0;
  float alpha = 1e-4f, beta = 0.75f, bias = 1.f;
};

Status lrn(std::span<const Tensor* const> in, std::span<Tensor> out, const LrnAttrs& a,
           const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "LRN X"));
  const Tensor& x = *in[0];
  NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, "LRN X"));
  if (x.rank() < 2)
    return shapeMismatch("LRN: X must be [N, C, ...], got " + shapeToString(x.shape()));
  const int64_t c = x.dim(1), plane = x.numel() / std::max<int64_t>(1, x.dim(0) * c);
  const int64_t before = (a.size - 1) / 2, after = a.size - 1 - before;
  const float scale = a.alpha / static_cast<float>(a.size);
  Tensor y = ctx.newTensor(DType::kFloat32, x.shape());
  const float* xd = x.data<float>().data();
  float* yd = y.mutableData<float>().data();
  parallelFor(x.dim(0) * c, ctx, plane * a.size, [&](int64_t i) {
    const int64_t n = i / c, ch = i % c;
    const int64_t lo = std::max<int64_t>(0, ch - before), hi = std::min(c - 1, ch + after);
    const float* src = xd + i * plane;
    float* dst = yd + i * plane;
    for (int64_t p = 0; p < plane; ++p) {
      float sum = 0;
      for (int64_t k = lo; k <= hi; ++k) {
        const float v = xd[(n * c + k) * plane + p];
        sum += v * v;
      }
      dst[p] = src[p] / std::pow(a.bias + scale * sum, a.beta);
    }
  });
  out[0] = std::move(y);
  return Status::ok();
}

StatusOr<KernelFn> makeLrn(const KernelBuildContext& b) {
  NNC_RETURN_IF_ERROR(requireOpVersion("LRN", b.opset, 1));
  LrnAttrs a;
  a.size = b.node.intAttr("size", 0);
  a.alpha = b.node.floatAttr("alpha", a.alpha);
  a.beta = b.node.floatAttr("beta", a.beta);
  a.bias = b.node.floatAttr("bias", a.bias);
  if (a.size < 1) return invalidModel("LRN: size must be a positive integer");
  return KernelFn([a](std::span<const Tensor* const> in, std::span<Tensor> out,
                      const RunContext& ctx) { return lrn(in, out, a, ctx); });
}

// MeanVarianceNormalization (9, 13), as its ONNX function body computes it:
//   y = (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9)
// with the expectations over `axes` (default [0, 2, 3]). The variance is taken here as
// E[(x - E[x])^2], the same value without the cancellation of the two-moment form.
Status meanVarianceNorm(std::span<const Tensor* const> in, std::span<Tensor> out,
                        const std::vector<int64_t>& axes_attr, const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "MeanVarianceNormalization X"));
  const Tensor& x = *in[0];
  NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, "MeanVarianceNormalization X"));
  std::vector<bool> reduced(x.rank(), false);
  for (int64_t axis : axes_attr) {
    NNC_ASSIGN_OR_RETURN(const int a, normaliseAxis(axis, x.rank()));
    if (reduced[a]) return invalidModel("MeanVarianceNormalization: repeated axis");
    reduced[a] = true;
  }
  // Group (index over the kept axes) of every element, by an odometer over x's shape.
  std::vector<int64_t> group(x.numel());
  std::vector<int64_t> coord(x.rank(), 0), kept_stride(x.rank(), 0);
  int64_t groups = 1;
  for (int d = x.rank() - 1; d >= 0; --d)
    if (!reduced[d]) kept_stride[d] = groups, groups *= x.dim(d);
  for (int64_t i = 0, g = 0; i < x.numel(); ++i) {
    group[i] = g;
    for (int d = x.rank() - 1; d >= 0; --d) {
      g += kept_stride[d];
      if (++coord[d] < x.dim(d)) break;
      g -= kept_stride[d] * x.dim(d);
      coord[d] = 0;
    }
  }
  const int64_t per_group = groups ? x.numel() / groups : 0;
  const float* xd = x.data<float>().data();
  std::vector<double> mean(groups, 0.0), var(groups, 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) mean[group[i]] += xd[i];
  for (double& m : mean) m /= std::max<int64_t>(per_group, 1);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double d = xd[i] - mean[group[i]];
    var[group[i]] += d * d;
  }
  std::vector<double> inv_std(groups);
  for (int64_t g = 0; g < groups; ++g)
    inv_std[g] = 1.0 / (std::sqrt(var[g] / std::max<int64_t>(per_group, 1)) + 1e-9);
  Tensor y = ctx.newTensor(DType::kFloat32, x.shape());
  float* yd = y.mutableData<float>().data();
  for (int64_t i = 0; i < x.numel(); ++i)
    yd[i] = static_cast<float>((xd[i] - mean[group[i]]) * inv_std[group[i]]);
  out[0] = std::move(y);
  return Status::ok();
}

StatusOr<KernelFn> makeMeanVarianceNorm(const KernelBuildContext& b) {
  NNC_RETURN_IF_ERROR(requireOpVersion("MeanVarianceNormalization", b.opset, 9));
  const std::vector<int64_t> axes = b.node.intsAttr("axes", {0, 2, 3});
  return KernelFn([axes](std::span<const Tensor* const> in, std::span<Tensor> out,
                         const RunContext& ctx) { return meanVarianceNorm(in, out, axes, ctx); });
}

}  // namespace

void registerNormKernels(KernelRegistry& r) {
  r.addFunction("BatchNormalization", makeBatchNorm);
  r.addFunction("InstanceNormalization", makeInstanceNorm);
  r.addFunction("LayerNormalization", makeLayerNorm);
  r.addFunction("GroupNormalization", makeGroupNorm);
  r.addFunction("LRN", makeLrn);
  r.addFunction("MeanVarianceNormalization", makeMeanVarianceNorm);
}

}  // namespace nnc::exec
