// Recovery after pruning (src/prune/recovery.cc):
// - least squares recovers a removed channel that is an exact linear combination of kept ones
//   (through Conv with pads/strides/dilations/auto_pad, Gemm with alpha/beta/transB, MatMul),
//   on the calibration data and on unseen data;
// - BatchNorm re-estimation leaves every BN holding exactly the statistics of its input (the
//   fixed point a sequential re-estimation must reach; the single-pass variant does not);
// - on the resnet fixture pruned 50% per group (l1), lsq recovery restores far more accuracy and
//   fidelity than none or bn, and the recovered model passes the ONNX checker and matches ORT;
// - staged calibration passes (activations kept between the per-level passes) give every stage
//   exactly the values a pass from the model input gives, and least squares writes the same
//   weights with and without the activation cache.

#include "nncompress/prune/recovery.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "../src/prune/calibration_passes.h"
#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/prune/criteria.h"
#include "ort_util.h"
#include "tensor_reader.h"

namespace nnc {
namespace {

using testing::TensorReader;

Tensor randomTensor(Shape shape, uint32_t seed, float scale = 1.f) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, scale);
  for (float& v : t.mutableData<float>()) v = normal(rng);
  return t;
}

Value* addInput(Graph& g, const std::string& name, Shape sample_shape) {
  Value* v = g.createValue(name).value();
  ValueType t;
  t.dtype = DType::kFloat32;
  std::vector<Dim> dims{Dim::symbol("N")};
  for (int64_t d : sample_shape) dims.push_back(Dim::known(d));
  t.shape = dims;
  v->setType(t);
  g.addInput(v);
  return v;
}

Model emptyModel() {
  Model m;
  m.opset_imports = {{"", 13}};
  return m;
}

// Runs `model` on all of `x` in one batch.
Tensor runModel(const Model& model, const Tensor& x) {
  auto ex = exec::Executor::create(model, {1});
  EXPECT_TRUE(ex.isOk()) << ex.status().toString();
  auto out = (*ex)->run({x});
  EXPECT_TRUE(out.isOk()) << out.status().toString();
  return std::move((*out)[0]);
}

const ChannelGroup* groupOf(const ChannelAnalysis& a, const std::string& source_output) {
  for (const ChannelGroup& g : a.groups)
    for (const Node* n : g.sources)
      if (n->output(0)->name() == source_output) return &g;
  return nullptr;
}

// The copy that surgery prunes (analysed afresh: analysis describes the model it is applied to).
Model prunedCopy(const Model& original, const std::vector<GroupKeep>& plan) {
  auto copy = cloneModel(original);
  EXPECT_TRUE(copy.isOk());
  const ChannelAnalysis analysis = analyzeChannels(*copy);
  Status st = applyChannelPruning(*copy, analysis, plan);
  EXPECT_TRUE(st.isOk()) << st.toString();
  return std::move(copy).value();
}

// The l1 criterion's plan removing `ratio` of every prunable group's channels.
StatusOr<std::vector<GroupKeep>> l1UniformPlan(const ChannelAnalysis& analysis, double ratio) {
  NNC_ASSIGN_OR_RETURN(auto criterion, makeCriterion("l1"));
  UniformPlanOptions options;
  options.ratio = ratio;
  return planUniformPruning(analysis, *criterion, options);
}

// Channel 2 of `w` (output axis 0) and of `b` become `factor` times channel 0.
void makeChannelTwoScaledCopyOfZero(Tensor& w, Tensor& b, float factor) {
  const int64_t per = w.numel() / w.dim(0);
  auto wd = w.mutableData<float>();
  for (int64_t i = 0; i < per; ++i) wd[2 * per + i] = factor * wd[i];
  b.mutableData<float>()[2] = factor * b.data<float>()[0];
}

struct ConvCase {
  const char* name;
  std::vector<int64_t> kernel, strides, dilations, pads;
  const char* auto_pad;
};

void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

class LeastSquaresConvTest : public ::testing::TestWithParam<ConvCase> {};

