#pragma once
// Accuracy- and size-targeted compression (METHODS.md, method 3) as a controller over abstract
// actions: prune a step (contribution-driven, with recovery), quantize with per-layer weight bits,
// measure quality and size. The controller only decides; the actions do the work. That keeps
// its decisions testable without models and lets the CLI plug in the real pruner and quantizer.
//
// Decisions:
// 1. baseline quality Q0; precision demand: quality >= Q0 - max_drop.
// 2. The drop that 8-bit quantization alone costs (measured once on the original) is reserved,
//    so pruning cannot spend the whole budget and leave none for quantization.
// 3. Prune in steps of `step_fraction` of the remaining prunable channels while the pruned model
//    meets the demand plus the reserve; a failed step is retried at half the size down to
//    `min_step_fraction`, then pruning stops. Accepted models are checkpoints.
// 4. Quantize the last checkpoint with 8-bit weights. If it misses the precision demand, fall back
//    to earlier checkpoints. If it misses the size demand, measure each layer's sensitivity
//    (quality with that layer alone at low bits), and lower the least sensitive layers to
//    `low_bits` in rounds, as few as the size demand needs (sizes are measured, not estimated);
//    when a round misses the precision demand, fewer layers / earlier checkpoints are tried.
// With a retrain action (compress --finetune, METHODS.md method 3: prune, retrain, quantize):
// 3'. pruning may go `retrain_slack` below the demand (retraining will win that back); then the
//    last checkpoint is retrained; when it misses the demand plus the reserve, earlier ones are
//    (at most `max_retrains` in all). Checkpoints that only met the relaxed demand are dropped.
// With a qat action (--qat): 4'. a plan with low-bit layers is quantized from a copy retrained
//    with those layers fake-quantized (straight-through estimator).
// With retrain, qat and a size demand: 3''. size first: the largest pruned model whose every
//    layer at low bits fits the size demand is retrained, then trained quantized; if it meets
//    the precision demand that is the result, else the search goes on with 3' and 4.
// 5. The result is the smallest model that met the precision demand; `met` says whether it also
//    met the size demand. Every candidate measured is a step in the trajectory.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nncompress/ir/graph.h"

namespace nnc {

struct CompressTargets {
  double max_drop = 0.01;      // allowed quality drop (fraction, e.g. 0.01 = 1 point of accuracy)
  int64_t max_bytes = 0;       // size demand; 0: none (prune and 8-bit quantize only)
  double step_fraction = 0.1;  // share of the remaining prunable channels per prune step
  double min_step_fraction = 0.025;  // below this a failed step ends pruning
  int max_prune_steps = 40;
  int low_bits = 4;   // weight bits for the least sensitive layers when 8 bits are too big
  bool prune = true;  // false: quantize only
  bool quantize = true;
  double retrain_slack = 0.03;  // extra drop pruning may cause when a retrain follows
  int max_retrains = 2;
};

// Weight bits per quantizable layer (by layer name); layers not listed use 8.
using BitPlan = std::map<std::string, int>;

struct CompressActions {
  // Higher is better: top-1 accuracy with labels, top-1 agreement with the original without.
  std::function<StatusOr<double>(const Model&)> quality;
  // The model with `fraction` of its remaining prunable channels removed and recovered.
  // kTargetNotMet when nothing is left to prune.
  std::function<StatusOr<Model>(const Model&, double fraction)> prune;
  // Layers the quantizer would quantize, in graph order.
  std::function<std::vector<std::string>(const Model&)> quantizable_layers;
  std::function<StatusOr<Model>(const Model&, const BitPlan& bits)> quantize;
  // Bytes of the model as it would be written.
  std::function<StatusOr<int64_t>(const Model&)> size;
  // Optional: a cheaper estimate of `quality` (e.g. on a subset of the data). Candidates whose
  // quick drop from the original exceeds the allowed drop by more than `quick_margin` are
  // rejected without the full measure; it also ranks layer sensitivity.
  std::function<StatusOr<double>(const Model&)> quick_quality;
  double quick_margin = 0.01;
  // Optional: the model retrained (fine-tuned by distillation from the original).
  std::function<StatusOr<Model>(const Model&)> retrain;
  // Optional: quantize(model, bits) from a copy retrained with the layers of `bits`
  // fake-quantized at their bits (quantization-aware training), rounded as the training did.
  std::function<StatusOr<Model>(const Model&, const BitPlan& bits)> qat;
  // Optional: quantize(model, bits) with the weights of the layers `bits` lowers below 8 bits
  // re-rounded by AdaRound on calibration data, and how many layers were. Run once, on the
  // chosen configuration (the search itself uses quantize's balanced rounding).
  std::function<StatusOr<std::pair<Model, int>>(const Model&, const BitPlan& bits)>
      learned_rounding;
  // One line per decision (for logs and progress).
  std::function<void(const std::string&)> log;
};

struct CompressStep {
  std::string kind;         // "baseline", "prune", "retrain", "quantize", "sensitivity"
  std::string description;  // e.g. "prune 10% of remaining channels"
  int64_t bytes = 0;
  double quality = 0;
  bool accepted = false;  // met the demands it was measured against
};

struct CompressResult {
  double baseline_quality = 0;
  int64_t baseline_bytes = 0;
  std::vector<CompressStep> steps;
  // The smallest model that met the precision demand; nullopt when no compressed model did.
  std::optional<Model> best;
  double best_quality = 0;
  int64_t best_bytes = 0;
  bool met_size = false;  // best (or, without one, the original) fits the size demand
  BitPlan best_bits;      // empty when `best` is not quantized
  bool best_quantized = false;
  // The prune steps (fractions of the remaining channels) that led to `best`, for recipes.
  std::vector<double> best_prune_fractions;
  bool best_retrained = false;  // `best` comes from a retrained checkpoint
  bool best_qat = false;        // `best` was quantized from a copy trained with its low-bit layers
                                // fake-quantized (the qat action)
  std::map<std::string, double> sensitivity;  // quality drop per layer at low bits
  int quick_rejections = 0;                   // candidates rejected by the quick measure alone
  int adaround_layers = 0;  // low-bit layers of `best` whose weights AdaRound rounded
};

StatusOr<CompressResult> compressModel(const Model& original, const CompressTargets& targets,
                                       const CompressActions& actions);

}  // namespace nnc
