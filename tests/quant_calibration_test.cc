// Calibration statistics: the streaming histogram (fixed memory, range doubling keeps counts),
// each method's range on data with known shape, and quantizer parameters.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "nncompress/quant/calibration.h"

namespace nnc::quant {
namespace {

double sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

TEST(TensorHistogram, FixedSizeAndCountsKeptWhenRangeGrows) {
  TensorHistogram h;
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.f, 1.f);
  for (int batch = 0; batch < 50; ++batch) {
    std::vector<float> v(1000);
    for (float& x : v) x = d(rng) * float(1 + batch);  // the range keeps growing
    h.add(v);
    ASSERT_EQ(h.bins().size(), size_t(TensorHistogram::kHistogramBins));
  }
  EXPECT_EQ(h.count(), 50000);
  EXPECT_DOUBLE_EQ(sum(h.bins()) + double(h.zeros()), 50000.0);
  EXPECT_GE(h.halfRange(), std::max(std::abs(h.min()), std::abs(h.max())));
}

TEST(TensorHistogram, MinMaxIsExact) {
  TensorHistogram h;
  h.add(std::vector<float>{0.5f, -0.25f, 3.f});
  h.add(std::vector<float>{-7.f, 1.f});
  const Range r = h.range(CalibMethod::kMinMax, false, 8);
  EXPECT_EQ(r.lo, -7.f);
  EXPECT_EQ(r.hi, 3.f);
}

// NaN and +-inf are counted apart and never reach min, max or the bins, also when a batch starts
// with one or holds nothing else.
TEST(TensorHistogram, IgnoresAndCountsNonFiniteValues) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  TensorHistogram h;
  h.add(std::vector<float>{nan, 0.5f, -inf, -0.25f, 3.f});
  h.add(std::vector<float>{inf, nan});
  h.add(std::vector<float>{inf, -7.f, 0.f});
  EXPECT_EQ(h.nonFinite(), 5);
  EXPECT_EQ(h.count(), 5);
  EXPECT_DOUBLE_EQ(sum(h.bins()) + double(h.zeros()), 5.0);
  for (CalibMethod m :
       {CalibMethod::kMinMax, CalibMethod::kPercentile, CalibMethod::kEntropy, CalibMethod::kMse}) {
    const Range r = h.range(m, false, 8);
    EXPECT_TRUE(std::isfinite(r.lo) && std::isfinite(r.hi)) << calibMethodName(m);
    EXPECT_GE(r.lo, -7.f);
    EXPECT_LE(r.hi, 3.f);
  }
  EXPECT_EQ(h.range(CalibMethod::kMinMax, false, 8).lo, -7.f);
  EXPECT_EQ(h.range(CalibMethod::kMinMax, false, 8).hi, 3.f);
}

// ReLU-like data with a few huge outliers: percentile, entropy and MSE clip them, minmax not.
class ClippingMethods : public ::testing::TestWithParam<CalibMethod> {};

TEST_P(ClippingMethods, ClipRareOutliers) {
  TensorHistogram h;
  std::mt19937 rng(2);
  std::exponential_distribution<float> d(1.f);
  std::vector<float> v(200000);
  for (float& x : v) x = d(rng);
  v[0] = 200.f;
  v[1] = 150.f;
  h.add(v);
  const Range r = h.range(GetParam(), false, 8);
  EXPECT_GE(r.lo, 0.f);
  EXPECT_GT(r.hi, 4.f) << calibMethodName(GetParam());   // keeps the bulk (P(x > 4) = 1.8%)
  EXPECT_LT(r.hi, 40.f) << calibMethodName(GetParam());  // drops the outliers
}

INSTANTIATE_TEST_SUITE_P(Methods, ClippingMethods,
                         ::testing::Values(CalibMethod::kPercentile, CalibMethod::kEntropy),
                         [](const auto& info) { return calibMethodName(info.param); });

// MSE picks the range whose quantization error, measured on the samples themselves, is no worse
// than the other methods' ranges (Laplace data: a tail worth clipping a little).
TEST(TensorHistogram, MseRangeHasLowestError) {
  TensorHistogram h;
  std::mt19937 rng(3);
  std::exponential_distribution<float> d(1.f);
  std::bernoulli_distribution sign(0.5);
  std::vector<float> v(100000);
  for (float& x : v) x = sign(rng) ? d(rng) : -d(rng);
  h.add(v);
  auto error = [&](Range r) {
    const QParams q = chooseQParams(r, true, 4);
    double e = 0;
    for (float x : v) e += (x - fakeQuantize(x, q)) * double(x - fakeQuantize(x, q));
    return e;
  };
  const double mse = error(h.range(CalibMethod::kMse, true, 4));
  for (CalibMethod m : {CalibMethod::kMinMax, CalibMethod::kPercentile, CalibMethod::kEntropy})
    EXPECT_LE(mse, error(h.range(m, true, 4)) * 1.001) << calibMethodName(m);
  EXPECT_LT(h.range(CalibMethod::kMse, true, 4).hi, 0.8f * h.max());
}

TEST(TensorHistogram, UniformDataKeepsFullRange) {
  TensorHistogram h;
  std::vector<float> v(100000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = -1.f + 2.f * float(i) / float(v.size() - 1);
  h.add(v);
  for (CalibMethod m : {CalibMethod::kPercentile, CalibMethod::kEntropy, CalibMethod::kMse}) {
    const Range r = h.range(m, true, 8);
    EXPECT_NEAR(r.hi, 1.f, 0.05) << calibMethodName(m);
    EXPECT_NEAR(r.lo, -1.f, 0.05) << calibMethodName(m);
  }
}

TEST(QParams, AsymmetricUint8IncludesZeroExactly) {
  const QParams q = chooseQParams({0.5f, 6.f}, false, 8);
  EXPECT_EQ(q.qmin, 0);
  EXPECT_EQ(q.qmax, 255);
  EXPECT_EQ(q.zero_point, 0);
  EXPECT_FLOAT_EQ(q.scale, 6.f / 255);
  const QParams a = chooseQParams({-1.f, 3.f}, false, 8);
  EXPECT_FLOAT_EQ(a.scale, 4.f / 255);
  EXPECT_EQ(a.zero_point, 64);
  EXPECT_EQ(fakeQuantize(0.f, a), 0.f);
  EXPECT_NEAR(fakeQuantize(10.f, a), 3.f, a.scale);  // saturates
}

TEST(QParams, SymmetricInt8) {
  const QParams q = chooseQParams({-2.f, 1.f}, true, 8);
  EXPECT_EQ(q.qmin, -127);
  EXPECT_EQ(q.qmax, 127);
  EXPECT_EQ(q.zero_point, 0);
  EXPECT_FLOAT_EQ(q.scale, 2.f / 127);
  EXPECT_FLOAT_EQ(fakeQuantize(-2.f, q), -2.f);
}

TEST(CalibMethodNames, ParseRoundTrip) {
  for (const char* n : {"minmax", "percentile", "entropy", "mse"}) {
    auto m = parseCalibMethod(n);
    ASSERT_TRUE(m.isOk());
    EXPECT_STREQ(calibMethodName(*m), n);
  }
  EXPECT_FALSE(parseCalibMethod("kl").isOk());
}

}  // namespace
}  // namespace nnc::quant