// x -> Conv(3 filters, filter 2 = 0.5 * filter 0) -> Relu -> Conv(case) -> y. Removing channel 2
// loses nothing a refit second conv cannot restore: relu(0.5 z) = 0.5 relu(z).
TEST_P(LeastSquaresConvTest, RecoversExactLinearCombination) {
  const ConvCase& c = GetParam();
  Model original = emptyModel();
  Graph& g = *original.graph;
  Value* x = addInput(g, "x", {2, 9, 7});
  Tensor w1 = randomTensor({3, 2, 3, 3}, 1), b1 = randomTensor({3}, 2, 0.3f);
  makeChannelTwoScaledCopyOfZero(w1, b1, 0.5f);
  Node* conv1 =
      g.addNode("Conv", {x, g.addInitializer("w1", w1), g.addInitializer("b1", b1)}, {"a"});
  conv1->setAttribute(Attribute::makeInts("pads", {1, 1, 1, 1}));
  Node* relu = g.addNode("Relu", {conv1->output(0)}, {"r"});
  Node* conv2 = g.addNode(
      "Conv",
      {relu->output(0), g.addInitializer("w2", randomTensor({4, 3, c.kernel[0], c.kernel[1]}, 3))},
      {"y"});
  conv2->setAttribute(Attribute::makeInts("kernel_shape", c.kernel));
  if (!c.strides.empty()) conv2->setAttribute(Attribute::makeInts("strides", c.strides));
  if (!c.dilations.empty()) conv2->setAttribute(Attribute::makeInts("dilations", c.dilations));
  if (!c.pads.empty()) conv2->setAttribute(Attribute::makeInts("pads", c.pads));
  if (c.auto_pad) conv2->setAttribute(Attribute::makeString("auto_pad", c.auto_pad));
  g.addOutput(conv2->output(0));
  ASSERT_TRUE(inferShapes(original).isOk());

  const ChannelAnalysis analysis = analyzeChannels(original);
  const ChannelGroup* group = groupOf(analysis, "a");
  ASSERT_NE(group, nullptr);
  ASSERT_TRUE(group->prunable) << group->reason;
  const std::vector<GroupKeep> plan = {{group->id, {0, 1}}};
  Model pruned = prunedCopy(original, plan);

  TensorReader reader(randomTensor({40, 2, 9, 7}, 4));
  CalibrationSource source{&reader, 40, 16, 1};  // 40 = 16 + 16 + 8: a short last batch
  LeastSquaresOptions options;
  options.ridge = 1e-10;
  options.max_positions_per_image = 20;  // fewer than the output positions: sampled
  auto layers = reconstructLeastSquares(original, pruned, analysis, plan, source, options);
  ASSERT_TRUE(layers.isOk()) << layers.status().toString();
  ASSERT_EQ(layers->size(), 1u);
  EXPECT_EQ((*layers)[0].layer, "y");
  EXPECT_GT((*layers)[0].error_before, 1e-3);
  EXPECT_LT((*layers)[0].error_after, 1e-9);
  EXPECT_EQ(pruned.graph->findValue("y")->producer()->numInputs(), 3u) << "bias added";

  // Exact on every position of the calibration data and of unseen data.
  for (uint32_t seed : {4u, 5u}) {
    const Tensor data = randomTensor({40, 2, 9, 7}, seed);
    const Tensor want = runModel(original, data), got = runModel(pruned, data);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LE(testing::relativeMaxError(got, want), 1e-5) << "data seed " << seed;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Geometries, LeastSquaresConvTest,
    ::testing::Values(ConvCase{"k3_pad1", {3, 3}, {}, {}, {1, 1, 1, 1}, nullptr},
                      ConvCase{"k3_stride2_asympad", {3, 3}, {2, 2}, {}, {0, 1, 2, 1}, nullptr},
                      ConvCase{"k3x2_dilated", {3, 2}, {1, 2}, {2, 1}, {2, 0, 1, 1}, nullptr},
                      ConvCase{"same_lower_stride2", {3, 3}, {2, 2}, {}, {}, "SAME_LOWER"},
                      ConvCase{"same_upper_k2", {2, 2}, {}, {}, {}, "SAME_UPPER"},
                      ConvCase{"k1_stride2_valid", {1, 1}, {2, 2}, {}, {}, "VALID"}),
    [](const ::testing::TestParamInfo<ConvCase>& info) { return std::string(info.param.name); });

// Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm(alpha, beta, transB): the Gemm reads
// pooled channels; the same exact combination must be found and written back through alpha/beta.
TEST(LeastSquaresTest, GemmAfterPoolingRecoversExactly) {
  Model original = emptyModel();
  Graph& g = *original.graph;
  Value* x = addInput(g, "x", {2, 5, 5});
  Tensor w1 = randomTensor({3, 2, 3, 3}, 11), b1 = randomTensor({3}, 12, 0.3f);
  makeChannelTwoScaledCopyOfZero(w1, b1, 2.0f);
  Node* conv =
      g.addNode("Conv", {x, g.addInitializer("w1", w1), g.addInitializer("b1", b1)}, {"a"});
  Node* relu = g.addNode("Relu", {conv->output(0)}, {"r"});
  Node* gap = g.addNode("GlobalAveragePool", {relu->output(0)}, {"p"});
  Node* flat = g.addNode("Flatten", {gap->output(0)}, {"f"});
  Node* gemm = g.addNode("Gemm",
                         {flat->output(0), g.addInitializer("w2", randomTensor({4, 3}, 13)),
                          g.addInitializer("c2", randomTensor({4}, 14))},
                         {"y"});
  gemm->setAttribute(Attribute::makeInt("transB", 1));
  gemm->setAttribute(Attribute::makeFloat("alpha", 2.f));
  gemm->setAttribute(Attribute::makeFloat("beta", 0.5f));
  g.addOutput(gemm->output(0));
  ASSERT_TRUE(inferShapes(original).isOk());
  const ChannelAnalysis analysis = analyzeChannels(original);
  const ChannelGroup* group = groupOf(analysis, "a");
  ASSERT_NE(group, nullptr);
  ASSERT_TRUE(group->prunable) << group->reason;
  const std::vector<GroupKeep> plan = {{group->id, {0, 1}}};
  Model pruned = prunedCopy(original, plan);

  TensorReader reader(randomTensor({64, 2, 5, 5}, 15));
  LeastSquaresOptions options;
  options.ridge = 1e-10;
  auto layers = reconstructLeastSquares(original, pruned, analysis, plan,
                                        CalibrationSource{&reader, 64, 20, 1}, options);
  ASSERT_TRUE(layers.isOk()) << layers.status().toString();
  ASSERT_EQ(layers->size(), 1u);
  EXPECT_GT((*layers)[0].error_before, 1e-3);
  EXPECT_LT((*layers)[0].error_after, 1e-9);
  const Tensor data = randomTensor({50, 2, 5, 5}, 16);
  EXPECT_LE(testing::relativeMaxError(runModel(pruned, data), runModel(original, data)), 1e-5);
}

// MatMul -> Relu -> MatMul on feature vectors (no bias: MatMul has none).
TEST(LeastSquaresTest, MatMulRecoversExactly) {
  Model original = emptyModel();
  Graph& g = *original.graph;
  Value* x = addInput(g, "x", {6});
  Tensor w1 = randomTensor({6, 3}, 21);
  auto w1d = w1.mutableData<float>();
  for (int64_t i = 0; i < 6; ++i) w1d[i * 3 + 2] = 3.f * w1d[i * 3];  // column 2 = 3 * column 0
  Node* mm1 = g.addNode("MatMul", {x, g.addInitializer("w1", w1)}, {"a"});
  Node* relu = g.addNode("Relu", {mm1->output(0)}, {"r"});
  Node* mm2 = g.addNode("MatMul",
                        {relu->output(0), g.addInitializer("w2", randomTensor({3, 4}, 22))}, {"y"});
  g.addOutput(mm2->output(0));
  ASSERT_TRUE(inferShapes(original).isOk());
  const ChannelAnalysis analysis = analyzeChannels(original);
  const ChannelGroup* group = groupOf(analysis, "a");
  ASSERT_NE(group, nullptr);
  ASSERT_TRUE(group->prunable) << group->reason;
  const std::vector<GroupKeep> plan = {{group->id, {0, 1}}};
  Model pruned = prunedCopy(original, plan);
  TensorReader reader(randomTensor({200, 6}, 23));
  LeastSquaresOptions options;
  options.ridge = 1e-10;
  auto layers = reconstructLeastSquares(original, pruned, analysis, plan,
                                        CalibrationSource{&reader, 200, 64, 1}, options);
  ASSERT_TRUE(layers.isOk()) << layers.status().toString();
  ASSERT_EQ(layers->size(), 1u);
  EXPECT_LT((*layers)[0].error_after, 1e-9);
  const Tensor data = randomTensor({50, 6}, 24);
  EXPECT_LE(testing::relativeMaxError(runModel(pruned, data), runModel(original, data)), 1e-5);
}

// r = Relu(ConvA(x)) loses a channel (not a combination of the others: information is lost);
// s = ConvS(r) is refit first; y = BN(ConvU(Relu(s))) + s. With residual compensation ConvU is
// fit to the Add's output (the least-squares optimum of that error on the calibration data), so
// the block output error there can only go down; a wrong sign or scale would raise it.
double residualBlockError(bool compensate) {
  Model original = emptyModel();
  Graph& g = *original.graph;
  Value* x = addInput(g, "x", {2, 6, 6});
  auto conv = [&](Value* in, int64_t out, int64_t cin, const std::string& name, uint32_t seed) {
    Node* n = g.addNode("Conv",
                        {in, g.addInitializer(name + "_w", randomTensor({out, cin, 3, 3}, seed)),
                         g.addInitializer(name + "_b", randomTensor({out}, seed + 1, 0.2f))},
                        {name});
    n->setAttribute(Attribute::makeInts("pads", {1, 1, 1, 1}));
    return n->output(0);
  };
  Value* r = g.addNode("Relu", {conv(x, 4, 2, "a", 61)}, {"r"})->output(0);
  Value* s = conv(r, 3, 4, "s", 63);
  Value* u = conv(g.addNode("Relu", {s}, {"rs"})->output(0), 3, 3, "u", 65);
  Tensor var = randomTensor({3}, 70);
  for (float& v : var.mutableData<float>()) v = 0.5f + std::abs(v);
  Node* bn =
      g.addNode("BatchNormalization",
                {u, g.addInitializer("bn_s", randomTensor({3}, 67)),
                 g.addInitializer("bn_b", randomTensor({3}, 68)),
                 g.addInitializer("bn_m", randomTensor({3}, 69)), g.addInitializer("bn_v", var)},
                {"bn"});
  g.addOutput(g.addNode("Add", {bn->output(0), s}, {"y"})->output(0));
  EXPECT_TRUE(inferShapes(original).isOk());
  const ChannelAnalysis analysis = analyzeChannels(original);
  const ChannelGroup* group = groupOf(analysis, "a");
  EXPECT_TRUE(group && group->prunable);
  if (!group) return 1;
  const std::vector<GroupKeep> plan = {{group->id, {0, 1, 3}}};
  Model pruned = prunedCopy(original, plan);
  const Tensor data = randomTensor({64, 2, 6, 6}, 71);
  TensorReader reader(data);
  LeastSquaresOptions options;
  options.compensate_residuals = compensate;
  auto layers = reconstructLeastSquares(original, pruned, analysis, plan,
                                        CalibrationSource{&reader, 64, 16, 1}, options);
  EXPECT_TRUE(layers.isOk()) << layers.status().toString();
  EXPECT_EQ(layers->size(), 2u);  // s (level 0), u (level 1)
  const Tensor want = runModel(original, data), got = runModel(pruned, data);
  double err = 0, ref = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    err += std::pow(got.data<float>()[i] - want.data<float>()[i], 2);
    ref += std::pow(want.data<float>()[i], 2);
  }
  return err / ref;
}

