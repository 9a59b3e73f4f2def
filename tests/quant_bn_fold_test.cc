// BatchNorm folding: golden before/after structure (including cases where it must not fire) and
// numerical equivalence on small graphs and on the resnet fixture.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "nncompress/exec/executor.h"
#include "nncompress/ir/verify.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/quant/bn_fold.h"
#include "random_tensor.h"
#include "test_util.h"

namespace nnc {
namespace {

using testing::randomTensor;

std::string opList(const Graph& g) {
  std::string s;
  for (const auto& n : g.nodes()) s += (s.empty() ? "" : ",") + n->opType();
  return s;
}

enum class Variant { kPlain, kTwoUses, kTraining, kBnIsOutput, kFedWeight, kNoBias };

// x[2,4,5,5] -> layer -> BN -> Relu -> y. `layer` is Conv, ConvTranspose (group 2) or Gemm.
Model makeModel(const std::string& layer, Variant variant, bool trans_b = true) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  const bool gemm = layer == "Gemm";
  Value* x = g.createValue("x").value();
  x->setType({DType::kFloat32, std::vector<Dim>{Dim::known(2), Dim::known(gemm ? 6 : 4),
                                                Dim::known(5), Dim::known(5)}});
  if (gemm) x->setType({DType::kFloat32, std::vector<Dim>{Dim::known(2), Dim::known(6)}});
  g.addInput(x);
  const int64_t c = 6;
  Shape w_shape = layer == "Conv"            ? Shape{c, 4, 3, 3}
                  : layer == "ConvTranspose" ? Shape{4, c / 2, 3, 3}
                  : trans_b                  ? Shape{c, 6}
                                             : Shape{6, c};
  Value* w;
  if (variant == Variant::kFedWeight) {
    w = g.createValue("w").value();
    g.addInput(w);
  } else {
    w = g.addInitializer("w", randomTensor(w_shape, 1));
  }
  std::vector<Value*> inputs = {x, w};
  if (variant != Variant::kNoBias) inputs.push_back(g.addInitializer("b", randomTensor({c}, 2)));
  Node* l = g.addNode(layer, inputs, {"z"});
  l->setName("layer");
  if (layer == "ConvTranspose") l->setAttribute(Attribute::makeInt("group", 2));
  if (layer == "Conv") l->setAttribute(Attribute::makeInts("pads", {1, 1, 1, 1}));
  if (gemm) {
    l->setAttribute(Attribute::makeInt("transB", trans_b ? 1 : 0));
    l->setAttribute(Attribute::makeFloat("beta", 0.5f));
  }
  Node* bn = g.addNode("BatchNormalization",
                       {l->output(0), g.addInitializer("gamma", randomTensor({c}, 3, -2.f, 2.f)),
                        g.addInitializer("beta", randomTensor({c}, 4)),
                        g.addInitializer("mean", randomTensor({c}, 5)),
                        g.addInitializer("var", randomTensor({c}, 6, 0.1f, 2.f))},
                       {"bn_out"});
  bn->setName("bn");
  if (variant == Variant::kTraining) bn->setAttribute(Attribute::makeInt("training_mode", 1));
  Node* relu = g.addNode("Relu", {bn->output(0)}, {"y"});
  g.addOutput(relu->output(0));
  if (variant == Variant::kTwoUses)
    g.addOutput(g.addNode("Neg", {l->output(0)}, {"z2"})->output(0));
  if (variant == Variant::kBnIsOutput) g.addOutput(bn->output(0));
  return m;
}

std::vector<Tensor> run(const Model& m, const Tensor& x) {
  auto ex = exec::Executor::create(m);
  EXPECT_TRUE(ex.isOk()) << ex.status().message();
  auto out = (*ex)->run({x});
  EXPECT_TRUE(out.isOk()) << out.status().message();
  return *out;
}

double maxDiff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double d = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    d = std::max(d, std::abs(double(a.data<float>()[i]) - b.data<float>()[i]));
  return d;
}

struct FoldCase {
  std::string layer;
  bool trans_b;
  Variant variant;
};

class FoldFires : public ::testing::TestWithParam<FoldCase> {};

