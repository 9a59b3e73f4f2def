#pragma once
// Learned rounding for low-bit weights (AdaRound, Nagel et al. 2020; METHODS.md section 8).
//
// For a layer with float weights W (rows: output channels), per-element scales s and the
// second moment of its inputs H = E[x x^T] (x: the im2col'd input column the row multiplies,
// taken from the model whose earlier layers are already quantized), learn V of W's shape:
//   W~ = s * clip(floor(W / s) + h(V), q_min, q_max),
//   h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1),   zeta = 1.1, gamma = -0.1
// minimising  (1/O) sum_o (W_o - W~_o)^T H (W_o - W~_o) + lambda sum (1 - |2 h(V) - 1|^beta),
// the first term being the mean squared output error || W X - W~ X ||^2 / (O P) over the P
// input columns, with beta annealed from 20 to 2 after a warm-up without the regulariser. Adam on
// V; the gradient through h is closed-form. H is accumulated while streaming calibration batches,
// so memory is K^2 per group whatever the number of samples. V starts where h(V) equals the
// fractional part of W / s; the result rounds h(V) to 0 or 1.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "nncompress/data/dataset.h"
#include "nncompress/ir/graph.h"
#include "nncompress/quant/quantize.h"

namespace nnc::quant {

struct AdaRoundOptions {
  int iterations = 2000;
  double lambda = 0.01;
  double beta_start = 20, beta_end = 2;
  double warmup = 0.2;  // fraction of iterations without the rounding regulariser
  double learning_rate = 1e-2;
  int64_t samples = 256;  // calibration samples streamed per layer
  int64_t batch = 32;
  int threads = 0;
};

// One weight matrix: row o holds output channel o's K weights (float), `scale` the per-element
// scales, `group_of_row` which input Gram matrix (group of a grouped Conv) the row reads.
struct RoundingProblem {
  Eigen::MatrixXf weights;            // [O, K]
  Eigen::MatrixXf scales;             // [O, K]
  std::vector<Eigen::MatrixXf> gram;  // per group: H = E[x x^T], [K, K]
  std::vector<int> group_of_row;      // size O (empty: all rows group 0)
  int qmin = -127, qmax = 127;
};

// Integer weights [O, K] by nearest rounding and by AdaRound.
Eigen::MatrixXi roundToNearest(const RoundingProblem& p);
Eigen::MatrixXi adaRound(const RoundingProblem& p, const AdaRoundOptions& options);

// The mean squared output error (1/O) sum_o d_o^T H d_o of integer weights q (d = W - s q).
double reconstructionError(const RoundingProblem& p, const Eigen::MatrixXi& q);

// Re-rounds the weights of every quantized Conv / Gemm / MatMul of `quantized` (QDQ or
// weight-only, int8 or int4, as quantizeModel wrote them) with AdaRound, layer by layer in graph
// order, each on inputs from the model whose earlier layers are already re-rounded.
// `reference` is the float model quantizeModel started from. Returns the layers re-rounded.
// `cache` (optional): integer weights already learned for a layer name, reused as they are when
// the same layer of the same float model is quantized the same way again (compress tries many
// bit plans), and filled with what is learned.
using AdaRoundCache = std::map<std::string, Tensor>;
StatusOr<int> adaRoundModel(const Model& reference, Model& quantized,
                            const std::vector<QuantizedLayer>& layers, data::SampleReader& reader,
                            const AdaRoundOptions& options, AdaRoundCache* cache = nullptr);

}  // namespace nnc::quant