TEST(LeastSquaresTest, ResidualCompensationLowersTheBlockOutputError) {
  const double plain = residualBlockError(false), compensated = residualBlockError(true);
  std::printf("[ residual ] block output relative error: plain %.5f, compensated %.5f\n", plain,
              compensated);
  EXPECT_GT(plain, 1e-3);  // the lost channel costs something
  EXPECT_LT(compensated, plain);
}

TEST(LeastSquaresTest, RejectsBadArguments) {
  Model original = emptyModel();
  Graph& g = *original.graph;
  Value* x = addInput(g, "x", {6});
  Node* mm = g.addNode("MatMul", {x, g.addInitializer("w", randomTensor({6, 3}, 1))}, {"y"});
  g.addOutput(mm->output(0));
  ASSERT_TRUE(inferShapes(original).isOk());
  auto copy = cloneModel(original);
  ASSERT_TRUE(copy.isOk());
  const ChannelAnalysis analysis = analyzeChannels(original);
  TensorReader reader(randomTensor({8, 6}, 2));
  auto no_data = reconstructLeastSquares(original, *copy, analysis, {}, CalibrationSource{});
  EXPECT_EQ(no_data.status().code(), StatusCode::kInvalidArgument);
  auto bad_group = reconstructLeastSquares(original, *copy, analysis, {{99, {0}}},
                                           CalibrationSource{&reader, 8, 4, 1});
  EXPECT_EQ(bad_group.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(reestimateBatchNorm(*copy, CalibrationSource{&reader, 0, 4, 1}).code(),
            StatusCode::kInvalidArgument);
  // Nothing pruned: nothing to refit, the model stays as it was.
  auto none =
      reconstructLeastSquares(original, *copy, analysis, {}, CalibrationSource{&reader, 8, 4, 1});
  ASSERT_TRUE(none.isOk());
  EXPECT_TRUE(none->empty());
}

// Mean and biased variance per channel of every BatchNormalization input, computed directly.
std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> directBnStats(
    const Model& model, const Tensor& data) {
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> stats;
  std::set<std::string> bn_inputs;
  for (const auto& n : model.graph->nodes())
    if (n->isOp("BatchNormalization")) bn_inputs.insert(n->input(0)->name());
  auto ex = exec::Executor::create(model, {1});
  EXPECT_TRUE(ex.isOk());
  auto out = (*ex)->run({data}, [&](const Value& v, const Tensor& t) {
    if (!bn_inputs.count(v.name())) return;
    const int64_t n = t.dim(0), c = t.dim(1), inner = t.numel() / (n * c);
    std::vector<double> mean(c, 0.0), var(c, 0.0);
    const auto d = t.data<float>();
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t s = 0; s < n; ++s)
        for (int64_t i = 0; i < inner; ++i) mean[ch] += d[(s * c + ch) * inner + i];
      mean[ch] /= n * inner;
      for (int64_t s = 0; s < n; ++s)
        for (int64_t i = 0; i < inner; ++i)
          var[ch] += std::pow(d[(s * c + ch) * inner + i] - mean[ch], 2);
      var[ch] /= n * inner;
    }
    stats[v.name()] = {mean, var};
  });
  EXPECT_TRUE(out.isOk());
  return stats;
}

