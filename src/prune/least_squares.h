#pragma once
// Streaming ridge regression for layer reconstruction (recovery.cc).
//
// Rows of a design matrix X (features of one output position, plus a ones column for the bias)
// and of a target matrix T (the unpruned layer's outputs at that position) arrive in blocks; only
// G = X^T X, C = X^T T and the per-column target energy |T_m|^2 are kept, so memory is
// O(F^2 + F*M), independent of the number of rows. The solution
//     W = (G + lambda I)^-1 (C + lambda W0),   lambda = ridge * mean(diag G)
// is the ridge estimate shrunk towards W0 (the layer's weights after surgery) rather than
// towards zero, so directions the calibration data does not excite keep their old weights.
// Squared errors of any W follow from the same statistics:
//     |T - X W|^2 = tr(W^T G W) - 2 tr(W^T C) + |T|^2.

#include <Eigen/Core>
#include <cstdint>
#include <span>
#include <vector>

#include "nncompress/ir/status.h"

namespace nnc::lsq {

using MatrixD = Eigen::MatrixXd;
using RowMatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

class NormalEquations {
 public:
  NormalEquations(int64_t features, int64_t outputs);

  int64_t features() const { return gram_.rows(); }
  int64_t outputs() const { return cross_.cols(); }
  int64_t rows() const { return rows_; }

  // Adds the rows of `x` (rows x features) with targets `t` (rows x outputs), on up to `threads`
  // threads. The sums do not depend on the thread count: the work is split into fixed column
  // bands (gram_band.h), each computed whole by one thread.
  void add(const RowMatrixD& x, const RowMatrixD& t, int threads = 1);

  // The ridge solution (features x outputs), shrunk towards `w0` (same shape).
  StatusOr<MatrixD> solve(const MatrixD& w0, double ridge) const;

  // |T - X W|^2 / |T|^2 over every row seen so far (0 when T is all zero).
  double relativeError(const MatrixD& w) const;

 private:
  MatrixD gram_;               // lower triangle accumulated; upper filled on demand
  MatrixD cross_;              // X^T T
  Eigen::VectorXd target_sq_;  // |T_m|^2 per output
  int64_t rows_ = 0;
};

// 2-D convolution geometry (1-D convolutions are 2-D with height 1); pads resolved.
struct PatchGeometry {
  int64_t channels = 0, ih = 1, iw = 1;  // input
  int64_t oh = 1, ow = 1;                // output
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1, pad_top = 0, pad_left = 0;
  int64_t patchSize() const { return channels * kh * kw; }
};

// Writes the im2col patch of output position `pixel` (oy * ow + ox) of one image `x`
// ([channels, ih, iw]) into `row` (patchSize() consecutive entries): entry (c * kh + i) * kw + j is
// x[c, oy * sh - pad_top + i * dh, ox * sw - pad_left + j * dw], 0 outside the image.
void convPatch(const float* x, const PatchGeometry& g, int64_t pixel, double* row);

// `count` distinct positions out of `total`, ascending, drawn with a generator seeded by
// (seed, stream); all positions when count >= total.
std::vector<int64_t> samplePositions(int64_t total, int64_t count, uint64_t seed, uint64_t stream);

}  // namespace nnc::lsq
