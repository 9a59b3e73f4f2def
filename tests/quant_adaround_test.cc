// AdaRound (quant/adaround.h): learned rounding lowers a layer's output reconstruction error
// against nearest rounding, and every weight still rounds to one of its two neighbouring grid
// points.

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "nncompress/quant/adaround.h"

namespace nnc {
namespace {

// A [rows, cols] layer with per-row symmetric scales for `bits`, and correlated inputs (each input
// feature a mix of a few shared factors, as neighbouring pixels and channels are).
quant::RoundingProblem makeProblem(int rows, int cols, int bits, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  quant::RoundingProblem p;
  p.weights.resize(rows, cols);
  for (Eigen::Index i = 0; i < p.weights.size(); ++i) p.weights(i) = 0.1f * n(rng);
  p.qmax = (1 << (bits - 1)) - 1;
  p.qmin = -p.qmax;
  p.scales.resize(rows, cols);
  for (int r = 0; r < rows; ++r)
    p.scales.row(r).setConstant(p.weights.row(r).cwiseAbs().maxCoeff() / float(p.qmax));
  const int samples = 512, factors = 6;
  Eigen::MatrixXf mix(cols, factors), z(factors, samples), noise(cols, samples);
  for (Eigen::Index i = 0; i < mix.size(); ++i) mix(i) = n(rng);
  for (Eigen::Index i = 0; i < z.size(); ++i) z(i) = n(rng);
  for (Eigen::Index i = 0; i < noise.size(); ++i) noise(i) = 0.3f * n(rng);
  const Eigen::MatrixXf x = mix * z + noise;
  p.gram = {x * x.transpose() / float(samples)};
  return p;
}

TEST(AdaRound, LowersReconstructionErrorAgainstNearest) {
  for (int bits : {4, 8}) {
    const quant::RoundingProblem p = makeProblem(8, 36, bits, 5);
    quant::AdaRoundOptions o;
    o.iterations = 1500;
    const Eigen::MatrixXi nearest = quant::roundToNearest(p);
    const Eigen::MatrixXi learned = quant::adaRound(p, o);
    const double e_nearest = quant::reconstructionError(p, nearest);
    const double e_learned = quant::reconstructionError(p, learned);
    std::printf("%d-bit: output MSE nearest %.4e, AdaRound %.4e\n", bits, e_nearest, e_learned);
    EXPECT_LT(e_learned, 0.8 * e_nearest) << bits << " bits";
    for (Eigen::Index i = 0; i < learned.size(); ++i) {
      const float x = p.weights(i) / p.scales(i);
      EXPECT_GE(learned(i), p.qmin);
      EXPECT_LE(learned(i), p.qmax);
      EXPECT_TRUE(learned(i) == int(std::floor(x)) || learned(i) == int(std::floor(x)) + 1)
          << "element " << i << ": " << x << " -> " << learned(i);
    }
  }
}

// With an identity input moment (white inputs) the output error is the weight error itself,
// which nearest rounding already minimises: AdaRound cannot do better, and must not do worse by
// more than the few elements its regulariser flips near 0.5.
TEST(AdaRound, WhiteInputsStayNearNearest) {
  quant::RoundingProblem p = makeProblem(4, 16, 4, 9);
  p.gram = {Eigen::MatrixXf::Identity(16, 16)};
  quant::AdaRoundOptions o;
  o.iterations = 1000;
  const double e_nearest = quant::reconstructionError(p, quant::roundToNearest(p));
  const double e_learned = quant::reconstructionError(p, quant::adaRound(p, o));
  EXPECT_GE(e_learned, e_nearest * (1 - 1e-6));
  EXPECT_LT(e_learned, e_nearest * 1.1);
}

}  // namespace
}  // namespace nnc