// Largest relative difference between each BN's stored mean/var and its input's statistics.
double bnStatsMismatch(const Model& model, const Tensor& data, const std::string& bn_output) {
  const auto stats = directBnStats(model, data);
  const Node* bn = model.graph->findValue(bn_output)->producer();
  const auto& [mean, var] = stats.at(bn->input(0)->name());
  const auto stored_mean = bn->input(3)->constantData()->data<float>();
  const auto stored_var = bn->input(4)->constantData()->data<float>();
  double worst = 0;
  for (size_t c = 0; c < mean.size(); ++c) {
    const double scale = std::sqrt(var[c]) + 1e-12;
    worst = std::max(worst, std::abs(stored_mean[c] - mean[c]) / scale);
    worst = std::max(worst, std::abs(stored_var[c] - var[c]) / var[c]);
  }
  return worst;
}

Model twoBatchNormModel() {
  Model m = emptyModel();
  Graph& g = *m.graph;
  Value* x = addInput(g, "x", {3, 6, 6});
  auto bn = [&](Value* in, int64_t c, const std::string& name, uint32_t seed) {
    Tensor var = randomTensor({c}, seed + 3);
    for (float& v : var.mutableData<float>()) v = 0.5f + std::abs(v);
    return g.addNode("BatchNormalization",
                     {in, g.addInitializer(name + "_s", randomTensor({c}, seed)),
                      g.addInitializer(name + "_b", randomTensor({c}, seed + 1)),
                      g.addInitializer(name + "_m", randomTensor({c}, seed + 2)),
                      g.addInitializer(name + "_v", var)},
                     {name});
  };
  Node* conv1 = g.addNode("Conv",
                          {x, g.addInitializer("w1", randomTensor({4, 3, 3, 3}, 31)),
                           g.addInitializer("b1", randomTensor({4}, 32))},
                          {"c1"});
  conv1->setAttribute(Attribute::makeInts("pads", {1, 1, 1, 1}));
  Node* bn1 = bn(conv1->output(0), 4, "bn1", 33);
  Node* relu = g.addNode("Relu", {bn1->output(0)}, {"r"});
  Node* conv2 = g.addNode(
      "Conv", {relu->output(0), g.addInitializer("w2", randomTensor({5, 4, 3, 3}, 41))}, {"c2"});
  Node* bn2 = bn(conv2->output(0), 5, "bn2", 43);
  g.addOutput(bn2->output(0));
  EXPECT_TRUE(inferShapes(m).isOk());
  return m;
}

