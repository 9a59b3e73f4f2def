// BatchNormalization in inference form, folded per channel into one multiply-add:
//   y = x * a[c] + b[c],  a = scale / sqrt(var + eps),  b = bias - mean * a
// InstanceNormalization: the same multiply-add with mean and variance taken per (n, c) over the
// spatial axes (in double: one pass over large planes loses precision in float).

#include <cmath>

#include "kernel_util.h"
#include "kernels.h"

namespace nnc::exec {
namespace {

StatusOr<KernelFn> makeBatchNorm(const KernelBuildContext& b) {
  const float eps = b.node.floatAttr("epsilon", 1e-5f);
  if (b.node.intAttr("training_mode", 0) != 0)
    return unsupported("BatchNormalization with training_mode=1 (only inference is supported)");
  return KernelFn([eps](std::span<const Tensor* const> in, std::span<Tensor> out,
                        const RunContext& ctx) -> Status {
    for (size_t i = 0; i < 5; ++i)
      NNC_RETURN_IF_ERROR(requireInput(in, i, "BatchNormalization operand"));
    const Tensor& x = *in[0];
    NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, "BatchNormalization input"));
    if (x.rank() < 2) return shapeMismatch("BatchNormalization input must have a channel axis");
    const int64_t n = x.dim(0), c = x.dim(1), inner = x.numel() / std::max<int64_t>(1, n * c);
    for (size_t i = 1; i < 5; ++i) {
      NNC_RETURN_IF_ERROR(requireDType(*in[i], DType::kFloat32, "BatchNormalization parameter"));
      if (in[i]->numel() != c)
        return shapeMismatch("BatchNormalization parameter size differs from channels");
    }
    const float *scale = in[1]->data<float>().data(), *bias = in[2]->data<float>().data(),
                *mean = in[3]->data<float>().data(), *var = in[4]->data<float>().data();
    std::vector<float> mul(c), add(c);
    for (int64_t i = 0; i < c; ++i) {
      mul[i] = scale[i] / std::sqrt(var[i] + eps);
      add[i] = bias[i] - mean[i] * mul[i];
    }
    Tensor y = ctx.newTensor(DType::kFloat32, x.shape());  // every element is written
    const float* xd = x.data<float>().data();
    float* yd = y.mutableData<float>().data();
    parallelFor(n * c, ctx, inner, [&](int64_t i) {
      const float a = mul[i % c], bb = add[i % c];
      const float* src = xd + i * inner;
      float* dst = yd + i * inner;
      for (int64_t j = 0; j < inner; ++j) dst[j] = src[j] * a + bb;
    });
    out[0] = std::move(y);
    return Status::ok();
  });
}

StatusOr<KernelFn> makeInstanceNorm(const KernelBuildContext& b) {
  const float eps = b.node.floatAttr("epsilon", 1e-5f);
  return KernelFn([eps](std::span<const Tensor* const> in, std::span<Tensor> out,
                        const RunContext& ctx) -> Status {
    for (size_t i = 0; i < 3; ++i)
      NNC_RETURN_IF_ERROR(requireInput(in, i, "InstanceNormalization operand"));
    const Tensor& x = *in[0];
    NNC_RETURN_IF_ERROR(requireDType(x, DType::kFloat32, "InstanceNormalization input"));
    if (x.rank() < 3) return shapeMismatch("InstanceNormalization input needs rank >= 3");
    const int64_t n = x.dim(0), c = x.dim(1), inner = x.numel() / std::max<int64_t>(1, n * c);
    for (size_t i = 1; i < 3; ++i) {
      NNC_RETURN_IF_ERROR(requireDType(*in[i], DType::kFloat32, "InstanceNormalization parameter"));
      if (in[i]->numel() != c)
        return shapeMismatch("InstanceNormalization scale/B size differs from channels");
    }
    const float *scale = in[1]->data<float>().data(), *bias = in[2]->data<float>().data();
    Tensor y = ctx.newTensor(DType::kFloat32, x.shape());  // every element is written
    const float* xd = x.data<float>().data();
    float* yd = y.mutableData<float>().data();
    parallelFor(n * c, ctx, inner, [&](int64_t i) {
      const float* src = xd + i * inner;
      double sum = 0, sum_sq = 0;
      for (int64_t j = 0; j < inner; ++j) sum += src[j];
      const double mean = inner ? sum / inner : 0;
      for (int64_t j = 0; j < inner; ++j) sum_sq += (src[j] - mean) * (src[j] - mean);
      const double var = inner ? sum_sq / inner : 0;
      const float a = static_cast<float>(scale[i % c] / std::sqrt(var + eps));
      const float bb = static_cast<float>(bias[i % c] - mean * a);
      float* dst = yd + i * inner;
      for (int64_t j = 0; j < inner; ++j) dst[j] = src[j] * a + bb;
    });
    out[0] = std::move(y);
    return Status::ok();
  });
}

}  // namespace

void registerNormKernels(KernelRegistry& r) {
  r.addFunction("BatchNormalization", makeBatchNorm);
  r.addFunction("InstanceNormalization", makeInstanceNorm);
}

}  // namespace nnc::exec
