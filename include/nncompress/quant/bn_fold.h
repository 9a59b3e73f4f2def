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

class FoldBatchNormPass : public Pass {
 public:
  std::string name() const override { return "fold-batchnorm"; }
  StatusOr<bool> run(Model& model) override;
};

}  // namespace nnc::quant