TEST(BatchNormTest, SequentialReestimationMatchesDirectStatistics) {
  Model model = twoBatchNormModel();
  const Tensor data = randomTensor({100, 3, 6, 6}, 50, 2.f);
  // The trained statistics are far from the data's: the check below can fail.
  EXPECT_GT(bnStatsMismatch(model, data, "bn1"), 0.1);
  TensorReader reader(data);
  ASSERT_TRUE(reestimateBatchNorm(model, CalibrationSource{&reader, 100, 32, 1}).isOk());
  // After an exact re-estimation every BN holds the statistics of the input it now receives.
  EXPECT_LT(bnStatsMismatch(model, data, "bn1"), 1e-4);
  EXPECT_LT(bnStatsMismatch(model, data, "bn2"), 1e-4);
}

TEST(BatchNormTest, SinglePassIsOnlyExactForTheFirstLevel) {
  Model model = twoBatchNormModel();
  const Tensor data = randomTensor({100, 3, 6, 6}, 50, 2.f);
  TensorReader reader(data);
  BatchNormOptions single;
  single.sequential = false;
  ASSERT_TRUE(reestimateBatchNorm(model, CalibrationSource{&reader, 100, 32, 1}, single).isOk());
  EXPECT_LT(bnStatsMismatch(model, data, "bn1"), 1e-4);
  // bn2 was measured while bn1 still had its old statistics.
  EXPECT_GT(bnStatsMismatch(model, data, "bn2"), 1e-2);
}

