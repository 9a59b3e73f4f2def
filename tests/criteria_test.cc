// The data-driven criteria pick exactly the units the METHODS.md formulas pick, on tiny graphs
// whose feature maps and weights are chosen so that the expected scores can be computed by hand
// (the arithmetic is in the comments).

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <random>

#include "model_text.h"
#include "nncompress/analysis/channel_groups.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/prune/criteria.h"
#include "nncompress/prune/feature_stats.h"

namespace nnc {
namespace {

Model parse(const std::string& text) { return testing::parseModelText(text); }

// x[1,2,2,2] -> Conv w1 (4 units, 1x1) -> Relu -> Conv w2 -> y. The group of w1's output is the
// one under test (w2 feeds the graph output, so its group is not prunable).
Model twoConvModel(const std::string& w1, const std::string& w2, const std::string& w2_shape,
                   const std::string& w2_attrs = "") {
  return parse(
      "<ir_version: 8, opset_import: [\"\" : 13]>\n"
      "g (float[1,2,2,2] x) => (y)\n"
      "<float[4,2,1,1] w1 = {" +
      w1 + "}, float[" + w2_shape + "] w2 = {" + w2 +
      "}>\n"
      "{\n a = Conv (x, w1)\n r = Relu (a)\n y = Conv " +
      w2_attrs + " (r, w2)\n}\n");
}

const ChannelGroup& unitGroup(const ChannelAnalysis& a) {
  for (const ChannelGroup& g : a.groups)
    for (const Node* n : g.sources)
      if (n->output(0)->name() == "a") return g;
  ADD_FAILURE() << "no group for 'a'";
  return a.groups.front();
}

// One fixed calibration sample: channel 0 = [1 2; 3 4], channel 1 = [4 3; 2 1].
class FixedReader : public data::SampleReader {
 public:
  int64_t size() const override { return 1; }
  Shape sampleShape() const override { return {2, 2, 2}; }
  StatusOr<Tensor> readBatch(int64_t, int64_t) override {
    return Tensor::fromVector<float>({1, 2, 2, 2}, {1, 2, 3, 4, 4, 3, 2, 1});
  }
  std::string description() const override { return "fixed"; }
};

FeatureStats statsOf(const Model& m, const ChannelAnalysis& a, StatsNeeds needs) {
  FixedReader reader;
  CalibrationSource calib;
  calib.reader = &reader;
  calib.count = 1;
  calib.num_threads = 1;
  auto stats = collectFeatureStats(m, statsRequestsFor(a, needs), calib);
  EXPECT_TRUE(stats.isOk()) << stats.status().toString();
  return std::move(stats).value();
}

std::unique_ptr<Criterion> crit(const std::string& name, const CriterionOptions& o = {}) {
  auto c = makeCriterion(name, o);
  EXPECT_TRUE(c.isOk()) << c.status().toString();
  return std::move(c).value();
}

std::vector<double> scoresOf(Criterion& c, const ChannelGroup& g) {
  auto s = c.score(g);
  EXPECT_TRUE(s.isOk()) << s.status().toString();
  return s.isOk() ? *s : std::vector<double>{};
}

std::vector<int64_t> removedAt(const std::vector<double>& scores, int64_t remove) {
  const auto keep = topChannels(scores, static_cast<int64_t>(scores.size()) - remove);
  std::vector<int64_t> removed;
  for (int64_t c = 0; c < static_cast<int64_t>(scores.size()); ++c)
    if (!std::binary_search(keep.begin(), keep.end(), c)) removed.push_back(c);
  return removed;
}

// Producer rows u0 = (3, 0), u1 = (0, 1), u2 = (0, 2), u3 = (3.5, 0.4); consumer w2 = 1 for all.
// Importance (l2, each member / its mean): producer norms 3, 1, 2, 3.523 -> u1 is least: c1 = 1.
// Unit vectors: producer slices / ||w1||_F (= sqrt(26.41) = 5.139), consumer slices / ||w2||_F
// (= 2), concatenated and scaled to unit length:
//   u0 ~ (0.584, 0, 0.5), u1 ~ (0, 0.195, 0.5), u2 ~ (0, 0.389, 0.5), u3 ~ (0.681, 0.078, 0.5)
// Distances: D(1,2) = 0.289 (the near-duplicate: c2 = 2), then from u2: D(2,3) = 0.978 <
// D(2,0) = 0.987, so c3 = 3, and c4 = 0. Plain l2 would clip 1, 2, 0 (u3 is the largest).
TEST(SimilarityChainTest, ClipsTheChainOfNearestUnits) {
  Model m = twoConvModel("3, 0, 0, 1, 0, 2, 3.5, 0.4", "1, 1, 1, 1", "1,4,1,1");
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup& g = unitGroup(a);
  ASSERT_TRUE(g.prunable) << g.reason;
  auto chain = makeCriterion("similarity-chain", CriterionOptions{});
  ASSERT_TRUE(chain.isOk());
  auto scores = (*chain)->score(g);
  ASSERT_TRUE(scores.isOk()) << scores.status().toString();
  EXPECT_EQ(*scores, (std::vector<double>{3, 0, 1, 2}));  // clip order 1, 2, 3, 0
  EXPECT_EQ(removedAt(*scores, 3), (std::vector<int64_t>{1, 2, 3}));
  auto d = unitDistances(g, "weights", nullptr);
  ASSERT_TRUE(d.isOk());
  EXPECT_NEAR((*d)[1 * 4 + 2], 0.2892, 1e-3);
  EXPECT_NEAR((*d)[2 * 4 + 3], 0.9784, 1e-3);
  EXPECT_NEAR((*d)[2 * 4 + 0], 0.9866, 1e-3);
  EXPECT_EQ(removedAt(scoresOf(*crit("l2"), g), 3), (std::vector<int64_t>{0, 1, 2}));
}

TEST(SimilarityChainTest, OrderFollowsNearestPrevious) {
  // importance: unit 2 first; from 2 the nearest is 0 (0.1), from 0 the nearest left is 3 (0.2).
  const std::vector<double> importance = {5, 4, 1, 3};
  const std::vector<double> d = {0,   0.9, 0.1, 0.2,  //
                                 0.9, 0,   0.5, 0.3,  //
                                 0.1, 0.5, 0,   0.8,  //
                                 0.2, 0.3, 0.8, 0};
  EXPECT_EQ(similarityChainOrder(importance, d), (std::vector<int64_t>{2, 0, 3, 1}));
}

// Merge folds a removed unit into its nearest kept twin: removing u1 (nearest kept: u2) adds
// scale * w2[:, 1] into w2[:, 2]; without data scale = 1, so w2 becomes (1, 1, 2, 1).
TEST(SimilarityChainTest, MergeAddsConsumerWeightsIntoTheTwin) {
  Model m = twoConvModel("3, 0, 0, 1, 0, 2, 3.5, 0.4", "1, 1, 1, 1", "1,4,1,1");
  const ChannelAnalysis a = analyzeChannels(m);
  auto chain = makeCriterion("similarity-chain", CriterionOptions{});
  ASSERT_TRUE((*chain)->score(unitGroup(a)).isOk());
  auto merged = (*chain)->mergeRemoved(a, {{unitGroup(a).id, {0, 2, 3}}});
  ASSERT_TRUE(merged.isOk()) << merged.status().toString();
  ASSERT_EQ(merged->size(), 1u);
  EXPECT_EQ((*merged)[0].removed, 1);
  EXPECT_EQ((*merged)[0].into, 2);
  const auto w2 = m.graph->findValue("w2")->constantData()->data<float>();
  EXPECT_EQ(std::vector<float>(w2.begin(), w2.end()), (std::vector<float>{1, 1, 2, 1}));
}

// Units (producer rows): u0 = (1, 0), u1 = (0, 1), u2 = (2, 0), u3 = (1, 1); inputs and weights
// are non-negative so Relu is the identity and the maps are
//   f0 = [1 2 3 4], f1 = [4 3 2 1], f2 = [2 4 6 8], f3 = [5 5 5 5].
// Activeness A = std: 1.118, 1.118, 2.236, 0 -> minmax 0.5, 0.5, 1, 0.
// cos(f0, f2) = 1, cos(f0, f1) = cos(f1, f2) = 20/30, cos(f_j, f3) = 50/(sqrt(30)*10) = 0.9129
// (j = 0, 1) and 100/(sqrt(120)*10) = 0.9129 (j = 2).
// S_j = min_k (1 - cos): 0, 0.0871, 0, 0.0871 -> minmax 0, 1, 0, 1.
// alpha = 0.6: importance = 0.6 A + 0.4 S = 0.3, 0.7, 0.6, 0.4: removing 2 drops u0 and u3.
// (l2 on the weights would drop u0 and u1, the smallest rows.)
TEST(ActivationCriterionTest, ActivenessAndSubstitutability) {
  Model m = twoConvModel("1, 0, 0, 1, 2, 0, 1, 1", "1, 1, 1, 1", "1,4,1,1");
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup& g = unitGroup(a);
  auto src = groupFeatureSource(g);
  ASSERT_TRUE(src.has_value());
  EXPECT_EQ(src->value->name(), "r");  // after the nonlinearity, what the consumer reads
  const FeatureStats stats = statsOf(m, a, {.cosine = true});
  const TensorStats* ts = stats.find(src->value);
  ASSERT_NE(ts, nullptr);
  EXPECT_NEAR(ts->mean_std[2], std::sqrt(5.0), 1e-6);
  EXPECT_NEAR(ts->cosine(0, 1), 20.0 / 30.0, 1e-6);
  EXPECT_NEAR(ts->cosine(0, 2), 1.0, 1e-6);
  CriterionOptions o;
  o.alpha = 0.6;
  o.stats = &stats;
  auto scores = crit("activation", o)->score(g);
  ASSERT_TRUE(scores.isOk()) << scores.status().toString();
  const std::vector<double> expected = {0.3, 0.7, 0.6, 0.4};
  for (int c = 0; c < 4; ++c) EXPECT_NEAR((*scores)[c], expected[c], 1e-3) << "unit " << c;
  EXPECT_EQ(removedAt(*scores, 2), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(removedAt(scoresOf(*crit("l2"), g), 2), (std::vector<int64_t>{0, 1}));
}

// Same maps; 1x1 consumer w2[o, u] = [[1, 1, 0.6, 0.1], [1, 0, 0.5, 0.3]].
// c_u = sum_o w2[o,u]^2 * E||f_u||^2 with ||f||^2 = 30, 30, 120, 100:
//   c = 2 * 30 = 60, 1 * 30 = 30, 0.61 * 120 = 73.2, 0.1 * 100 = 10 -> removing 2 drops u3, u1.
TEST(ContributionCriterionTest, OneByOneConsumer) {
  Model m = twoConvModel("1, 0, 0, 1, 2, 0, 1, 1", "1, 1, 0.6, 0.1, 1, 0, 0.5, 0.3", "2,4,1,1");
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup& g = unitGroup(a);
  const FeatureStats stats = statsOf(m, a, {.consumers = true});
  CriterionOptions o;
  o.stats = &stats;
  auto scores = crit("contribution", o)->score(g);
  ASSERT_TRUE(scores.isOk()) << scores.status().toString();
  // One consumer: scores are c_u divided by their mean (173.2 / 4 = 43.3).
  const std::vector<double> raw = {60, 30, 73.2, 10};
  for (int c = 0; c < 4; ++c) EXPECT_NEAR((*scores)[c], raw[c] / 43.3, 1e-6) << "unit " << c;
  EXPECT_EQ(removedAt(*scores, 2), (std::vector<int64_t>{1, 3}));
}

// A 1x2 consumer kernel (a, b) = w2[0, u, 0, :] with full padding (pads 0,1,0,1) sees every
// product of neighbours, so the formula is exact:
//   c_u = (a^2 + b^2) R(0) + 2 a b R(1), R(d) = sum_q f(q) f(q + d) along rows.
// f0 = [1 2; 3 4]: R(0) = 30, R(1) = 1*2 + 3*4 = 14. With (a, b) = (1, -1) for u0:
//   c_0 = 2 * 30 - 2 * 14 = 32, which is also the brute force sum over the 2x3 output
//   [-1, -1, 2; -3, -1, 4]^2 = 1 + 1 + 4 + 9 + 1 + 16 = 32.
TEST(ContributionCriterionTest, KernelCrossTermsUseAutocorrelation) {
  // u0: (1, -1); u1: (1, 0); u2: (0, 0); u3: (0, 0).
  Model m = twoConvModel("1, 0, 0, 1, 2, 0, 1, 1", "1, -1, 1, 0, 0, 0, 0, 0", "1,4,1,2",
                         "<pads = [0, 1, 0, 1]>");
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup& g = unitGroup(a);
  const FeatureStats stats = statsOf(m, a, {.consumers = true});
  const TensorStats* ts = stats.find(m.graph->findValue("r"));
  ASSERT_NE(ts, nullptr);
  EXPECT_NEAR(ts->autocorrAt(0, 0, 1), 14.0, 1e-9);
  EXPECT_NEAR(ts->autocorrAt(0, 0, -1), 14.0, 1e-9);
  CriterionOptions o;
  o.stats = &stats;
  auto scores = crit("contribution", o)->score(g);
  ASSERT_TRUE(scores.isOk()) << scores.status().toString();
  // raw c = 32, 30 (u1: a = 1, b = 0 -> R(0) = 30), 0, 0; mean 15.5.
  EXPECT_NEAR((*scores)[0], 32 / 15.5, 1e-6);
  EXPECT_NEAR((*scores)[1], 30 / 15.5, 1e-6);
}

TEST(CriteriaRegistryTest, EveryNameMakesACriterion) {
  for (const std::string& name : criterionNames()) {
    auto c = makeCriterion(name);
    ASSERT_TRUE(c.isOk()) << name;
    EXPECT_EQ((*c)->name(), name);
  }
  EXPECT_FALSE(makeCriterion("nope").isOk());
}

TEST(CriteriaTest, BnGammaAndFpgmOnAGroupWithBatchNorm) {
  Model m = parse(
      "<ir_version: 8, opset_import: [\"\" : 13]>\n"
      "g (float[1,2,2,2] x) => (y)\n"
      "<float[3,2,1,1] w1 = {1, 0, 0, 1, 1, 1}, float[3] s = {0.5, -2, 1}, float[3] b = {0, 0, 0},"
      " float[3] mu = {0, 0, 0}, float[3] v = {1, 1, 1}, float[1,3,1,1] w2 = {1, 1, 1}>\n"
      "{\n a = Conv (x, w1)\n n = BatchNormalization (a, s, b, mu, v)\n y = Conv (n, w2)\n}\n");
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup& g = unitGroup(a);
  auto bn = crit("bn-gamma")->score(g);
  ASSERT_TRUE(bn.isOk());
  // |gamma| = 0.5, 2, 1, mean 7/6.
  EXPECT_NEAR((*bn)[0], 0.5 / (3.5 / 3), 1e-9);
  EXPECT_EQ(removedAt(*bn, 1), (std::vector<int64_t>{0}));
  auto fpgm = crit("fpgm")->score(g);
  ASSERT_TRUE(fpgm.isOk());
  // u2 = (1, 1) lies between u0 = (1, 0) and u1 = (0, 1): the smallest total distance.
  EXPECT_EQ(removedAt(*fpgm, 1), (std::vector<int64_t>{2}));
}

// Attention heads (h = 2 of d = 2, tokens [T, 1, 4]): a head's score sums its columns in all
// three parts of the joint projection (q, k and v: 3 tiles of stride 4, repeat 2) and its input
// columns of the out-projection, each member normalised by its mean.
TEST(CriteriaTest, L1ScoresAttentionHeadsFromEveryMember) {
  std::string w_in;
  for (int row = 0; row < 4; ++row)
    for (int col = 0; col < 12; ++col)
      w_in += std::string(w_in.empty() ? "" : ",") + (col >= 10 ? "5" : "1");  // v of head 1
  Model m = parse(
      "<ir_version: 8, opset_import: [\"\" : 13]>\n"
      "g (float[3,1,4] x) => (y)\n"
      "<float[4,12] win = {" +
      w_in +
      "}, float[4,4] wout = {1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1}, int64[1] s0 = {0}, int64[1] s1 = "
      "{4}, int64[1] s2 = {8}, int64[1] s3 = {12}, int64[1] ax = {-1}, int64[3] th = {3, 2, 2}, "
      "int64[2] tm = {3, 4}>\n"
      "{\n a = MatMul (x, win)\n q = Slice (a, s0, s1, ax)\n k = Slice (a, s1, s2, ax)\n"
      " v = Slice (a, s2, s3, ax)\n qh = Reshape (q, th)\n qt = Transpose <perm = [1, 0, 2]> (qh)\n"
      " kh = Reshape (k, th)\n kt = Transpose <perm = [1, 2, 0]> (kh)\n s = MatMul (qt, kt)\n"
      " p = Softmax <axis = -1> (s)\n vh = Reshape (v, th)\n vt = Transpose <perm = [1, 0, 2]> "
      "(vh)\n"
      " o = MatMul (p, vt)\n ot = Transpose <perm = [1, 0, 2]> (o)\n om = Reshape (ot, tm)\n"
      " y = Gemm <transB = 1> (om, wout)\n}\n");
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup& g = unitGroup(a);
  ASSERT_TRUE(g.prunable) << g.reason;
  ASSERT_EQ(g.channels, 2);
  auto l1 = crit("l1")->score(g);
  ASSERT_TRUE(l1.isOk());
  // win: head 0 has 3 x 2 columns of four 1s (24), head 1 16 + 2 x 4 x 5 = 56; mean 40.
  // wout: 8 and 8. Scores 24/40 + 1 and 56/40 + 1.
  EXPECT_NEAR((*l1)[0], 1.6, 1e-9);
  EXPECT_NEAR((*l1)[1], 2.4, 1e-9);
}

// Random samples [3, 9, 11] (odd sizes: edges on every side of every offset).
class RandomReader : public data::SampleReader {
 public:
  int64_t size() const override { return 5; }
  Shape sampleShape() const override { return {3, 9, 11}; }
  StatusOr<Tensor> readBatch(int64_t first, int64_t count) override {
    Tensor t(DType::kFloat32, {count, 3, 9, 11});
    std::mt19937 rng(static_cast<uint32_t>(first));
    std::normal_distribution<float> normal;
    for (float& v : t.mutableData<float>()) v = normal(rng);
    return t;
  }
  std::string description() const override { return "random"; }
};

// The autocorrelation, side by side per row for speed, is bit for bit the plain sum over y, then
// x, of each offset on its own, for the specialised radii and the generic path.
TEST(FeatureStatsTest, AutocorrelationEqualsThePlainSumPerOffset) {
  Model m = parse(
      "<ir_version: 8, opset_import: [\"\" : 13]>\n"
      "g (float[N,3,9,11] x) => (r)\n{\n r = Relu (x)\n}\n");
  const Value* r = m.graph->findValue("r");
  RandomReader reader;
  CalibrationSource calib;
  calib.reader = &reader;
  calib.count = 5;
  calib.batch = 2;
  calib.num_threads = 1;
  for (const auto& [rh, rw] : std::vector<std::pair<int64_t, int64_t>>{{2, 2}, {1, 3}, {3, 5}}) {
    TensorStatsRequest request;
    request.value = r;
    request.radius_h = rh;
    request.radius_w = rw;
    auto stats = collectFeatureStats(m, {request}, calib);
    ASSERT_TRUE(stats.isOk()) << stats.status().toString();
    const TensorStats* ts = stats->find(r);
    ASSERT_NE(ts, nullptr);
    std::vector<double> want((2 * rh + 1) * (2 * rw + 1) * 3, 0.0);
    for (int64_t first = 0; first < 5; first += 2) {
      const Tensor batch = reader.readBatch(first, std::min<int64_t>(2, 5 - first)).value();
      for (int64_t i = 0; i < batch.dim(0); ++i)
        for (int64_t c = 0; c < 3; ++c) {
          std::vector<float> f(99);
          for (int64_t q = 0; q < 99; ++q)
            f[q] = std::max(0.f, batch.data<float>()[(i * 3 + c) * 99 + q]);
          for (int64_t dy = -rh; dy <= rh; ++dy)
            for (int64_t dx = -rw; dx <= rw; ++dx) {
              double acc = 0;
              for (int64_t y = std::max<int64_t>(0, -dy); y < std::min<int64_t>(9, 9 - dy); ++y)
                for (int64_t x = std::max<int64_t>(0, -dx); x < std::min<int64_t>(11, 11 - dx); ++x)
                  acc += double(f[y * 11 + x]) * f[(y + dy) * 11 + x + dx];
              want[(c * (2 * rh + 1) + dy + rh) * (2 * rw + 1) + dx + rw] += acc;
            }
        }
    }
    for (double& w : want) w *= 1.0 / 5;  // as collectFeatureStats averages
    ASSERT_EQ(ts->autocorr.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_EQ(ts->autocorr[i], want[i]) << "radius " << rh << "x" << rw << " entry " << i;
  }
}

}  // namespace
}  // namespace nnc
