// The weight layout table (ir/weight_layout.h) and the convolution geometry helper
// (ir/conv_geometry.h): every op and attribute combination the table claims, each element's
// channels against a plain reference, and the geometry against hand-computed sizes.
#include <gtest/gtest.h>

#include <map>
#include <utility>

#include "nncompress/ir/conv_geometry.h"
#include "nncompress/ir/weight_layout.h"

namespace nnc {
namespace {

// A graph with one node `op` reading x and a weight of shape `w` at `weight_input`.
struct OneNode {
  Model model;
  Graph& g = *model.graph;
  Node* node = nullptr;
  OneNode(const std::string& op, const Shape& w, int weight_input = 1,
          const std::string& domain = "") {
    std::vector<Value*> inputs;
    for (int i = 0; i <= weight_input; ++i)
      inputs.push_back(i == weight_input ? g.addInitializer("w", Tensor(DType::kFloat32, w))
                                         : g.addInitializer("in" + std::to_string(i),
                                                            Tensor(DType::kFloat32, {1})));
    node = g.addNode(op, inputs, {"y"}, domain);
  }
  OneNode& attr(const std::string& name, int64_t v) {
    node->setAttribute(Attribute::makeInt(name, v));
    return *this;
  }
};

using ElementChannels = std::map<int64_t, std::pair<int64_t, int64_t>>;  // index -> (out, in)

ElementChannels visit(const WeightLayout& layout, const Shape& w) {
  ElementChannels seen;
  layout.forEachElement(w, [&](int64_t out, int64_t in, int64_t i) {
    EXPECT_TRUE(seen.emplace(i, std::make_pair(out, in)).second) << "index " << i << " twice";
  });
  EXPECT_EQ(static_cast<int64_t>(seen.size()), shapeNumel(w));
  return seen;
}

TEST(WeightLayout, ConvGroupedReadsItsGroupsInputs) {
  // W [M=4, C/group=3, 2] with group 2: output o in group o / 2 reads inputs g*3 + j.
  OneNode n("Conv", {4, 3, 2});
  n.attr("group", 2);
  const auto layout = weightLayout(*n.node);
  ASSERT_TRUE(layout);
  EXPECT_EQ(layout->weight_input, 1);
  EXPECT_EQ(layout->bias_input, 2);
  EXPECT_EQ(layout->out_axis, 0);
  EXPECT_EQ(layout->in_axis, 1);
  EXPECT_EQ(layout->grouped, GroupedAxis::kInput);
  EXPECT_EQ(layout->group, 2);
  EXPECT_EQ(layout->data_channel_axis, 1);
  EXPECT_FALSE(layout->matrix);
  EXPECT_TRUE(layout->fitsRank(3));
  EXPECT_FALSE(layout->fitsRank(2));
  EXPECT_EQ(layout->outputChannels({4, 3, 2}), 4);
  EXPECT_EQ(layout->inputChannels({4, 3, 2}), 6);
  ElementChannels want;
  for (int64_t g = 0; g < 2; ++g)
    for (int64_t k = 0; k < 2; ++k)
      for (int64_t j = 0; j < 3; ++j)
        for (int64_t s = 0; s < 2; ++s) {
          const int64_t o = g * 2 + k;
          want[(o * 3 + j) * 2 + s] = {o, g * 3 + j};
        }
  EXPECT_EQ(visit(*layout, {4, 3, 2}), want);
}

TEST(WeightLayout, ConvWithoutGroupAndTheIntegerConvs) {
  OneNode conv("Conv", {5, 2, 3, 3});
  const auto layout = weightLayout(*conv.node);
  ASSERT_TRUE(layout);
  EXPECT_EQ(layout->group, 1);
  EXPECT_EQ(layout->outputChannels({5, 2, 3, 3}), 5);
  EXPECT_EQ(layout->inputChannels({5, 2, 3, 3}), 2);
  const auto seen = visit(*layout, {5, 2, 3, 3});
  EXPECT_EQ(seen.at((4 * 2 + 1) * 9 + 8), std::make_pair(int64_t{4}, int64_t{1}));

  OneNode integer("ConvInteger", {5, 2, 3, 3});
  integer.attr("group", 3);
  const auto li = weightLayout(*integer.node);
  ASSERT_TRUE(li);
  EXPECT_EQ(li->weight_input, 1);
  EXPECT_EQ(li->bias_input, -1);
  EXPECT_EQ(li->inputChannels({6, 2, 3, 3}), 6);

  OneNode qlinear("QLinearConv", {4, 2, 1, 1}, 3);
  const auto lq = weightLayout(*qlinear.node);
  ASSERT_TRUE(lq);
  EXPECT_EQ(lq->weight_input, 3);
  EXPECT_EQ(lq->bias_input, 8);
  EXPECT_EQ(lq->out_axis, 0);
}

TEST(WeightLayout, ConvTransposeGroupedMakesItsGroupsOutputs) {
  // W [C=4, M/group=3, 2] with group 2: input i in group i / 2 makes outputs g*3 + k.
  OneNode n("ConvTranspose", {4, 3, 2});
  n.attr("group", 2);
  const auto layout = weightLayout(*n.node);
  ASSERT_TRUE(layout);
  EXPECT_EQ(layout->out_axis, 1);
  EXPECT_EQ(layout->in_axis, 0);
  EXPECT_EQ(layout->grouped, GroupedAxis::kOutput);
  EXPECT_EQ(layout->outputChannels({4, 3, 2}), 6);
  EXPECT_EQ(layout->inputChannels({4, 3, 2}), 4);
  ElementChannels want;
  for (int64_t g = 0; g < 2; ++g)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t k = 0; k < 3; ++k)
        for (int64_t s = 0; s < 2; ++s) {
          const int64_t in = g * 2 + i;
          want[(in * 3 + k) * 2 + s] = {g * 3 + k, in};
        }
  EXPECT_EQ(visit(*layout, {4, 3, 2}), want);

