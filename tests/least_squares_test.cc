// The normal equations of least-squares recovery (src/prune/least_squares.h, gram_band.h):
// - the banded update equals X^T X and X^T T computed directly, with either instruction set;
// - the sums do not depend on the thread count (bit for bit), so results do not either.

#include <gtest/gtest.h>

#include <random>

#include "../src/prune/gram_band.h"
#include "../src/prune/least_squares.h"

namespace nnc::lsq {
namespace {

RowMatrixD randomMatrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  RowMatrixD m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

// Bands [0, 50), [50, 130), [130, features) of one update, with `band`.
void addInBands(void (*band)(const GramUpdate&, int64_t, int64_t), const RowMatrixD& x,
                const RowMatrixD& t, MatrixD& gram, MatrixD& cross) {
  GramUpdate u{x.data(), t.data(), gram.data(), cross.data(), x.rows(), x.cols(), t.cols()};
  band(u, 0, 50);
  band(u, 50, 130);
  band(u, 130, x.cols());
}

TEST(GramBandTest, EqualsTheDirectProductsWithEveryInstructionSet) {
  const RowMatrixD x = randomMatrix(300, 157, 1), t = randomMatrix(300, 9, 2);
  const MatrixD want_gram = x.transpose() * x, want_cross = x.transpose() * t;
  std::vector<void (*)(const GramUpdate&, int64_t, int64_t)> bands = {addGramBandBaseline};
  if (gramAvx2Supported()) bands.push_back(addGramBandAvx2);
  for (auto band : bands) {
    MatrixD gram = MatrixD::Zero(157, 157), cross = MatrixD::Zero(157, 9);
    addInBands(band, x, t, gram, cross);
    addInBands(band, x, t, gram, cross);  // accumulates
    for (int64_t j = 0; j < 157; ++j)
      for (int64_t i = j; i < 157; ++i)  // the lower triangle is what is kept
        EXPECT_NEAR(gram(i, j), 2 * want_gram(i, j), 1e-10) << i << "," << j;
    EXPECT_LT((cross - 2 * want_cross).cwiseAbs().maxCoeff(), 1e-10);
  }
}

TEST(NormalEquationsTest, ResultsDoNotDependOnTheThreadCount) {
  const int64_t features = 200, outputs = 7;
  NormalEquations one(features, outputs), three(features, outputs);
  for (uint32_t batch = 0; batch < 3; ++batch) {
    const RowMatrixD x = randomMatrix(5000, features, 10 + batch);
    const RowMatrixD t = randomMatrix(5000, outputs, 20 + batch);
    one.add(x, t, 1);
    three.add(x, t, 3);
  }
  const MatrixD w0 = MatrixD::Zero(features, outputs);
  const auto a = one.solve(w0, 1e-3), b = three.solve(w0, 1e-3);
  ASSERT_TRUE(a.isOk() && b.isOk());
  EXPECT_TRUE(a.value() == b.value());  // bit for bit
  EXPECT_EQ(one.relativeError(a.value()), three.relativeError(b.value()));
  EXPECT_EQ(one.rows(), 15000);
}

}  // namespace
}  // namespace nnc::lsq
