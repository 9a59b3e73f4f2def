// Shapes completed by running the model (exec/shape_probe.h): the dims the runs prove are filled,
// the ones that follow contents are not, and a model that cannot run is left as it was.

#include "nncompress/exec/shape_probe.h"

#include <gtest/gtest.h>

#include <string>

#include "model_text.h"
#include "nncompress/analysis/model_stats.h"

namespace nnc {
namespace {

using testing::parseModelText;

std::string ramp(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(0.01 * (i % 7 + 1));
  return s;
}

// PyTorch's attention pattern: [N, 8] viewed as [N*2, 4] through a target computed from the
// batch (ONNX data propagation does not multiply symbols), viewed back as [N, 8].
std::string headSplitModel() {
  return R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 8] x) => (float[N, 3] y) <float[8, 8] w1 = {)" +
         ramp(64) + R"(}, float[4, 4] w2 = {)" + ramp(16) + R"(}, float[8, 3] w3 = {)" + ramp(24) +
         R"(}, int64[1] two = {2}, int64[1] four = {4}, int64[1] eight = {8},
  int64 zero = {0}, int64[1] axis0 = {0}> {
  h = MatMul(x, w1)
  s = Shape(h)
  n = Gather<axis = 0>(s, zero)
  n1 = Unsqueeze(n, axis0)
  n2 = Mul(n1, two)
  t = Concat<axis = 0>(n2, four)
  heads = Reshape(h, t)
  mixed = MatMul(heads, w2)
  t2 = Concat<axis = 0>(n1, eight)
  back = Reshape(mixed, t2)
  y = MatMul(back, w3)
})";
}

const Value& valueNamed(const Model& m, const std::string& name) {
  const Value* v = m.graph->findValue(name);
  EXPECT_NE(v, nullptr) << name;
  return *v;
}

TEST(ShapeProbe, RunsFillTheDimsTheBatchDoesNotChange) {
  Model m = parseModelText(headSplitModel());
  ASSERT_TRUE(m.graph);
  const auto& heads = valueNamed(m, "heads").type();
  // The premise: ONNX inference leaves the head view's dims unknown, so its MatMul has no MACs.
  ASSERT_TRUE(!heads.shape || !(*heads.shape)[1].isKnown()) << heads.toString();
  EXPECT_GE(computeModelStats(*m.graph).layers_with_unknown_macs, 1);

  const exec::ShapeProbeResult probe = exec::completeShapesByRunning(m);
  EXPECT_TRUE(probe.ran) << probe.not_run_reason;
  EXPECT_GE(probe.values_completed, 2);
  const auto& filled = *valueNamed(m, "heads").type().shape;
  ASSERT_EQ(filled.size(), 2u);
  EXPECT_EQ(filled[0].param, "2*N") << "two rows per sample";
  EXPECT_EQ(filled[1].value, 4);
  const auto& mixed = *valueNamed(m, "mixed").type().shape;
  EXPECT_EQ(mixed[1].value, 4);
  const auto& back = *valueNamed(m, "back").type().shape;
  EXPECT_EQ(back[0].param, "N");
  EXPECT_EQ(back[1].value, 8);
  const ModelStats stats = computeModelStats(*m.graph);
  EXPECT_EQ(stats.layers_with_unknown_macs, 0);
  EXPECT_EQ(stats.macs, 8 * 8 + 2 * 4 * 4 + 8 * 3) << "one sample: two head rows of 4x4";
  // Complete now: loading the model again in another command's path does not run it again.
  EXPECT_FALSE(exec::completeShapesByRunning(m).ran);
  // The graph output keeps its declared type.
  EXPECT_EQ(valueNamed(m, "y").type().toString(), "float32[N,3]");
}

TEST(ShapeProbe, ShapesThatFollowContentsStayUnknown) {
  // A zero target copies x's dims ([N, 8] in both runs) and the Tile repeats are 1 in both, so
  // both would look like [N, 8]; but the input's contents decide them. (NonZero and the other
  // ops whose shapes follow contents have no kernel: such models are not run at all.)
  Model m = parseModelText(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 8] x, int64[2] target) => (float zr, float zt, float zh)
  <int64[2] view = {-1, 4}, int64[1] one = {1}> {
  r = Reshape(x, target)
  rr = Relu(r)
  zr = ReduceSum<keepdims = 0>(rr)
  ones = Add(target, one)
  tiled = Tile(x, ones)
  tr = Relu(tiled)
  zt = ReduceSum<keepdims = 0>(tr)
  h = Reshape(x, view)
  hr = Relu(h)
  zh = ReduceSum<keepdims = 0>(hr)
})");
  ASSERT_TRUE(m.graph);
  ASSERT_FALSE(valueNamed(m, "rr").type().shape);
  const std::string tiled_before = valueNamed(m, "tr").type().toString();
  const exec::ShapeProbeResult probe = exec::completeShapesByRunning(m);
  EXPECT_TRUE(probe.ran) << probe.not_run_reason;
  // The rank (the target's length) is all they get.
  EXPECT_EQ(valueNamed(m, "rr").type().toString(), "float32[?,?]");
  EXPECT_EQ(valueNamed(m, "tr").type().toString(), tiled_before);
  // h and its Relu, whose first dim inference left unknown, are 2*N.
  EXPECT_EQ(probe.values_completed, 4) << "r and rr (their rank), h, hr";
  EXPECT_EQ((*valueNamed(m, "h").type().shape)[0].param, "2*N");
  EXPECT_EQ((*valueNamed(m, "hr").type().shape)[0].param, "2*N");
}