  OneNode plain("ConvTranspose", {4, 3, 2});
  EXPECT_EQ(weightLayout(*plain.node)->outputChannels({4, 3, 2}), 3);
}

TEST(WeightLayout, GemmTransposesAndMatMul) {
  for (int64_t trans_b : {0, 1}) {
    for (int64_t trans_a : {0, 1}) {
      SCOPED_TRACE("transA " + std::to_string(trans_a) + " transB " + std::to_string(trans_b));
      // K = 3 inputs, N = 2 outputs: B [3, 2], or [2, 3] with transB.
      const Shape w = trans_b ? Shape{2, 3} : Shape{3, 2};
      OneNode n("Gemm", w);
      n.attr("transB", trans_b).attr("transA", trans_a);
      const auto layout = weightLayout(*n.node);
      ASSERT_TRUE(layout);
      EXPECT_TRUE(layout->matrix);
      EXPECT_TRUE(layout->fitsRank(2));
      EXPECT_FALSE(layout->fitsRank(3));
      EXPECT_EQ(layout->bias_input, 2);
      EXPECT_EQ(layout->out_axis, trans_b ? 0 : 1);
      EXPECT_EQ(layout->in_axis, trans_b ? 1 : 0);
      EXPECT_EQ(layout->data_channel_axis, trans_a ? 0 : 1);
      EXPECT_EQ(layout->outputChannels(w), 2);
      EXPECT_EQ(layout->inputChannels(w), 3);
      ElementChannels want;
      for (int64_t k = 0; k < 3; ++k)
        for (int64_t o = 0; o < 2; ++o) want[trans_b ? o * 3 + k : k * 2 + o] = {o, k};
      EXPECT_EQ(visit(*layout, w), want);
    }
  }
  OneNode mm("MatMul", {3, 2});
  const auto layout = weightLayout(*mm.node);
  ASSERT_TRUE(layout);
  EXPECT_EQ(layout->out_axis, 1);
  EXPECT_EQ(layout->in_axis, 0);
  EXPECT_EQ(layout->data_channel_axis, -1);
  EXPECT_EQ(layout->bias_input, -1);
  EXPECT_EQ(layout->outputChannels({3, 2}), 2);
}

TEST(WeightLayout, OpsWithoutAWeightOrInAnotherDomainHaveNone) {
  OneNode relu("Relu", {1});
  EXPECT_FALSE(weightLayout(*relu.node));
  OneNode custom("Conv", {4, 3, 1, 1}, 1, "com.example");
  EXPECT_FALSE(weightLayout(*custom.node));
}

// ---- convolution geometry ----

ConvWindow window(const std::string& auto_pad, std::vector<int64_t> strides,
                  std::vector<int64_t> dilations, std::vector<int64_t> pads) {
  ConvWindow w;
  OneNode n("Conv", {1, 1, 1});
  n.node->setAttribute(Attribute::makeString("auto_pad", auto_pad));
  if (!strides.empty()) n.node->setAttribute(Attribute::makeInts("strides", strides));
  if (!dilations.empty()) n.node->setAttribute(Attribute::makeInts("dilations", dilations));
  if (!pads.empty()) n.node->setAttribute(Attribute::makeInts("pads", pads));
  return ConvWindow::of(*n.node);
}

void expectAxis(const StatusOr<AxisGeometry>& got, int64_t out, int64_t begin, int64_t end) {
  ASSERT_TRUE(got.isOk()) << got.status().message();
  EXPECT_EQ(got->out, out);
  EXPECT_EQ(got->pad_begin, begin);
  EXPECT_EQ(got->pad_end, end);
}

TEST(ConvGeometry, ExplicitPadsStridesAndDilations) {
  // in 5, k 3, stride 2, pads 1+1: (5 + 2 - 3) / 2 + 1 = 3.
  expectAxis(convAxis(window("NOTSET", {2}, {}, {1, 1}), 0, 1, 5, 3), 3, 1, 1);
  // dilation 2 makes a 3-tap kernel span 5: (7 - 5) / 1 + 1 = 3.
  expectAxis(convAxis(window("NOTSET", {}, {2}, {}), 0, 1, 7, 3), 3, 0, 0);
  // 2-D pads are [begin_0, begin_1, end_0, end_1]; strides per axis.
  const ConvWindow w2 = window("NOTSET", {1, 2}, {}, {1, 2, 3, 4});
  expectAxis(convAxis(w2, 0, 2, 4, 3), 6, 1, 3);
  expectAxis(convAxis(w2, 1, 2, 4, 3), 4, 2, 4);
}

TEST(ConvGeometry, AutoPadSameUpperSameLowerAndValid) {
  // in 5, k 4, stride 2: out ceil(5/2) = 3, total (3-1)*2 + 4 - 5 = 3 padding.
  expectAxis(convAxis(window("SAME_UPPER", {2}, {}, {}), 0, 1, 5, 4), 3, 1, 2);
  expectAxis(convAxis(window("SAME_LOWER", {2}, {}, {}), 0, 1, 5, 4), 3, 2, 1);
  // Even total: split evenly either way; explicit pads are ignored.
  expectAxis(convAxis(window("SAME_LOWER", {}, {}, {7, 7}), 0, 1, 6, 3), 6, 1, 1);
  // VALID: no padding even when pads are written.
  expectAxis(convAxis(window("VALID", {2}, {}, {9, 9}), 0, 1, 5, 3), 2, 0, 0);
}

TEST(ConvGeometry, CeilModeRoundsUpButNotIntoTheEndPadding) {
  const ConvWindow w = window("NOTSET", {2}, {}, {});
  expectAxis(convAxis(w, 0, 1, 6, 3, /*ceil_mode=*/false), 2, 0, 0);
  expectAxis(convAxis(w, 0, 1, 6, 3, /*ceil_mode=*/true), 3, 0, 0);
  // in 6, k 2, stride 2, end pad 1: ceil gives 4 windows, the 4th would start at 6 (padding).
  expectAxis(convAxis(window("NOTSET", {2}, {}, {0, 1}), 0, 1, 6, 2, true), 3, 0, 1);
  // VALID ignores ceil_mode.
  expectAxis(convAxis(window("VALID", {2}, {}, {}), 0, 1, 6, 3, true), 2, 0, 0);
}

TEST(ConvGeometry, ErrorsNameTheProblem) {
  auto unknown = convAxis(window("SAME", {}, {}, {}), 0, 1, 5, 3);
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidModel);
  EXPECT_NE(unknown.status().message().find("auto_pad 'SAME'"), std::string::npos);
  EXPECT_EQ(convAxis(window("NOTSET", {0}, {}, {}), 0, 1, 5, 3).status().code(),
            StatusCode::kInvalidModel);
  EXPECT_EQ(convAxis(window("NOTSET", {}, {}, {-1, 0}), 0, 1, 5, 3).status().code(),
            StatusCode::kInvalidModel);
  EXPECT_EQ(convAxis(window("NOTSET", {}, {}, {}), 0, 1, 2, 3).status().code(),
            StatusCode::kShapeMismatch);
}

