#pragma once
// Folds an inference-mode BatchNormalization into the Conv, ConvTranspose or Gemm before it.
//
// Before: y = BN(Conv(x, W, b))        BN(z) = gamma * (z - mean) / sqrt(var + eps) + beta
// After:  y = Conv(x, W', b')          with, per output channel c,
//   k_c = gamma_c / sqrt(var_c + eps),  W'[c] = k_c * W[c],  b'_c = k_c * (b_c - mean_c) + beta_c
// (ConvTranspose: the output channel is weight axis 1 within each group; Gemm: the row of B when
// transB = 1, its column otherwise.)
//
// Does not fire when: the producer's output has another use or is a graph output, the BN output
// is a graph output (its name would change), any weight or BN statistic is not constant float32,
// the BN is in training mode (more than one used output), or shapes do not match channel counts.

#include <string>
#include <vector>

#include "nncompress/ir/graph.h"
#include "nncompress/ir/pass.h"

namespace nnc::quant {

struct FoldedBatchNorm {
  std::string batchnorm;  // name of the BN node (or its output when unnamed)
  std::string into;       // name of the layer it went into
  // foldRemainingBatchNorms with a check: the layer after the Relu that was considered (empty:
  // none), and the worst SQNR (dB) folding into it costs, over its output channels' weights and
  // over the channels of its (per-tensor quantized) input. NaN when not measured.
  std::string next_layer;
  double weight_sqnr_lost_db = 0, act_sqnr_lost_db = 0;
};

// Folds every foldable BN; returns what was folded (in graph order).
StatusOr<std::vector<FoldedBatchNorm>> foldBatchNorms(Graph& graph);

// The BNs foldBatchNorms leaves (pre-activation BNs after a Concat or an Add, as in DenseNet):
//
// 1. Into the next layer, through the ReLU, when every k_c > 0:
//      Relu(k (x - mean) + beta) = k Relu(x + beta / k - mean)      (k_c > 0 commutes with Relu)
//    Before: x -> BN -> Relu -> [MaxPool | AveragePool | GlobalAveragePool | Flatten]* -> layer
//    After:  x -> Add(beta / k - mean) -> Relu -> [...] -> layer'   W'[:, c] = k_c W[:, c]
//    (layer: Conv, input channel c within its group, or Gemm, row c of B (column when transB);
//    the pools are per-channel and positively homogeneous, so k passes through them; every
//    value on the way has one reader.)
// 2. Otherwise into a Mul and an Add: y = k x + (beta - k mean) (two vectors instead of four).
// Needs the BN input's rank. Returns what was rewritten (`into`: the layer, or "Mul/Add").
// `into_next_layer` false: always 2. (int4 weights: the scaled input channels of a layer then
// share int4 blocks and lose accuracy; measured on densenet: top-1 0.878 -> 0.846.)
StatusOr<std::vector<FoldedBatchNorm>> foldRemainingBatchNorms(Graph& graph,
                                                               bool into_next_layer = true);

// The same, but folding forward only when it does not widen a quantization grid: the next
// layer's weights are quantized (symmetric, `weight_bits`, per output channel unless
// `per_channel_weights` is false) with and without the input-channel scales k_c, and the fold is
// taken only when every output channel loses at most `max_sqnr_loss_db` of weight SQNR, measured
// in the unfolded domain (the folded weight's error divided by k_c against W):
//   SQNR_o = 10 log10(sum_c W[o,c]^2 / sum_c ((W'[o,c] - Q(W'[o,c])) / k_c)^2),  W' = k W.
// With `quantized_activations`, the Relu output the layer reads becomes channel c divided by k_c
// on one per-tensor grid; the BN output of channel c is about N(beta_c, gamma_c^2), so its range
// is r_c = max(0, beta_c + 3 |gamma_c|) unfolded and r_c / k_c folded, and channel c loses
//   20 log10(k_c max_j(r_j / k_j) / max_j r_j) dB,
// which must also stay within `max_sqnr_loss_db`. Otherwise the BN becomes Mul/Add (float).
struct RemainingBatchNormOptions {
  bool into_next_layer = true;
  int weight_bits = 8;
  bool per_channel_weights = true;
  bool quantized_activations = true;
  double max_sqnr_loss_db = 1.0;
};
StatusOr<std::vector<FoldedBatchNorm>> foldRemainingBatchNorms(
    Graph& graph, const RemainingBatchNormOptions& options);

// The SQNR (dB) a forward fold of input-channel scales `k` into `layer` (Conv or Gemm, as
// layerAfterRelu finds it) costs its worst output channel's weights (see above).
double forwardFoldWeightSqnrLoss(const Node& layer, const std::vector<double>& k, int weight_bits,
                                 bool per_channel);

class FoldBatchNormPass : public Pass {
 public:
  std::string name() const override { return "fold-batchnorm"; }
  StatusOr<bool> run(Model& model) override;
};

}  // namespace nnc::quant
