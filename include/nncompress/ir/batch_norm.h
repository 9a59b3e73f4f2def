#pragma once
// Constant float tensors and inference BatchNormalization as data: the helpers every pass that
// folds or rescales channels (the executor's fused plan, BN folding, equalisation, recovery) needs.

#include <cstdint>
#include <optional>
#include <vector>

#include "nncompress/ir/graph.h"

namespace nnc {

// The value's constant data when it is a float32 tensor known before run time, else nullptr.
const Tensor* constantFloat32(const Value* v);

// Inference-mode BatchNormalization as the per-channel affine map it computes:
//   y = scale[c] * x + shift[c],  scale = gamma / sqrt(var + epsilon),  shift = beta - mean * scale
// (in double, so folding it into float weights rounds once).
struct BatchNormAffine {
  std::vector<double> scale, shift;
  int64_t channels() const { return static_cast<int64_t>(scale.size()); }
};

// nullopt unless `bn` runs in inference mode (training_mode 0, no statistics output read) and its
// gamma, beta, mean and var are float32 constants of one length (`channels` when it is >= 0).
std::optional<BatchNormAffine> batchNormAffine(const Node& bn, int64_t channels = -1);

// The same map from parameters given as data, `channels` values each (the training tape's
// gamma and beta train, so they are not constants).
BatchNormAffine batchNormAffine(const float* gamma, const float* beta, const float* mean,
                                const float* var, int64_t channels, float epsilon);

// out[oc, j] = w[oc, j] * scale[oc] for output-channel-major weights (`per_channel` each),
// rounded once from double; out may be w.
void scaleOutputChannels(const std::vector<double>& scale, const float* w, int64_t per_channel,
                         float* out);

// Folds the map into a layer whose weights are output-channel major (`per_channel` weights per
// output channel): W' = W * scale, B' = B * scale + shift, each rounded once from double. An empty
// `bias` is read as zeros and filled. The executor's fused plan and the training tape's folded
// forward both call this (and the tape's Conv backward scales W with scaleOutputChannels), so
// they agree bit for bit.
void foldIntoOutputChannels(const BatchNormAffine& affine, float* weight, int64_t per_channel,
                            std::vector<float>& bias);

}  // namespace nnc
