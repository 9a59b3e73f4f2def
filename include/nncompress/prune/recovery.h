#pragma once
// Recovery after pruning without a training framework (METHODS.md, method 3 step 3):
// BatchNorm statistics re-estimated on calibration data, and least-squares reconstruction of
// each consumer layer so that its output on calibration data matches the unpruned model's.
// Statistics are accumulated in streaming form: memory does not grow with the sample count.

#include <string>
#include <vector>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/data/dataset.h"
#include "nncompress/prune/surgery.h"

namespace nnc {

// Samples 0 .. count-1 of `reader`, fed in batches (the model's input must fit the samples).
struct CalibrationSource {
  data::SampleReader* reader = nullptr;
  int64_t count = 1024;
  int64_t batch = 64;
  int num_threads = 0;  // 0: every core
};

struct BatchNormOptions {
  // true: BatchNorms are re-estimated in dependency order, one calibration pass per level (a BN
  // whose input depends on another BN waits for that one's new statistics): exact.
  // false: one pass, every BN measured with the old statistics of the BNs upstream of it: an
  // approximation (see docs in recovery.cc for the measured difference).
  bool sequential = true;
};

// Replaces every BatchNormalization's running mean and variance in `model` by the statistics of
// its input over the calibration samples (per channel over N, H, W). The variance is the biased
// (population) one, sum (x - mean)^2 / count: what normalises the calibration data exactly; with
// count = samples * H * W the unbiased correction would be below 1e-5.
Status reestimateBatchNorm(Model& model, const CalibrationSource& calibration,
                           const BatchNormOptions& options = {});

struct LeastSquaresOptions {
  // Ridge term, relative to the mean diagonal of the layer's input Gram matrix. The solution is
  // shrunk towards the layer's weights after surgery, not towards zero.
  double ridge = 1e-3;
  // Conv layers: output positions used per image (a fixed random subset, seeded); <= 0: all.
  int64_t max_positions_per_image = 64;
  uint64_t seed = 0;
  // A layer that feeds a residual Add (through BatchNorms only) is fit so that the Add's output
  // matches the original's: it also absorbs the error of the other branch, when that branch is
  // final before this layer is refit (identity shortcuts, projection shortcuts refit earlier).
  bool compensate_residuals = true;
  // Activations of the pruned model kept between the per-level calibration passes, so a pass
  // starts where the previous ones stopped instead of at the model input; when they would take
  // more bytes than this, every pass runs from the input (same results, more work).
  int64_t cache_bytes = int64_t{512} << 20;
};

// What reconstruction did to one layer: relative squared error of its output against the
// unpruned model's on the calibration samples, before and after the refit.
struct LayerRecovery {
  std::string layer;  // node name, or its output's name
  double error_before = 0;
  double error_after = 0;
};

// `original` is the unpruned model; `pruned` is a copy of it after applyChannelPruning(copy,
// analysis of the copy, plan). `analysis` describes either of the two before surgery (the group
// ids are the same; layers are matched by their output names, which surgery keeps). In topological
// order, every layer of `pruned` whose input channels shrank or whose input differs from the
// original's because of an earlier change (Conv with group 1, Gemm, MatMul with a constant 2-D
// weight) gets new weights and bias (Conv and Gemm; a bias input is added when missing), solved by
// ridge regression, so that its output on the calibration samples (fed the inputs the pruned model,
// already refit up to that layer, produces) matches the original's output of the same layer
// restricted to the kept output channels. Grouped and depthwise convolutions are left as they are
// (per-channel: their kept channels are exact when their input is). One calibration pass per
// dependency level of the refit layers; layers that do not depend on each other share a pass.
StatusOr<std::vector<LayerRecovery>> reconstructLeastSquares(
    const Model& original, Model& pruned, const ChannelAnalysis& analysis,
    const std::vector<GroupKeep>& plan, const CalibrationSource& calibration,
    const LeastSquaresOptions& options = {});

}  // namespace nnc