TEST_P(FoldFires, GoldenStructureAndSameOutputs) {
  const FoldCase& p = GetParam();
  Model before = makeModel(p.layer, p.variant, p.trans_b);
  Model after = makeModel(p.layer, p.variant, p.trans_b);
  auto folded = quant::foldBatchNorms(*after.graph);
  ASSERT_TRUE(folded.isOk()) << folded.status().message();
  ASSERT_EQ(folded->size(), 1u);
  EXPECT_EQ((*folded)[0].batchnorm, "bn");
  EXPECT_EQ((*folded)[0].into, "layer");
  EXPECT_EQ(opList(*after.graph), p.layer + ",Relu");
  EXPECT_TRUE(verifyModel(after).isOk());
  // BN parameters and the old weights are gone; the layer has a bias.
  EXPECT_EQ(after.graph->findValue("gamma"), nullptr);
  EXPECT_EQ(after.graph->findValue("w"), nullptr);
  EXPECT_EQ(after.graph->nodes()[0]->numInputs(), 3u);
  const Tensor x = randomTensor(p.layer == "Gemm" ? Shape{2, 6} : Shape{2, 4, 5, 5}, 9);
  EXPECT_LT(maxDiff(run(before, x)[0], run(after, x)[0]), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Layers, FoldFires,
                         ::testing::Values(FoldCase{"Conv", true, Variant::kPlain},
                                           FoldCase{"Conv", true, Variant::kNoBias},
                                           FoldCase{"ConvTranspose", true, Variant::kPlain},
                                           FoldCase{"Gemm", true, Variant::kPlain},
                                           FoldCase{"Gemm", false, Variant::kPlain},
                                           FoldCase{"Gemm", true, Variant::kNoBias}),
                         [](const auto& info) {
                           return info.param.layer + (info.param.trans_b ? "" : "NoTransB") +
                                  (info.param.variant == Variant::kNoBias ? "NoBias" : "");
                         });

class FoldMustNotFire : public ::testing::TestWithParam<Variant> {};

TEST_P(FoldMustNotFire, GraphUnchanged) {
  Model m = makeModel("Conv", GetParam());
  const std::string ops = opList(*m.graph);
  auto folded = quant::foldBatchNorms(*m.graph);
  ASSERT_TRUE(folded.isOk());
  EXPECT_TRUE(folded->empty());
  EXPECT_EQ(opList(*m.graph), ops);
  EXPECT_NE(m.graph->findValue("gamma"), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Cases, FoldMustNotFire,
                         ::testing::Values(Variant::kTwoUses, Variant::kTraining,
                                           Variant::kBnIsOutput, Variant::kFedWeight));

TEST(FoldBatchNorm, BnAfterNonLayerDoesNotFire) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = g.createValue("x").value();
  g.addInput(x);
  Node* relu = g.addNode("Relu", {x}, {"r"});
  Node* bn = g.addNode(
      "BatchNormalization",
      {relu->output(0), g.addInitializer("s", randomTensor({4}, 1)),
       g.addInitializer("b", randomTensor({4}, 2)), g.addInitializer("m", randomTensor({4}, 3)),
       g.addInitializer("v", randomTensor({4}, 4, 0.5f, 1.f))},
      {"y"});
  g.addOutput(bn->output(0));
  auto folded = quant::foldBatchNorms(g);
  ASSERT_TRUE(folded.isOk());
  EXPECT_TRUE(folded->empty());
  EXPECT_EQ(g.numNodes(), 2u);
}

TEST(FoldBatchNorm, ResnetFixtureSameOutputs) {
  const auto path = testing::sourcePath("models/resnet.onnx");
  auto before = loadModel(path);
  auto after = loadModel(path);
  ASSERT_TRUE(before.isOk() && after.isOk());
  quant::FoldBatchNormPass pass;
  auto changed = pass.run(*after);
  ASSERT_TRUE(changed.isOk() && *changed);
  int bns = 0;
  for (const auto& n : after->graph->nodes()) bns += n->isOp("BatchNormalization");
  EXPECT_EQ(bns, 0);
  EXPECT_TRUE(verifyModel(*after).isOk());
  const Tensor x = randomTensor({4, 1, 28, 28}, 11, -1.f, 2.f);
  EXPECT_LT(maxDiff(run(*before, x)[0], run(*after, x)[0]), 1e-3);
  // And the folded model still passes the ONNX checker.
  testing::TempDir dir;
  ASSERT_TRUE(saveModel(*after, dir / "f.onnx").isOk());
  EXPECT_TRUE(checkModelFile(dir / "f.onnx").isOk());
}

// Pre-activation BN (DenseNet): x -> Concat(x, x) -> BN -> Relu -> Conv (group 2) -> y.
enum class PreAct { kPositive, kNegativeGamma, kReluTwoReaders, kNotIntoNext };

Model makePreActivation(PreAct variant) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = g.createValue("x").value();
  x->setType({DType::kFloat32,
              std::vector<Dim>{Dim::known(2), Dim::known(4), Dim::known(5), Dim::known(5)}});
  g.addInput(x);
  Node* cat = g.addNode("Concat", {x, x}, {"cat"});
  cat->setAttribute(Attribute::makeInt("axis", 1));
  cat->output(0)->setType({DType::kFloat32, std::vector<Dim>{Dim::known(2), Dim::known(8),
                                                             Dim::known(5), Dim::known(5)}});
  Tensor gamma = randomTensor({8}, 3, 0.5f, 2.f);
  if (variant == PreAct::kNegativeGamma) gamma.mutableData<float>()[5] = -0.7f;
  Node* bn = g.addNode("BatchNormalization",
                       {cat->output(0), g.addInitializer("gamma", std::move(gamma)),
                        g.addInitializer("beta", randomTensor({8}, 4)),
                        g.addInitializer("mean", randomTensor({8}, 5)),
                        g.addInitializer("var", randomTensor({8}, 6, 0.1f, 2.f))},
                       {"bn_out"});
  bn->setName("bn");
  Node* relu = g.addNode("Relu", {bn->output(0)}, {"r"});
  Node* conv = g.addNode("Conv",
                         {relu->output(0), g.addInitializer("w", randomTensor({6, 4, 3, 3}, 7)),
                          g.addInitializer("b", randomTensor({6}, 8))},
                         {"y"});
  conv->setName("conv");
  conv->setAttribute(Attribute::makeInt("group", 2));
  conv->setAttribute(Attribute::makeInts("pads", {1, 1, 1, 1}));
  g.addOutput(conv->output(0));
  if (variant == PreAct::kReluTwoReaders) g.addOutput(relu->output(0));
  return m;
}

