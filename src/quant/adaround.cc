#include "nncompress/quant/adaround.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "nncompress/exec/executor.h"
#include "nncompress/ir/batch_norm.h"

namespace nnc::quant {
namespace {

constexpr float kZeta = 1.1f, kGamma = -0.1f;

// G = D H row by row, each row with its group's H.
Eigen::MatrixXf timesGram(const RoundingProblem& p, const Eigen::MatrixXf& d) {
  if (p.gram.size() == 1) return d * p.gram[0];
  Eigen::MatrixXf g(d.rows(), d.cols());
  for (Eigen::Index o = 0; o < d.rows(); ++o) g.row(o) = d.row(o) * p.gram[p.group_of_row[o]];
  return g;
}

}  // namespace

Eigen::MatrixXi roundToNearest(const RoundingProblem& p) {
  Eigen::MatrixXi q(p.weights.rows(), p.weights.cols());
  for (Eigen::Index i = 0; i < q.size(); ++i) {
    const float v = std::nearbyint(p.weights(i) / p.scales(i));
    q(i) = int(std::clamp(v, float(p.qmin), float(p.qmax)));
  }
  return q;
}

double reconstructionError(const RoundingProblem& p, const Eigen::MatrixXi& q) {
  const Eigen::MatrixXf d = p.weights - p.scales.cwiseProduct(q.cast<float>());
  const Eigen::MatrixXf g = timesGram(p, d);
  return double(d.cwiseProduct(g).sum()) / double(std::max<Eigen::Index>(1, d.rows()));
}

Eigen::MatrixXi adaRound(const RoundingProblem& p, const AdaRoundOptions& o) {
  const Eigen::Index rows = p.weights.rows(), cols = p.weights.cols();
  // Floor and the entries whose rounding is fixed by the clip (only one grid point allowed).
  Eigen::MatrixXf base(rows, cols), v(rows, cols);
  Eigen::ArrayXXf free = Eigen::ArrayXXf::Ones(rows, cols);
  for (Eigen::Index i = 0; i < base.size(); ++i) {
    const float x = p.weights(i) / p.scales(i);
    float f = std::floor(x);
    if (f >= float(p.qmax) || f < float(p.qmin)) {
      f = std::clamp(f, float(p.qmin), float(p.qmax));
      free(i) = 0;
    }
    base(i) = f;
    const float frac = std::clamp(x - std::floor(x), 0.01f, 0.99f);
    const float s = (frac - kGamma) / (kZeta - kGamma);  // h(V) = frac at the start
    v(i) = std::log(s / (1 - s));
  }
  Eigen::ArrayXXf m = Eigen::ArrayXXf::Zero(rows, cols), m2 = m;
  const Eigen::ArrayXXf scales = p.scales.array();
  const int warm = int(o.warmup * o.iterations);
  const float inv_rows = 1.f / float(std::max<Eigen::Index>(1, rows));
  for (int it = 0; it < o.iterations; ++it) {
    const Eigen::ArrayXXf sig = 1.f / (1.f + (-v.array()).exp());
    const Eigen::ArrayXXf raw = sig * (kZeta - kGamma) + kGamma;
    const Eigen::ArrayXXf h = raw.min(1.f).max(0.f) * free;
    const Eigen::MatrixXf d = (scales * (base.array() + h)).matrix() - p.weights;
    Eigen::ArrayXXf grad_h = (2.f * inv_rows) * timesGram(p, d).array() * scales;
    if (it >= warm) {
      const double t = double(it - warm) / double(std::max(1, o.iterations - warm));
      const float beta = float(o.beta_start + (o.beta_end - o.beta_start) * t);
      const Eigen::ArrayXXf a = 2.f * h - 1.f;
      // d/dh of lambda (1 - |2h - 1|^beta)
      grad_h -= float(o.lambda) * 2.f * beta * a.abs().pow(beta - 1.f) * a.sign();
    }
    const Eigen::ArrayXXf inside = ((raw > 0.f) && (raw < 1.f)).cast<float>();
    const Eigen::ArrayXXf grad = grad_h * sig * (1.f - sig) * (kZeta - kGamma) * inside * free;
    // Adam (beta1 0.9, beta2 0.999).
    m = 0.9f * m + 0.1f * grad;
    m2 = 0.999f * m2 + 0.001f * grad.square();
    const float c1 = 1.f - std::pow(0.9f, float(it + 1)),
                c2 = 1.f - std::pow(0.999f, float(it + 1));
    v.array() -= float(o.learning_rate) * (m / c1) / ((m2 / c2).sqrt() + 1e-8f);
  }
  Eigen::MatrixXi q(rows, cols);
  for (Eigen::Index i = 0; i < q.size(); ++i) {
    const float raw = 1.f / (1.f + std::exp(-v(i))) * (kZeta - kGamma) + kGamma;
    q(i) = int(base(i)) + (free(i) > 0 && raw >= 0.5f ? 1 : 0);
    q(i) = std::clamp(q(i), p.qmin, p.qmax);
  }
  return q;
}

}  // namespace nnc::quant
