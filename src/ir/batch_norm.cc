#include "nncompress/ir/batch_norm.h"

#include <cmath>

namespace nnc {

const Tensor* constantFloat32(const Value* v) {
  if (v == nullptr) return nullptr;
  const Tensor* t = v->constantData();
  return t != nullptr && t->dtype() == DType::kFloat32 ? t : nullptr;
}

std::optional<BatchNormAffine> batchNormAffine(const Node& bn, int64_t channels) {
  if (!bn.isOp("BatchNormalization") || bn.intAttr("training_mode", 0) != 0 || bn.numInputs() < 5)
    return std::nullopt;
  for (size_t i = 1; i < bn.numOutputs(); ++i)
    if (bn.output(i) != nullptr && (bn.output(i)->hasUses() || bn.output(i)->isGraphOutput()))
      return std::nullopt;
  const Tensor* p[4];  // gamma, beta, mean, var
  for (int i = 0; i < 4; ++i) {
    p[i] = constantFloat32(bn.input(i + 1));
    if (p[i] == nullptr) return std::nullopt;
  }
  const int64_t c = p[0]->numel();
  if (channels >= 0 && c != channels) return std::nullopt;
  for (const Tensor* t : p)
    if (t->numel() != c) return std::nullopt;
  return batchNormAffine(p[0]->data<float>().data(), p[1]->data<float>().data(),
                         p[2]->data<float>().data(), p[3]->data<float>().data(), c,
                         bn.floatAttr("epsilon", 1e-5f));
}

BatchNormAffine batchNormAffine(const float* gamma, const float* beta, const float* mean,
                                const float* var, int64_t channels, float epsilon) {
  BatchNormAffine a;
  a.scale.resize(channels);
  a.shift.resize(channels);
  for (int64_t i = 0; i < channels; ++i) {
    const double k = gamma[i] / std::sqrt(double(var[i]) + double(epsilon));
    a.scale[i] = k;
    a.shift[i] = beta[i] - k * mean[i];
  }
  return a;
}

void scaleOutputChannels(const std::vector<double>& scale, const float* w, int64_t per_channel,
                         float* out) {
  for (size_t oc = 0; oc < scale.size(); ++oc)
    for (int64_t j = oc * per_channel; j < static_cast<int64_t>(oc + 1) * per_channel; ++j)
      out[j] = static_cast<float>(w[j] * scale[oc]);
}

void foldIntoOutputChannels(const BatchNormAffine& affine, float* weight, int64_t per_channel,
                            std::vector<float>& bias) {
  const int64_t m = affine.channels();
  if (bias.empty()) bias.assign(static_cast<size_t>(m), 0.f);
  scaleOutputChannels(affine.scale, weight, per_channel, weight);
  for (int64_t oc = 0; oc < m; ++oc)
    bias[oc] = static_cast<float>(bias[oc] * affine.scale[oc] + affine.shift[oc]);
}

}  // namespace nnc