// ---- the resnet fixture ----

const char* kDir = "/usr/share/datasets/fashion-mnist/";

std::unique_ptr<data::SampleReader> fashion(const std::string& file) {
  data::Preprocess pre;
  pre.mean = {0.2860f};
  pre.std = {0.3530f};
  auto reader = data::openData(std::string(kDir) + file, pre);
  EXPECT_TRUE(reader.isOk()) << reader.status().toString();
  return std::move(reader).value();
}

// Logits of `model` on the first `count` samples of `reader`.
Tensor logits(const Model& model, data::SampleReader& reader, int64_t count) {
  auto images = reader.readBatch(0, count);
  EXPECT_TRUE(images.isOk());
  return runModel(model, *images);
}

struct Fidelity {
  double top1 = 0, agreement = 0, cosine = 0;
};

// Top-1 against labels; top-1 agreement and mean per-sample cosine against the reference.
Fidelity fidelity(const Tensor& got, const Tensor& want, const std::vector<int64_t>& labels) {
  const int64_t n = got.dim(0), k = got.dim(1);
  const float* g = got.data<float>().data();
  const float* w = want.data<float>().data();
  Fidelity f;
  for (int64_t i = 0; i < n; ++i) {
    const float* gi = g + i * k;
    const float* wi = w + i * k;
    const int64_t top = std::max_element(gi, gi + k) - gi;
    f.top1 += top == labels[i];
    f.agreement += top == std::max_element(wi, wi + k) - wi;
    double dot = 0, gg = 0, ww = 0;
    for (int64_t j = 0; j < k; ++j) dot += gi[j] * wi[j], gg += gi[j] * gi[j], ww += wi[j] * wi[j];
    f.cosine += dot / std::sqrt(gg * ww);
  }
  f.top1 /= n;
  f.agreement /= n;
  f.cosine /= n;
  return f;
}

