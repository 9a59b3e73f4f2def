#pragma once
// Cross-layer equalisation (Nagel et al. 2019, "Data-Free Quantization Through Weight
// Equalization and Bias Correction"), run on the float model after BatchNorm folding.
//
// For two layers joined by an activation that commutes with a positive per-channel scale,
//   y = Conv2(f(Conv1(x)))     f = Relu, Clip(min 0, max M), or nothing,
// output channel i of Conv1 is divided by s_i and input channel i of Conv2 multiplied by it:
//   W1'[i] = W1[i] / s_i,  b1'[i] = b1[i] / s_i,  W2'[:, i] = s_i W2[:, i]
// with s_i = sqrt(r1_i r2_i) / r2_i (r1_i: max |W1[i]|, r2_i: max |W2[:, i]|), so both ranges
// become sqrt(r1_i r2_i) and per-tensor int8 weights lose far less on depthwise layers.
// Relu(y / s) = Relu(y) / s; Clip(y / s, 0, M) = Clip(y, 0, M s) / s, so a Clip whose channels
// end up scaled becomes Relu followed by Min with the per-channel bound M / S_i (S_i: the product
// of the scales applied to channel i): the float model computes the same function. Pairs are
// swept in graph order, `iterations` times or until no scale moves by more than `tolerance`.
// Pairs need: constant float weights (and bias), Conv2 reading the activation as its only reader,
// every intermediate value with one reader and not a graph output.

#include "nncompress/ir/graph.h"

namespace nnc::quant {

struct EqualizeOptions {
  int iterations = 20;
  double tolerance = 1e-4;
};

struct EqualizeStats {
  int pairs = 0;
  int sweeps = 0;
  int clips_rewritten = 0;  // Clip -> Relu + Min(per-channel bound)
};

StatusOr<EqualizeStats> equalizeLayers(Graph& graph, const EqualizeOptions& options = {});

}  // namespace nnc::quant
