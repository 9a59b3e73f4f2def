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

}  // namespace nnc