class RemainingBatchNorm : public ::testing::TestWithParam<PreAct> {};

TEST_P(RemainingBatchNorm, GoldenStructureAndSameOutputs) {
  const PreAct v = GetParam();
  Model before = makePreActivation(v);
  Model after = makePreActivation(v);
  ASSERT_TRUE(quant::foldBatchNorms(*after.graph)->empty());  // nothing before the BN to fold into
  auto done = quant::foldRemainingBatchNorms(*after.graph, v != PreAct::kNotIntoNext);
  ASSERT_TRUE(done.isOk()) << done.status().message();
  ASSERT_EQ(done->size(), 1u);
  const bool into_conv = v == PreAct::kPositive;
  EXPECT_EQ((*done)[0].into, into_conv ? "conv" : "Mul/Add");
  EXPECT_EQ(opList(*after.graph), into_conv ? "Concat,Add,Relu,Conv" : "Concat,Mul,Add,Relu,Conv");
  EXPECT_TRUE(verifyModel(after).isOk());
  EXPECT_EQ(after.graph->findValue("gamma"), nullptr);
  const Tensor x = randomTensor({2, 4, 5, 5}, 9);
  const auto a = run(before, x), b = run(after, x);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LT(maxDiff(a[i], b[i]), 1e-5) << i;
}

