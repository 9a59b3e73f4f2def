#include "least_squares.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <atomic>
#include <functional>
#include <numeric>
#include <random>
#include <thread>

#include "gram_band.h"

namespace nnc::lsq {

NormalEquations::NormalEquations(int64_t features, int64_t outputs)
    : gram_(MatrixD::Zero(features, features)),
      cross_(MatrixD::Zero(features, outputs)),
      target_sq_(Eigen::VectorXd::Zero(outputs)) {}

namespace {

// Columns of G per band: wide enough for efficient products, narrow enough to balance threads.
constexpr int64_t kBandWidth = 64;

// Runs task(i) for i in [0, n) on up to `threads` threads (the caller is one of them); tasks are
// handed out in order. Plain threads that block when done: no spin-waiting, which costs whole time
// slices when other processes share the cores.
void runTasks(int64_t n, int threads, const std::function<void(int64_t)>& task) {
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) task(i);
  };
  std::vector<std::thread> helpers;
  for (int h = 1; h < std::min<int64_t>(threads, n); ++h) helpers.emplace_back(work);
  work();
  for (std::thread& h : helpers) h.join();
}

}  // namespace

void NormalEquations::add(const RowMatrixD& x, const RowMatrixD& t, int threads) {
  if (x.rows() == 0) return;
  GramUpdate u;
  u.x = x.data();
  u.t = t.data();
  u.gram = gram_.data();
  u.cross = cross_.data();
  u.rows = x.rows();
  u.features = features();
  u.outputs = outputs();
  const int64_t bands = (u.features + kBandWidth - 1) / kBandWidth;
  // Threads only for work that pays for starting them (about 10^6 multiply-adds per thread).
  const int64_t work = u.rows * u.features * (u.features / 2 + u.outputs);
  const int usable = static_cast<int>(std::min<int64_t>(threads, 1 + work / (1 << 20)));
  runTasks(bands, usable, [&](int64_t b) {
    addGramBand(u, b * kBandWidth, std::min(u.features, (b + 1) * kBandWidth));
  });
  target_sq_ += t.colwise().squaredNorm().transpose();
  rows_ += x.rows();
}

StatusOr<MatrixD> NormalEquations::solve(const MatrixD& w0, double ridge) const {
  if (w0.rows() != features() || w0.cols() != outputs())
    return internalError("least squares: initial weights have the wrong shape");
  MatrixD h = gram_.selfadjointView<Eigen::Lower>();
  const double mean_diag = features() ? h.diagonal().mean() : 0.0;
  double lambda = ridge * (mean_diag > 0 ? mean_diag : 1.0);
  // A singular Gram matrix with ridge 0 (features never excited): retry with a growing ridge.
  for (int attempt = 0; attempt < 8; ++attempt) {
    MatrixD a = h;
    a.diagonal().array() += lambda;
    MatrixD rhs = cross_ + lambda * w0;
    Eigen::LDLT<MatrixD> ldlt(a);
    if (ldlt.info() == Eigen::Success) {
      MatrixD w = ldlt.solve(rhs);
      // Backward-stable check: the residual is small relative to the sizes involved.
      if (w.allFinite() &&
          (a * w - rhs).norm() <= 1e-8 * (a.norm() * w.norm() + rhs.norm()) + 1e-300)
        return w;
    }
    lambda = lambda > 0 ? lambda * 100 : 1e-12 * (mean_diag > 0 ? mean_diag : 1.0);
  }
  return internalError("least squares: the normal equations could not be solved");
}

double NormalEquations::relativeError(const MatrixD& w) const {
  const double total = target_sq_.sum();
  if (total <= 0) return 0;
  const MatrixD gw = gram_.selfadjointView<Eigen::Lower>() * w;
  const double err = (w.transpose() * gw).trace() - 2 * (w.transpose() * cross_).trace() + total;
  return std::max(0.0, err) / total;
}

void convPatch(const float* x, const PatchGeometry& g, int64_t pixel, double* row) {
  const int64_t oy = pixel / g.ow, ox = pixel % g.ow;
  const int64_t y0 = oy * g.sh - g.pad_top, x0 = ox * g.sw - g.pad_left;
  int64_t f = 0;
  for (int64_t c = 0; c < g.channels; ++c) {
    const float* xc = x + c * g.ih * g.iw;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t sy = y0 + i * g.dh;
      const bool row_in = sy >= 0 && sy < g.ih;
      for (int64_t j = 0; j < g.kw; ++j, ++f) {
        const int64_t sx = x0 + j * g.dw;
        row[f] = (row_in && sx >= 0 && sx < g.iw) ? xc[sy * g.iw + sx] : 0.0;
      }
    }
  }
}

std::vector<int64_t> samplePositions(int64_t total, int64_t count, uint64_t seed, uint64_t stream) {
  std::vector<int64_t> all(static_cast<size_t>(total));
  std::iota(all.begin(), all.end(), int64_t{0});
  if (count >= total) return all;
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + stream);
  // Partial Fisher-Yates: the first `count` entries become a uniform sample.
  for (int64_t i = 0; i < count; ++i) {
    std::uniform_int_distribution<int64_t> pick(i, total - 1);
    std::swap(all[i], all[pick(rng)]);
  }
  all.resize(static_cast<size_t>(count));
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace nnc::lsq
