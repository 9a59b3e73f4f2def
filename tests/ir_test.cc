#include <gtest/gtest.h>

#include "nncompress/ir/graph.h"
#include "nncompress/ir/pass.h"
#include "nncompress/ir/printer.h"
#include "nncompress/ir/verify.h"

namespace nnc {
namespace {

// x -> Conv(w) -> Relu -> y, with a second consumer Add(relu, relu).
struct SmallGraph {
  Model model;
  Graph& g = *model.graph;
  Value* x;
  Value* w;
  Node* conv;
  Node* relu;
  Node* add;
  SmallGraph() {
    model.opset_imports = {{"", 13}};
    g.setName("small");
    x = g.createValue("x").value();
    x->setType(ValueType{DType::kFloat32, std::vector<Dim>{Dim::symbol("N"), Dim::known(1),
                                                           Dim::known(4), Dim::known(4)}});
    g.addInput(x);
    w = g.addInitializer("w", Tensor(DType::kFloat32, {2, 1, 3, 3}));
    conv = g.addNode("Conv", {x, w}, {"c"});
    conv->setName("conv0");
    conv->setAttribute(Attribute::makeInts("kernel_shape", {3, 3}));
    relu = g.addNode("Relu", {conv->output()}, {"r"});
    add = g.addNode("Add", {relu->output(), relu->output()}, {"y"});
    g.addOutput(add->output());
  }
};

TEST(GraphTest, ProducerAndUsesAreLinked) {
  SmallGraph s;
  EXPECT_EQ(s.conv->output()->producer(), s.conv);
  ASSERT_EQ(s.relu->output()->uses().size(), 2u);
  EXPECT_EQ(s.relu->output()->uses()[0], (Use{s.add, 0}));
  EXPECT_EQ(s.relu->output()->uses()[1], (Use{s.add, 1}));
  EXPECT_EQ(s.w->constantData()->shape(), (Shape{2, 1, 3, 3}));
  EXPECT_TRUE(s.add->output()->isGraphOutput());
  EXPECT_TRUE(verifyModel(s.model).isOk());
}

TEST(GraphTest, InitializersListedAsInputsBecomeConstants) {
  SmallGraph s;
  s.model.ir_version = 3;
  s.g.addInput(s.w);  // the IR < 4 convention: every initializer is also an input
  ASSERT_EQ(s.g.inputs().size(), 2u);
  EXPECT_EQ(demoteInitializerInputs(s.model), 1u);
  ASSERT_EQ(s.g.inputs().size(), 1u);
  EXPECT_EQ(s.g.inputs()[0], s.x);
  EXPECT_FALSE(s.w->isGraphInput());
  EXPECT_TRUE(s.w->isInitializer());
  EXPECT_EQ(s.w->uses().size(), 1u);
  EXPECT_EQ(s.model.ir_version, 4);
  EXPECT_TRUE(verifyModel(s.model).isOk());
  EXPECT_EQ(demoteInitializerInputs(s.model), 0u);
}

// An IR >= 4 model may still list its initializers as inputs (fr_age, PyTorch 1.2). A weight a
// rewrite replaced (quantize's int8 copy) is dead with its input entry: nothing could read an
// override. Left in, the float weights stayed in the quantized file (larger than the float one).
TEST(GraphTest, DeadInitializersListedAsInputsAreRemoved) {
  SmallGraph s;
  s.model.ir_version = 4;
  s.g.addInput(s.w);
  Value* w8 = s.g.addInitializer("w_q", Tensor(DType::kFloat32, {2, 1, 3, 3}));
  s.g.replaceAllUsesWith(s.w, w8);
  EXPECT_EQ(s.g.removeDeadNodes(), 0u);
  EXPECT_EQ(s.g.findValue("w"), nullptr);
  ASSERT_EQ(s.g.inputs().size(), 1u);
  EXPECT_EQ(s.g.inputs()[0], s.x);
  EXPECT_TRUE(verifyModel(s.model).isOk()) << verifyModel(s.model).toString();
  // A used one stays, input entry and all.
  s.g.addInput(w8);
  EXPECT_EQ(s.g.removeDeadNodes(), 0u);
  EXPECT_EQ(s.g.inputs().size(), 2u);
}

TEST(GraphTest, ReplaceAllUsesRewiresNodesAndOutputs) {
  SmallGraph s;
  Value* conv_out = s.conv->output();
  s.g.replaceAllUsesWith(s.relu->output(), conv_out);
  EXPECT_FALSE(s.relu->output()->hasUses());
  EXPECT_EQ(s.add->input(0), conv_out);
  EXPECT_EQ(conv_out->uses().size(), 3u);  // relu + add twice
  s.g.replaceAllUsesWith(s.add->output(), conv_out);
  EXPECT_EQ(s.g.outputs()[0], conv_out);
  EXPECT_EQ(s.g.removeDeadNodes(), 2u);  // add, then relu
  EXPECT_EQ(s.g.numNodes(), 1u);
  EXPECT_TRUE(verifyModel(s.model).isOk()) << verifyModel(s.model).toString();
}

TEST(GraphTest, EraseNodeRemovesItsUses) {
  SmallGraph s;
  s.g.setOutput(0, s.relu->output());
  s.g.eraseNode(s.add);
  EXPECT_FALSE(s.relu->output()->hasUses());
  EXPECT_EQ(s.g.findValue("y"), nullptr);
  EXPECT_TRUE(verifyModel(s.model).isOk());
}

TEST(GraphTest, UniqueNamesAndDuplicateRejection) {
  SmallGraph s;
  EXPECT_FALSE(s.g.createValue("x").isOk());
  EXPECT_EQ(s.g.createUniqueValue("x")->name(), "x_1");
  EXPECT_EQ(s.g.createUniqueValue("x")->name(), "x_2");
}

TEST(GraphTest, TopologicalOrderIsStableAndSortsInsertedNodes) {
  SmallGraph s;
  // A node appended at the end that feeds the conv's consumer position must move before it.
  Node* neg = s.g.addNode("Neg", {s.x}, {"neg"});
  s.conv->setInput(0, neg->output());
  ASSERT_TRUE(s.g.sortTopologically().isOk());
  std::vector<std::string> ops;
  for (const auto& n : s.g.nodes()) ops.push_back(n->opType());
  EXPECT_EQ(ops, (std::vector<std::string>{"Neg", "Conv", "Relu", "Add"}));
  // Already sorted: order unchanged.
  auto order = s.g.topologicalOrder();
  ASSERT_TRUE(order.isOk());
  for (size_t i = 0; i < order->size(); ++i) EXPECT_EQ((*order)[i], s.g.nodes()[i].get());
}

TEST(GraphTest, CycleIsReportedWithANodeName) {
  SmallGraph s;
  s.conv->setInput(0, s.add->output());  // conv reads its own descendant
  Status st = verifyModel(s.model);
  ASSERT_FALSE(st.isOk());
  EXPECT_EQ(st.code(), StatusCode::kInvalidModel);
  EXPECT_NE(st.message().find("cycle"), std::string::npos) << st.message();
}

TEST(GraphTest, VerifierCatchesUndefinedInput) {
  SmallGraph s;
  Value* orphan = s.g.createValue("orphan").value();
  s.relu->setInput(0, orphan);
  Status st = verifyModel(s.model);
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("'orphan' is not defined"), std::string::npos) << st.message();
}

TEST(GraphTest, InsertNodeBeforeKeepsOrder) {
  SmallGraph s;
  Node* id = s.g.insertNodeBefore(s.relu, "Identity", {s.conv->output()}, {"id"});
  s.relu->setInput(0, id->output());
  EXPECT_EQ(s.g.nodes()[1].get(), id);
  EXPECT_TRUE(verifyModel(s.model).isOk());
}

TEST(GraphTest, ConstantNodeTensorIsConstantData) {
  SmallGraph s;
  Node* c = s.g.insertNodeBefore(s.conv, "Constant", {}, {"b"});
  c->setAttribute(Attribute::makeTensor("value", Tensor::fromVector<float>({2}, {1.f, 2.f})));
  s.conv->addInput(c->output());
  ASSERT_NE(c->output()->constantData(), nullptr);
  EXPECT_EQ(c->output()->constantData()->data<float>()[1], 2.f);
  EXPECT_TRUE(verifyModel(s.model).isOk());
}

TEST(PrinterTest, GoldenText) {
  SmallGraph s;
  const std::string text = printGraph(s.g);
  const std::string expected =
      "graph small {\n"
      "  input %x: float32[N,1,4,4]\n"
      "  initializer %w: float32[2x1x3x3]#";
  ASSERT_EQ(text.substr(0, expected.size()), expected) << text;
  EXPECT_NE(text.find("  %c = Conv[kernel_shape=[3,3]](%x, %w)  # conv0\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("  %y = Add(%r, %r)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  output %y: undefined[?]\n"), std::string::npos) << text;
  // Weights are part of the text: changing one value changes the print.
  s.w->mutableInitializer()->mutableData<float>()[0] = 1.f;
  EXPECT_NE(printGraph(s.g), text);
}

class CountingPass : public Pass {
 public:
  explicit CountingPass(bool corrupt) : corrupt_(corrupt) {}
  std::string name() const override { return corrupt_ ? "corrupt" : "noop"; }
  StatusOr<bool> run(Model& model) override {
    if (corrupt_) {
      Graph& g = *model.graph;
      Value* dangling = g.createUniqueValue("dangling");
      g.nodes().back()->setInput(0, dangling);
      return true;
    }
    return false;
  }

 private:
  bool corrupt_;
};

TEST(PassManagerTest, VerifiesAfterEachPass) {
  SmallGraph s;
  PassManager pm;
  pm.setVerifyAfterEachPass(true);
  pm.add(std::make_unique<CountingPass>(false));
  pm.add(std::make_unique<CountingPass>(true));
  auto r = pm.run(s.model);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("after pass corrupt"), std::string::npos)
      << r.status().message();
}

TEST(ModelTest, OpsetLookupTreatsAiOnnxAsDefault) {
  Model m;
  m.opset_imports = {{"ai.onnx", 13}, {"com.microsoft", 1}};
  EXPECT_EQ(m.opsetVersion(""), 13);
  EXPECT_EQ(m.opsetVersion("com.microsoft"), 1);
  EXPECT_EQ(m.opsetVersion("x"), -1);
}

}  // namespace
}  // namespace nnc