INSTANTIATE_TEST_SUITE_P(PreActivation, RemainingBatchNorm,
                         ::testing::Values(PreAct::kPositive, PreAct::kNegativeGamma,
                                           PreAct::kReluTwoReaders, PreAct::kNotIntoNext),
                         [](const auto& info) {
                           switch (info.param) {
                             case PreAct::kPositive:
                               return std::string("IntoConv");
                             case PreAct::kNegativeGamma:
                               return std::string("NegativeGammaMulAdd");
                             case PreAct::kReluTwoReaders:
                               return std::string("ReluTwoReadersMulAdd");
                             default:
                               return std::string("NotIntoNextMulAdd");
                           }
                         });

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {

// x[2,8,6,6] -> BN -> Relu -> Conv 8->16 3x3, with BN scales k_c = gamma_c / sqrt(var_c + eps)
// log-spaced over `span` (1: all equal).
Model makeScaledPreActivation(double span) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = g.createValue("x").value();
  x->setType({DType::kFloat32,
              std::vector<Dim>{Dim::known(2), Dim::known(8), Dim::known(6), Dim::known(6)}});
  g.addInput(x);
  std::vector<float> gamma(8), beta(8, 0.2f), mean(8, 0.f), var(8);
  for (int c = 0; c < 8; ++c) {
    gamma[c] = 1.f;
    const double k = std::pow(span, (c % 2 ? c : 7 - c) / 7.0);  // interleaved, not sorted
    var[c] = float(1.0 / (k * k));
    mean[c] = float(0.1 / k);
  }
  Node* bn = g.addNode("BatchNormalization",
                       {x, g.addInitializer("gamma", Tensor::fromVector<float>({8}, gamma)),
                        g.addInitializer("beta", Tensor::fromVector<float>({8}, beta)),
                        g.addInitializer("mean", Tensor::fromVector<float>({8}, mean)),
                        g.addInitializer("var", Tensor::fromVector<float>({8}, var))},
                       {"bn_out"});
  bn->setName("bn");
  bn->setAttribute(Attribute::makeFloat("epsilon", 0.f));
  Node* relu = g.addNode("Relu", {bn->output(0)}, {"r"});
  Node* conv = g.addNode("Conv",
                         {relu->output(0), g.addInitializer("w", randomTensor({16, 8, 3, 3}, 21)),
                          g.addInitializer("b", randomTensor({16}, 22))},
                         {"y"});
  conv->setName("conv");
  conv->setAttribute(Attribute::makeInts("pads", {1, 1, 1, 1}));
  g.addOutput(conv->output(0));
  return m;
}

// The fold decision: equal BN scales fold forward (no grid gets wider: 0 dB lost); scales that
// span 300x would put the conv's input channels on one weight grid and one activation grid, so
// the BN stays a float Mul/Add. Either way the float outputs are unchanged.
TEST(RemainingBatchNormCheck, WideScalesStayMulAddEqualScalesFold) {
  const Tensor x = randomTensor({2, 8, 6, 6}, 23, -2.f, 2.f);
  for (double span : {1.0, 300.0}) {
    Model before = makeScaledPreActivation(span);
    Model after = makeScaledPreActivation(span);
    auto done = quant::foldRemainingBatchNorms(*after.graph, quant::RemainingBatchNormOptions{});
    ASSERT_TRUE(done.isOk()) << done.status().message();
    ASSERT_EQ(done->size(), 1u);
    const auto& d = (*done)[0];
    EXPECT_EQ(d.next_layer, "conv");
    if (span == 1.0) {
      EXPECT_EQ(d.into, "conv");
      EXPECT_LT(d.weight_sqnr_lost_db, 0.05);
      EXPECT_LT(d.act_sqnr_lost_db, 0.05);
      EXPECT_EQ(opList(*after.graph), "Add,Relu,Conv");
    } else {
      EXPECT_EQ(d.into, "Mul/Add");
      EXPECT_GT(d.weight_sqnr_lost_db, 10.0);  // the small-k channels round to zero
      EXPECT_GT(d.act_sqnr_lost_db, 10.0);
      EXPECT_EQ(opList(*after.graph), "Mul,Add,Relu,Conv");
    }
    const Tensor a = run(before, x)[0], b = run(after, x)[0];
    double scale = 1;
    for (float v : a.data<float>()) scale = std::max(scale, double(std::abs(v)));
    EXPECT_LT(maxDiff(a, b), 1e-5 * scale) << span;
  }
}

// The weight SQNR a forward fold costs is 0 for equal scales and grows with their spread.
TEST(RemainingBatchNormCheck, WeightLossGrowsWithSpread) {
  Model m = makeScaledPreActivation(1.0);
  const Node* conv = nullptr;
  for (const auto& n : m.graph->nodes())
    if (n->isOp("Conv")) conv = n.get();
  ASSERT_NE(conv, nullptr);
  double last = -1;
  for (double span : {1.0, 3.0, 30.0, 300.0}) {
    std::vector<double> k(8);
    for (int c = 0; c < 8; ++c) k[c] = std::pow(span, c / 7.0);
    const double lost = quant::forwardFoldWeightSqnrLoss(*conv, k, 8, true);
    if (span == 1.0) {
      EXPECT_LT(lost, 0.05);
    }
    EXPECT_GT(lost, last) << span;
    last = lost;
  }
  EXPECT_GT(last, 20.0);
}

}  // namespace
}  // namespace nnc
