#pragma once
// Optimisers for fine-tuning (METHODS.md section 6): SGD with momentum and AdamW, with weight
// decay and gradient-norm clipping. Parameters are float32 tensors owned elsewhere (the model's
// initializers); the optimiser keeps one or two state tensors per parameter.
//
//   clip:  g <- g * min(1, max_norm / ||g||_2)   (||g|| over all parameters together)
//   SGD:   g <- g + wd * w (decayed params only);  v <- mu v + g;  w <- w - lr v
//   AdamW: m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  t <- t + 1
//          w <- w - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) - lr wd w (decayed only)
// Weight decay applies to tensors of rank >= 2 (weights), not to biases and BatchNorm
// parameters, as is usual.

#include <cstdint>
#include <string>
#include <vector>

#include "nncompress/ir/status.h"
#include "nncompress/ir/tensor.h"

namespace nnc::train {

enum class OptimizerKind { kSgd, kAdamW };
StatusOr<OptimizerKind> parseOptimizerKind(const std::string& name);

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kAdamW;
  double momentum = 0.9;                          // SGD
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // AdamW
  double weight_decay = 1e-4;
  double max_grad_norm = 5.0;  // <= 0: no clipping
};

class Optimizer {
 public:
  // `params` must stay alive and keep their shapes for the optimiser's lifetime.
  Optimizer(std::vector<Tensor*> params, const OptimizerOptions& options);

  // One update with learning rate `lr`; grads[i] matches params[i]. Returns the gradient norm
  // before clipping.
  StatusOr<double> step(const std::vector<const Tensor*>& grads, double lr);

  int64_t steps() const { return steps_; }
  // State for checkpoints: the step count and every state tensor, in a fixed order.
  std::vector<Tensor>& stateTensors() { return state_; }
  void setSteps(int64_t steps) { steps_ = steps; }

 private:
  std::vector<Tensor*> params_;
  OptimizerOptions options_;
  std::vector<Tensor> state_;  // SGD: velocity per param; AdamW: m then v per param
  int64_t steps_ = 0;
};

}  // namespace nnc::train