TEST(ShapeProbe, ModelsThatCannotRunAreLeftAlone) {
  Model m = parseModelText(R"(<ir_version: 8, opset_import: ["" : 13, "custom.domain" : 1]>
g (float[N, 8] x) => (float[N, 8] y) {
  c = custom.domain.Mystery(x)
  y = Relu(c)
})");
  ASSERT_TRUE(m.graph);
  const std::string before = valueNamed(m, "c").type().toString();
  const exec::ShapeProbeResult probe = exec::completeShapesByRunning(m);
  EXPECT_FALSE(probe.ran);
  EXPECT_NE(probe.not_run_reason.find("Mystery"), std::string::npos) << probe.not_run_reason;
  EXPECT_EQ(valueNamed(m, "c").type().toString(), before);
}

TEST(ShapeProbe, ImageSidesFollowStridesAndUpsampling) {
  // A stride-2 Conv halves H and W, an unpadded one takes 2 off, a Resize scales them by 4;
  // ONNX inference knows none of it.
  Model m = parseModelText(R"(<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 2, H, W] x) => (float[N, 3, ?, ?] y) <float[4, 2, 3, 3] w1 = {)" +
                           ramp(72) + R"(}, float[4, 4, 3, 3] w4 = {)" + ramp(144) +
                           R"(}, float[3, 4, 1, 1] w2 = {)" + ramp(12) +
                           R"(}, float[4] scales = {1, 1, 4, 4}> {
  c = Conv<strides = [2, 2], pads = [1, 1, 1, 1]>(x, w1)
  v = Conv(c, w4)
  u = Resize<mode = "nearest">(v, , scales)
  y = Conv(u, w2)
})");
  ASSERT_TRUE(m.graph);
  const std::string declared_y = valueNamed(m, "y").type().toString();
  const exec::ShapeProbeResult probe = exec::completeShapesByRunning(m);
  EXPECT_TRUE(probe.ran) << probe.not_run_reason;
  EXPECT_EQ(valueNamed(m, "c").type().toString(), "float32[N,4,H/2,W/2]");
  EXPECT_EQ(valueNamed(m, "v").type().toString(), "float32[N,4,H/2-2,W/2-2]");
  EXPECT_EQ(valueNamed(m, "u").type().toString(), "float32[N,4,2*H-8,2*W-8]");
  // The graph output keeps its declared type; what the runs proved counts its MACs.
  EXPECT_EQ(valueNamed(m, "y").type().toString(), declared_y);
  ASSERT_TRUE(valueNamed(m, "y").provenDims());
  EXPECT_EQ((*valueNamed(m, "y").provenDims())[2].param, "2*H-8");
  // Without sizes every side counts 1; at H=8, W=16 every layer counts what it costs.
  EXPECT_EQ(computeModelStats(*m.graph).macs, 4 * 2 * 9 + 4 * 4 * 9 + 3 * 4);
  m.graph->setCountingSizes({{"H", 8}, {"W", 16}});
  EXPECT_EQ(computeModelStats(*m.graph).macs,
            4 * 2 * 9 * (4 * 8) + 4 * 4 * 9 * (2 * 6) + 3 * 4 * (8 * 24));
  EXPECT_EQ(symbolicInputDims(*m.graph), "") << "every symbolic side has a size";
  // A clone (each pruning step works on one) keeps the sizes and the output's proven dims.
  EXPECT_EQ(computeModelStats(*m.clone().graph).macs, computeModelStats(*m.graph).macs);
}

TEST(ShapeProbe, ScaledSymbolsParseAndCount) {
  const ScaledSymbol heads = scaledSymbol("12*N");
  EXPECT_EQ(heads.name, "N");
  EXPECT_EQ(heads.at(3), 36);
  const ScaledSymbol half = scaledSymbol("H/2");
  EXPECT_EQ(half.name, "H");
  EXPECT_EQ(half.at(224), 112);
  EXPECT_EQ(half.at(101), 51) << "rounded up, as a padded stride-2 layer does";
  EXPECT_EQ(half.at(1), 1) << "a side never counts below 1";
  const ScaledSymbol valid = scaledSymbol("T/2-2");
  EXPECT_EQ(valid.name, "T");
  EXPECT_EQ(valid.at(101), 49);
  EXPECT_EQ(scaledSymbol("2*W+1").at(10), 21);
  for (const char* spelled : {"12*N", "H/2", "T/2-2", "2*W+1", "H-3"})
    EXPECT_EQ(scaledSymbol(spelled).dim().param, spelled);
  // Foreign spellings are names of their own.
  for (const char* name : {"batch", "seq-len", "a*b", "*N", "H/", "/2", "floor(H/2)x", "-1"})
    EXPECT_EQ(scaledSymbol(name).name, name);
}

}  // namespace
}  // namespace nnc
