// Channel rules, one by one, on tiny graphs: which groups form, what they contain, and the
// cases where a group must NOT form.

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include "model_text.h"
#include "nncompress/analysis/channel_groups.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/prune/surgery.h"

namespace nnc {
namespace {

Model load(const std::string& body, const std::string& inputs, const std::string& outputs,
           const std::string& inits = "") {
  const std::string text = "<ir_version: 8, opset_import: [\"\" : 13, \"custom\" : 1]>\n g (" +
                           inputs + ") => (" + outputs + ")\n" +
                           (inits.empty() ? "" : "<" + inits + ">\n") + "{\n" + body + "\n}\n";
  return testing::parseModelText(text);
}

// A float initializer of the given shape filled with 0.1, 0.2, ... (distinct values).
std::string init(const std::string& name, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  std::string dims, values;
  for (size_t i = 0; i < shape.size(); ++i)
    dims += (i ? "," : "") + std::to_string(shape[i]), n *= shape[i];
  for (int64_t i = 0; i < n; ++i) values += (i ? "," : "") + std::to_string(0.1 * (i % 17 + 1));
  return "float[" + dims + "] " + name + " = {" + values + "}";
}

const ChannelGroup* groupOf(const ChannelAnalysis& a, const std::string& source_output) {
  for (const ChannelGroup& g : a.groups)
    for (const Node* n : g.sources)
      if (n->output(0)->name() == source_output) return &g;
  return nullptr;
}

const GroupMember* member(const ChannelGroup& g, const std::string& tensor, int axis) {
  for (const GroupMember& m : g.members)
    if (m.value->name() == tensor && m.axis == axis) return &m;
  return nullptr;
}

TEST(ChannelRulesTest, ConvBatchNormConvFormsOneGroup) {
  Model m = load(
      "a = Conv (x, w1, b1)\n n = BatchNormalization (a, s, bb, mu, var)\n r = Relu (n)\n y = Conv "
      "(r, w2)",
      "float[1,2,5,5] x", "y",
      init("w1", {4, 2, 3, 3}) + ", " + init("b1", {4}) + ", " + init("s", {4}) + ", " +
          init("bb", {4}) + ", " + init("mu", {4}) + ", " + init("var", {4}) + ", " +
          init("w2", {3, 4, 1, 1}));
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup* g = groupOf(a, "a");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(g->prunable) << g->reason;
  EXPECT_EQ(g->channels, 4);
  EXPECT_EQ(member(*g, "w1", 0)->role, MemberRole::kProducer);
  EXPECT_EQ(member(*g, "b1", 0)->role, MemberRole::kParameter);
  for (const char* p : {"s", "bb", "mu", "var"}) EXPECT_NE(member(*g, p, 0), nullptr) << p;
  EXPECT_EQ(member(*g, "w2", 1)->role, MemberRole::kConsumer);
  EXPECT_NE(member(*g, "r", 1), nullptr);
  // The last conv feeds the graph output: its group exists but must not be pruned.
  const ChannelGroup* out = groupOf(a, "y");
  ASSERT_NE(out, nullptr);
  EXPECT_FALSE(out->prunable);
  EXPECT_NE(out->reason.find("graph output"), std::string::npos);
}

TEST(ChannelRulesTest, ResidualAddCouplesBothProducers) {
  Model m = load(
      "a = Conv (x, w1)\n b = Conv (x, w2)\n s = Add (a, b)\n y = Conv (s, w3)", "float[1,2,4,4] x",
      "y",
      init("w1", {3, 2, 1, 1}) + ", " + init("w2", {3, 2, 1, 1}) + ", " + init("w3", {2, 3, 1, 1}));
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup* g = groupOf(a, "a");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->sources.size(), 2u);
  EXPECT_EQ(groupOf(a, "b"), g);
  EXPECT_TRUE(g->prunable);
  EXPECT_NE(member(*g, "w3", 1), nullptr);
}

TEST(ChannelRulesTest, ConcatGivesEachPartItsOffset) {
  Model m =
      load("a = Conv (x, wa)\n b = Conv (x, wb)\n c = Concat <axis = 1> (a, b)\n y = Conv (c, wc)",
           "float[1,2,4,4] x", "y",
           init("wa", {4, 2, 1, 1}) + ", " + init("wb", {6, 2, 1, 1}) + ", " +
               init("wc", {3, 10, 1, 1}));
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup* ga = groupOf(a, "a");
  const ChannelGroup* gb = groupOf(a, "b");
  ASSERT_TRUE(ga && gb);
  ASSERT_NE(ga, gb);
  EXPECT_TRUE(ga->prunable && gb->prunable);
  EXPECT_EQ(member(*ga, "wc", 1)->mapping.indices({0, 3}), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(member(*gb, "wc", 1)->mapping.indices({0, 5}), (std::vector<int64_t>{4, 9}));
  // Surgery keeps the other part's range intact.
  Status st = applyChannelPruning(m, a, {{ga->id, {1, 2}}, {gb->id, {0, 5}}});
  ASSERT_TRUE(st.isOk()) << st.toString();
  EXPECT_EQ(m.graph->findValue("y")->producer()->input(1)->constantData()->shape(),
            (Shape{3, 4, 1, 1}));
  EXPECT_EQ(m.graph->findValue("c")->type().toString(), "float32[1,4,4,4]");
}

TEST(ChannelRulesTest, FlattenRepeatsEachChannelOverItsSpatialBlock) {
  Model m = load("a = Conv (x, w)\n f = Flatten <axis = 1> (a)\n y = Gemm <transB = 1> (f, fc)",
                 "float[1,1,2,2] x", "y", init("w", {3, 1, 1, 1}) + ", " + init("fc", {5, 12}));
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup* g = groupOf(a, "a");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(g->prunable) << g->reason;
  const GroupMember* fc = member(*g, "fc", 1);
  ASSERT_NE(fc, nullptr);
  EXPECT_EQ(fc->mapping.indices({2}), (std::vector<int64_t>{8, 9, 10, 11}));
  ASSERT_TRUE(applyChannelPruning(m, a, {{g->id, {0, 2}}}).isOk());
  const Tensor* pruned_fc = m.graph->findValue("y")->producer()->input(1)->constantData();
  EXPECT_EQ(pruned_fc->shape(), (Shape{5, 8}));
  // Column 4 of the pruned matrix is old column 8 (channel 2's first feature).
  EXPECT_FLOAT_EQ(pruned_fc->data<float>()[4], 0.1f * (8 % 17 + 1));
}

TEST(ChannelRulesTest, DepthwiseConvJoinsItsInputGroupAndFollowsIt) {
  Model m = load(
      "a = Conv (x, w1)\n d = Conv <group = 4> (a, wd)\n y = Conv (d, w2)", "float[1,2,4,4] x", "y",
      init("w1", {4, 2, 1, 1}) + ", " + init("wd", {4, 1, 3, 3}) + ", " + init("w2", {2, 4, 1, 1}));
  // Pads keep 4x4; shapes do not matter for grouping.
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup* g = groupOf(a, "a");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(groupOf(a, "d"), g);
  ASSERT_EQ(g->group_attr_nodes.size(), 1u);
  ASSERT_TRUE(applyChannelPruning(m, a, {{g->id, {0, 3}}}).isOk());
  const Node* dw = m.graph->findValue("d")->producer();
  EXPECT_EQ(dw->intAttr("group", 0), 2);
  EXPECT_EQ(dw->input(1)->constantData()->shape(), (Shape{2, 1, 3, 3}));
}

TEST(ChannelRulesTest, SqueezeExcitationMulJoinsTheMainPath) {
  Model m = load(
      "a = Conv (x, w1)\n p = GlobalAveragePool (a)\n s1 = Conv (p, ws1)\n r = Relu (s1)\n s2 = "
      "Conv (r, ws2)\n"
      " g = Sigmoid (s2)\n e = Mul (a, g)\n y = Conv (e, w2)",
      "float[1,2,4,4] x", "y",
      init("w1", {4, 2, 1, 1}) + ", " + init("ws1", {2, 4, 1, 1}) + ", " +
          init("ws2", {4, 2, 1, 1}) + ", " + init("w2", {3, 4, 1, 1}));
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup* g = groupOf(a, "a");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(groupOf(a, "s2"), g);  // the SE expand conv makes the same channels
  EXPECT_NE(member(*g, "ws1", 1), nullptr);
  EXPECT_TRUE(g->prunable);
  EXPECT_TRUE(groupOf(a, "s1")->prunable);  // the squeeze width is its own group
}

struct MustNotForm {
  const char* name;
  const char* body;
  const char* inits;
  const char* reason;
};

const MustNotForm kBarriers[] = {
    {"reshape_mixing_channels", "a = Conv (x, w)\n r = Reshape (a, shape)\n y = Relu (r)",
     "int64[4] shape = {1, 2, 2, 8}", "mixes channels"},
    {"unknown_op", "a = Conv (x, w)\n r = custom.Weird (a)\n y = Relu (r)", "",
     "no channel rule for custom.Weird"},
    // The Transpose carries the channels to axis 2, where the Softmax mixes them.
    {"transpose_then_softmax_over_the_channels",
     "a = Conv (x, w)\n r = Transpose <perm = [0, 2, 1, 3]> (a)\n s = Softmax <axis = 2> (r)\n"
     " y = Relu (s)",
     "", "normalises over axis 2"},
    {"softmax_over_channels", "a = Conv (x, w)\n r = Softmax <axis = 1> (a)\n y = Relu (r)", "",
     "normalises across channels"},
    // A Slice of the channels is followed (an index map): the output it reaches is the barrier.
    {"slice_of_channels", "a = Conv (x, w)\n r = Slice (a, st, en, ax)\n y = Relu (r)",
     "int64[1] st = {0}, int64[1] en = {2}, int64[1] ax = {1}", "graph output 'y'"},
    {"slice_of_channels_with_a_step",
     "a = Conv (x, w)\n r = Slice (a, st, en, ax, sp)\n y = Relu (r)",
     "int64[1] st = {0}, int64[1] en = {4}, int64[1] ax = {1}, int64[1] sp = {2}",
     "slices the channel axis"},
    // Tiles of 2 channels (group 2) and of 1 (group 4) in one tensor: no common local channel.
    {"grouped_convs_with_two_tilings",
     "a = Conv (x, w)\n r = Conv <group = 2> (a, wg)\n s = Conv <group = 4> (a, wq)\n"
     " t = Conv (s, wz)\n y = Add (r, t)",
     "float[8,1,1,1] wq = {1,1,1,1,1,1,1,1}, float[4,8,1,1] wz = "
     "{1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1}",
     "tiled"},
};

void PrintTo(const MustNotForm& c, std::ostream* os) { *os << c.name; }

class ChannelBarrierTest : public ::testing::TestWithParam<MustNotForm> {};

TEST_P(ChannelBarrierTest, GroupIsNotPrunable) {
  const MustNotForm& c = GetParam();
  std::string inits = init("w", {4, 2, 1, 1}) + ", " + init("wg", {4, 2, 1, 1});
  if (std::string(c.inits).size()) inits += std::string(", ") + c.inits;
  Model m = load(c.body, "float[1,2,4,4] x", "y", inits);
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup* g = groupOf(a, "a");
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(g->prunable);
  EXPECT_NE(g->reason.find(c.reason), std::string::npos) << g->reason;
  bool listed = false;
  for (const ChannelBarrier& b : a.barriers) listed |= b.reason.find(c.reason) != std::string::npos;
  EXPECT_TRUE(listed) << "the barrier is reported";
  // Surgery refuses it.
  EXPECT_FALSE(applyChannelPruning(m, a, {{g->id, {0}}}).isOk());
}

INSTANTIATE_TEST_SUITE_P(Barriers, ChannelBarrierTest, ::testing::ValuesIn(kBarriers),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace nnc