TEST(RecoveryResnetTest, LeastSquaresBeatsBatchNormAndNone) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing: run tools/bootstrap.sh";
  auto original = loadModel(testing::sourcePath("models/resnet.onnx"));
  ASSERT_TRUE(original.isOk()) << original.status().toString();
  const ChannelAnalysis analysis = analyzeChannels(*original);
  auto plan = l1UniformPlan(analysis, 0.5);
  ASSERT_TRUE(plan.isOk()) << plan.status().toString();
  ASSERT_FALSE(plan->empty());

  auto train = fashion("train-images-idx3-ubyte.gz");
  auto test = fashion("t10k-images-idx3-ubyte.gz");
  auto labels = data::readLabels(std::string(kDir) + "t10k-labels-idx1-ubyte.gz");
  ASSERT_TRUE(labels.isOk());
  const CalibrationSource source{train.get(), 256, 64, 1};
  constexpr int64_t kTestImages = 1000;

  Model none = prunedCopy(*original, *plan);
  Model bn = prunedCopy(*original, *plan);
  Status st = reestimateBatchNorm(bn, source);
  ASSERT_TRUE(st.isOk()) << st.toString();
  Model lsq = prunedCopy(*original, *plan);
  // Surgery keeps the output names of the layers least squares matches to the original.
  for (const auto& n : lsq.graph->nodes()) {
    if (!n->isOp("Conv") && !n->isOp("Gemm")) continue;
    const Value* same = original->graph->findValue(n->output(0)->name());
    ASSERT_NE(same, nullptr) << n->output(0)->name();
    EXPECT_EQ(same->producer()->opType(), n->opType());
  }
  auto layers = reconstructLeastSquares(*original, lsq, analysis, *plan, source);
  ASSERT_TRUE(layers.isOk()) << layers.status().toString();
  EXPECT_GE(layers->size(), 8u);
  for (const LayerRecovery& l : *layers) {
    EXPECT_LT(l.error_after, l.error_before) << l.layer;
    EXPECT_LT(l.error_after, 0.5) << l.layer;
  }

  const Tensor reference = logits(*original, *test, kTestImages);
  const Fidelity r_none = fidelity(logits(none, *test, kTestImages), reference, *labels);
  const Fidelity r_bn = fidelity(logits(bn, *test, kTestImages), reference, *labels);
  const Fidelity r_lsq = fidelity(logits(lsq, *test, kTestImages), reference, *labels);
  std::printf(
      "[ recovery ] resnet 50%% l1, %d test images: top1 none %.3f bn %.3f lsq %.3f; "
      "agreement %.3f %.3f %.3f; cosine %.3f %.3f %.3f\n",
      static_cast<int>(kTestImages), r_none.top1, r_bn.top1, r_lsq.top1, r_none.agreement,
      r_bn.agreement, r_lsq.agreement, r_none.cosine, r_bn.cosine, r_lsq.cosine);
  EXPECT_GT(r_bn.top1, r_none.top1 + 0.1);
  EXPECT_GT(r_lsq.top1, r_bn.top1 + 0.3);
  EXPECT_GT(r_lsq.top1, 0.80);
  EXPECT_GT(r_lsq.agreement, 0.83);
  EXPECT_GT(r_lsq.cosine, std::max(r_bn.cosine, r_none.cosine) + 0.2);

  // The recovered model is a valid ONNX model that ONNX Runtime runs to the same outputs.
  testing::TempDir dir;
  const auto path = dir / "resnet_lsq.onnx";
  ASSERT_TRUE(saveModel(lsq, path).isOk());
  st = checkModelFile(path);
  EXPECT_TRUE(st.isOk()) << st.toString();
  auto images = test->readBatch(0, 32);
  ASSERT_TRUE(images.isOk());
  auto ort = testing::runOrt(path, {{"input", *images}}, dir);
  ASSERT_TRUE(ort.isOk()) << ort.status().toString();
  EXPECT_EQ((*ort)[0].shape(), (Shape{32, 10}));
  EXPECT_LE(testing::relativeMaxError(runModel(lsq, *images), (*ort)[0]), 1e-4);
}

