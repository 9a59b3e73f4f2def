#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "nncompress/analysis/model_stats.h"
#include "nncompress/onnx_io/model_io.h"
#include "test_util.h"

namespace nnc {
namespace {

// Conv 2->3 (3x3, pad 1) on 5x5, then Flatten, then Gemm 75->4, plus an int64 shape constant.
Model makeModel() {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = g.createValue("x").value();
  x->setType({DType::kFloat32,
              std::vector<Dim>{Dim::symbol("N"), Dim::known(2), Dim::known(5), Dim::known(5)}});
  g.addInput(x);
  Value* w = g.addInitializer("w", Tensor(DType::kFloat32, {3, 2, 3, 3}));
  Value* b = g.addInitializer("b", Tensor(DType::kFloat32, {3}));
  Node* conv = g.addNode("Conv", {x, w, b}, {"c"});
  conv->output()->setType({DType::kFloat32, std::vector<Dim>{Dim::symbol("N"), Dim::known(3),
                                                             Dim::known(5), Dim::known(5)}});
  Value* shape = g.addInitializer("shape", Tensor::fromVector<int64_t>({2}, {-1, 75}));
  Node* reshape = g.addNode("Reshape", {conv->output(), shape}, {"r"});
  reshape->output()->setType({DType::kFloat32, std::vector<Dim>{Dim::symbol("N"), Dim::known(75)}});
  Value* fc = g.addInitializer("fc", Tensor(DType::kFloat32, {4, 75}));
  Node* gemm = g.addNode("Gemm", {reshape->output(), fc}, {"y"});
  gemm->setAttribute(Attribute::makeInt("transB", 1));
  gemm->output()->setType({DType::kFloat32, std::vector<Dim>{Dim::symbol("N"), Dim::known(4)}});
  g.addOutput(gemm->output());
  return m;
}

TEST(ModelStatsTest, CountsParamsAndMacsByTheDocumentedFormulas) {
  Model m = makeModel();
  ModelStats s = computeModelStats(*m.graph);
  EXPECT_EQ(s.params, 3 * 2 * 3 * 3 + 3 + 4 * 75);  // int64 shape constant excluded
  const int64_t conv_macs = (3 * 5 * 5) * (2 * 3 * 3);
  const int64_t gemm_macs = 4 * 75;
  EXPECT_EQ(s.macs, conv_macs + gemm_macs);
  ASSERT_EQ(s.layers.size(), 2u);
  EXPECT_EQ(*s.layers[0].macs, conv_macs);
  EXPECT_EQ(s.layers[0].params, 57);
  EXPECT_EQ(*s.layers[0].weight_shape, (Shape{3, 2, 3, 3}));
  EXPECT_EQ(s.op_histogram.at("Reshape"), 1);
  EXPECT_EQ(s.weight_bytes_by_dtype.at("float32"), 4 * (54 + 3 + 300));
  EXPECT_EQ(s.weight_bytes_by_dtype.count("int64"), 0u);
}

TEST(ModelStatsTest, GroupedConvAndSharedWeightsCountOnce) {
  Model m;
  Graph& g = *m.graph;
  Value* x = g.createValue("x").value();
  x->setType({DType::kFloat32,
              std::vector<Dim>{Dim::known(1), Dim::known(4), Dim::known(8), Dim::known(8)}});
  g.addInput(x);
  Value* w = g.addInitializer("w", Tensor(DType::kFloat32, {4, 2, 3, 3}));  // group 2
  Node* c1 = g.addNode("Conv", {x, w}, {"c1"});
  c1->setAttribute(Attribute::makeInt("group", 2));
  c1->output()->setType({DType::kFloat32, std::vector<Dim>{Dim::known(1), Dim::known(4),
                                                           Dim::known(8), Dim::known(8)}});
  Node* c2 = g.addNode("Conv", {c1->output(), w}, {"c2"});  // same weight again
  c2->setAttribute(Attribute::makeInt("group", 2));
  c2->output()->setType(c1->output()->type());
  g.addOutput(c2->output());
  ModelStats s = computeModelStats(g);
  EXPECT_EQ(s.params, 72);
  EXPECT_EQ(s.macs, 2 * (4 * 8 * 8) * (2 * 3 * 3));
}

TEST(ModelStatsTest, UnknownShapesAreCountedAsUnknownNotZero) {
  Model m = makeModel();
  m.graph->findValue("c")->setType({DType::kFloat32, std::nullopt});
  ModelStats s = computeModelStats(*m.graph);
  EXPECT_EQ(s.layers_with_unknown_macs, 1);
  EXPECT_FALSE(s.layers[0].macs.has_value());
}

// A GRU over 5 steps (X [seq, batch, input]) and a bidirectional LSTM with layout 1 (X [batch,
// seq, input]): every step reads W once per input and R once per hidden state, per direction.
TEST(ModelStatsTest, RecurrentLayersCountEveryStep) {
  Model m;
  m.opset_imports = {{"", 14}};
  Graph& g = *m.graph;
  Value* x = g.createValue("x").value();
  x->setType({DType::kFloat32, std::vector<Dim>{Dim::known(5), Dim::symbol("N"), Dim::known(8)}});
  g.addInput(x);
  Value* w = g.addInitializer("w", Tensor(DType::kFloat32, {1, 3 * 16, 8}));
  Value* r = g.addInitializer("r", Tensor(DType::kFloat32, {1, 3 * 16, 16}));
  Node* gru = g.addNode("GRU", {x, w, r}, {"y", "h"});
  gru->setAttribute(Attribute::makeInt("hidden_size", 16));
  Value* xt = g.createValue("xt").value();
  xt->setType({DType::kFloat32, std::vector<Dim>{Dim::symbol("N"), Dim::known(7), Dim::known(8)}});
  g.addInput(xt);
  Value* lw = g.addInitializer("lw", Tensor(DType::kFloat32, {2, 4 * 4, 8}));
  Value* lr = g.addInitializer("lr", Tensor(DType::kFloat32, {2, 4 * 4, 4}));
  Node* lstm = g.addNode("LSTM", {xt, lw, lr}, {"ly"});
  lstm->setAttribute(Attribute::makeInt("layout", 1));
  lstm->setAttribute(Attribute::makeString("direction", "bidirectional"));
  g.addOutput(gru->output(0));
  g.addOutput(lstm->output(0));
  const ModelStats s = computeModelStats(g);
  ASSERT_EQ(s.layers.size(), 2u);
  EXPECT_EQ(s.layers[0].macs, 5 * (48 * 8 + 48 * 16));
  EXPECT_EQ(s.layers[1].macs, 7 * (2 * 16 * 8 + 2 * 16 * 4)) << "seq is axis 1 with layout 1";
  EXPECT_EQ(s.layers_with_unknown_macs, 0);
  EXPECT_EQ(*s.layers[0].weight_shape, (Shape{1, 48, 8}));
}

// ReLU6 as exported: Clip(x, Constant 0, Constant 6). The bounds configure the op, they are not
// learnt weights: no params, whether held in Constant nodes or in initializers; a float
// initializer read both as a Clip bound and as a Mul weight is a weight (counted once).
TEST(ModelStatsTest, ClipBoundsAndOtherSettingsAreNotParams) {
  Model m = makeModel();
  Graph& g = *m.graph;
  Value* y = g.findValue("y");
  Node* lo = g.addNode("Constant", {}, {"lo"});
  lo->setAttribute(Attribute::makeTensor("value", Tensor::fromVector<float>({}, {0.f})));
  Value* hi = g.addInitializer("hi", Tensor::fromVector<float>({}, {6.f}));
  Node* clip = g.addNode("Clip", {y, lo->output(), hi}, {"relu6"});
  Value* pads = g.addInitializer("pads", Tensor::fromVector<int64_t>({4}, {0, 1, 0, 1}));
  Value* fill = g.addInitializer("fill", Tensor::fromVector<float>({}, {0.5f}));
  Node* pad = g.addNode("Pad", {clip->output(), pads, fill}, {"padded"});
  g.addOutput(pad->output());
  const int64_t weights = 3 * 2 * 3 * 3 + 3 + 4 * 75;
  ModelStats s = computeModelStats(g);
  EXPECT_EQ(s.params, weights);
  EXPECT_EQ(s.weight_bytes_by_dtype.at("float32"), 4 * weights);
  for (const LayerStats& l : s.layers) EXPECT_FALSE(l.node->isOp("Clip") || l.node->isOp("Pad"));

  Value* scale = g.addInitializer("scale", Tensor::fromVector<float>({}, {2.f}));
  Node* clip2 = g.addNode("Clip", {pad->output(), lo->output(), scale}, {"clip2"});
  Node* mul = g.addNode("Mul", {clip2->output(), scale}, {"scaled"});
  g.addOutput(mul->output());
  EXPECT_EQ(computeModelStats(g).params, weights + 1);
}

// The committed fixtures: params equal the weight elements in the file, MACs equal what the
// training script computed with torch hooks.
TEST(ModelStatsTest, FixturesMatchTrainingScriptCounts) {
  const auto index = testing::sourcePath("models/fixtures.json");
  ASSERT_TRUE(std::filesystem::exists(index)) << index;
  const auto fixtures = nlohmann::json::parse(testing::readText(index));
  ASSERT_GE(fixtures.size(), 5u);
  for (const auto& f : fixtures) {
    const auto path = testing::sourcePath("models/" + f["file"].get<std::string>());
    auto model = loadModel(path);
    ASSERT_TRUE(model.isOk()) << path << ": " << model.status().toString();
    ModelStats s = computeModelStats(*model->graph);
    EXPECT_EQ(s.params, f["params"].get<int64_t>()) << path;
    EXPECT_EQ(s.macs, f["macs"].get<int64_t>()) << path;
    EXPECT_EQ(s.layers_with_unknown_macs, 0) << path;
  }
}

}  // namespace
}  // namespace nnc