TEST(ConvGeometry, TransposedOutputPaddingOutputShapeAndAutoPad) {
  // in 3, k 3, stride 2, output_padding 1: full 2*2 + 1 + 3 = 8.
  OneNode n("ConvTranspose", {1, 1, 3});
  n.node->setAttribute(Attribute::makeInts("strides", {2}));
  n.node->setAttribute(Attribute::makeInts("output_padding", {1}));
  n.node->setAttribute(Attribute::makeInts("pads", {1, 1}));
  ConvWindow w = ConvWindow::of(*n.node);
  AxisGeometry g = convTransposeAxis(w, 0, 1, 3, 3);
  EXPECT_EQ(g.out, 6);
  EXPECT_EQ(g.pad_begin, 1);
  EXPECT_EQ(g.pad_end, 1);
  w.auto_pad = AutoPad::kValid;  // pads ignored
  EXPECT_EQ(convTransposeAxis(w, 0, 1, 3, 3).out, 8);
  // SAME_*: out = in * stride = 6, total 2 split evenly.
  w.auto_pad = AutoPad::kSameUpper;
  g = convTransposeAxis(w, 0, 1, 3, 3);
  EXPECT_EQ(g.out, 6);
  EXPECT_EQ(g.pad_begin, 1);
  // output_shape 7: total 1, at the end unless SAME_LOWER.
  w.output_shape = {1, 1, 7};
  w.auto_pad = AutoPad::kNotSet;
  g = convTransposeAxis(w, 0, 1, 3, 3);
  EXPECT_EQ(g.out, 7);
  EXPECT_EQ(g.pad_begin, 0);
  EXPECT_EQ(g.pad_end, 1);
  w.auto_pad = AutoPad::kSameLower;
  g = convTransposeAxis(w, 0, 1, 3, 3);
  EXPECT_EQ(g.pad_begin, 1);
  EXPECT_EQ(g.pad_end, 0);
  // Beyond the full extent: no padding (zeros at the end).
  w.output_shape = {10};
  g = convTransposeAxis(w, 0, 1, 3, 3);
  EXPECT_EQ(g.out, 10);
  EXPECT_EQ(g.pad_begin + g.pad_end, 0);
}

}  // namespace
}  // namespace nnc
