// BatchNormalization in inference form, folded per channel into one multiply-add:
//   y = x * a[c] + b[c],  a = scale / sqrt(var + eps),  b = bias - mean * a
// InstanceNormalization: the same multiply-add with mean and variance taken per (n, c) over the
// spatial axes (in double: one pass over large planes loses precision in float).

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

}  // namespace

void registerNormKernels(KernelRegistry& r) {
  r.addFunction("BatchNormalization", makeBatchNorm);
  r.addFunction("InstanceNormalization", makeInstanceNorm);
}

}  // namespace nnc::exec