bool sameTensor(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.bytes() == b.bytes();
}

TEST(StagedPassesTest, EveryStageSeesWhatAPassFromTheInputComputes) {
  auto model = loadModel(testing::sourcePath("models/resnet.onnx"));
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  auto train = fashion("train-images-idx3-ubyte.gz");
  const CalibrationSource source{train.get(), 160, 64, 1};  // a short last batch too
  const std::vector<std::vector<std::string>> stages = {
      {"/stem/stem.2/Relu_output_0"},
      {"/layer1/Relu_output_0", "/layer1/shortcut/shortcut.1/BatchNormalization_output_0"},
      {"/layer2/Relu_1_output_0", "/stem/stem.2/Relu_output_0"},  // one value from the cache
      {"logits", "/layer3/Relu_output_0"}};
  calib::StagedPasses passes(*model, stages, source, int64_t{64} << 20);
  EXPECT_TRUE(passes.caching());
  for (size_t k = 0; k < stages.size(); ++k) {
    if (k == 3) {  // weights below every earlier stage's values may change between stages
      Tensor w = *model->graph->findValue("fc.weight")->constantData();
      for (float& x : w.mutableData<float>()) x *= 0.5f;
      model->graph->findValue("fc.weight")->setInitializer(std::move(w));
    }
    auto fresh = calib::Runner::make(*model, stages[k], 1);
    ASSERT_TRUE(fresh.isOk()) << fresh.status().toString();
    int batches = 0;
    Status st = passes.run(k, *model, [&](int64_t first, const std::vector<const Tensor*>& got) {
      auto batch = train->readFeeds(first, std::min<int64_t>(64, 160 - first));
      EXPECT_TRUE(batch.isOk());
      auto want = fresh->run(*batch);
      EXPECT_TRUE(want.isOk());
      EXPECT_EQ(got.size(), stages[k].size());
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_TRUE(sameTensor(*got[i], (*want)[fresh->slot[i]]))
            << "stage " << k << " value " << stages[k][i] << " samples " << first;
      ++batches;
      return Status::ok();
    });
    EXPECT_TRUE(st.isOk()) << st.toString();
    EXPECT_EQ(batches, 3);
  }
  // Without room for the activations, the stages run from the input.
  EXPECT_FALSE(calib::StagedPasses(*model, stages, source, 1000).caching());
}

TEST(RecoveryResnetTest, LeastSquaresWeightsDoNotDependOnTheActivationCache) {
  auto original = loadModel(testing::sourcePath("models/resnet.onnx"));
  ASSERT_TRUE(original.isOk()) << original.status().toString();
  const ChannelAnalysis analysis = analyzeChannels(*original);
  auto plan = l1UniformPlan(analysis, 0.3);
  ASSERT_TRUE(plan.isOk()) << plan.status().toString();
  auto train = fashion("train-images-idx3-ubyte.gz");
  const CalibrationSource source{train.get(), 128, 64, 2};
  Model cached = prunedCopy(*original, *plan), recomputed = prunedCopy(*original, *plan);
  LeastSquaresOptions no_cache;
  no_cache.cache_bytes = 0;
  auto a = reconstructLeastSquares(*original, cached, analysis, *plan, source);
  auto b = reconstructLeastSquares(*original, recomputed, analysis, *plan, source, no_cache);
  ASSERT_TRUE(a.isOk() && b.isOk());
  ASSERT_GE(a->size(), 8u);
  ASSERT_EQ(a->size(), b->size());
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_EQ((*a)[i].error_before, (*b)[i].error_before) << (*a)[i].layer;
    EXPECT_EQ((*a)[i].error_after, (*b)[i].error_after) << (*a)[i].layer;
  }
  int compared = 0;
  for (const Value* v : cached.graph->initializers()) {
    const Value* same = recomputed.graph->findValue(v->name());
    ASSERT_NE(same, nullptr) << v->name();
    EXPECT_TRUE(sameTensor(*v->initializer(), *same->initializer())) << v->name();
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int>(recomputed.graph->initializers().size()));
}

}  // namespace
}  // namespace nnc
