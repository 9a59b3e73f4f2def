#pragma once
// The distillation loss of METHODS.md section 6, with its gradient with respect to the student's
// outputs (the seed of the backward pass). Every term is a mean over the batch.
//
// Classifier (one output [N, K], K > 1), temperature T, p = softmax(z / T):
//   L = T^2 * mean_n KL(p_t || p_s) + lambda * mean_n CE(softmax(z_s), y)      (CE only with y)
//   dL/dz_s = T * (p_s - p_t) / N + lambda * (softmax(z_s) - onehot(y)) / N
// KL in general (--loss kl, or auto on the logits before a final Softmax, softmax_heads.h): the
// same over the last axis of every output, each position of the other axes a row (N above counts
// rows), summed over outputs; the CE only for one [N, K] output.
// Any other model, per output o with teacher variance var_o over the batch:
//   L = sum_o mean((s_o - t_o)^2) / var_o      dL/ds_o = 2 (s_o - t_o) / (numel_o * var_o)

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nncompress/ir/status.h"
#include "nncompress/ir/tensor.h"

namespace nnc::train {

enum class LossKind { kAuto, kKlDivergence, kNormalisedMse };

struct DistillLossOptions {
  LossKind kind = LossKind::kAuto;  // auto: KL for one [N, K] output or Softmax logits, else MSE
  double temperature = 4.0;
  double label_weight = 0.5;  // lambda, used when labels are given
  // Every output is the logits of a Softmax over its last axis (the model's Softmax removed for
  // training): auto means KL, over that axis, for any rank and number of outputs.
  bool softmax_logits = false;
};

struct LossResult {
  double loss = 0;
  double distill = 0;             // the KL or MSE term alone
  double cross_entropy = 0;       // the CE term before lambda (0 without labels)
  std::vector<Tensor> gradients;  // dL/d student output, one per output, float32
};

// True when `outputs` look like a classifier's logits (one rank-2 output with more than one
// class).
bool isClassifierOutput(const std::vector<Tensor>& outputs);

// The loss `kind` means for these outputs: kAuto resolved (KL for a classifier or for Softmax
// logits, else MSE).
LossKind resolveLossKind(LossKind kind, const std::vector<Tensor>& outputs,
                         bool softmax_logits = false);
// "kl", "mse" or "auto", and back (kInvalidArgument for another name).
const char* lossKindName(LossKind kind);
StatusOr<LossKind> parseLossKind(const std::string& name);

// `labels`: one class per sample (size N) or nullptr. kInvalidArgument when shapes differ or a
// label is out of range.
StatusOr<LossResult> distillationLoss(const std::vector<Tensor>& student,
                                      const std::vector<Tensor>& teacher,
                                      const std::vector<int64_t>* labels,
                                      const DistillLossOptions& options = {});

}  // namespace nnc::train
