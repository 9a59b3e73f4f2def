// Shape folding of Equal, Where and ConstantOfShape (the class-token Expand shape torch exports for
// ViT) checked against our executor: every value the folder claims to know must equal what the
// graph computes when run.

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include "nncompress/exec/executor.h"
#include "nncompress/ir/shape_fold.h"
#include "nncompress/onnx_io/model_io.h"

namespace nnc {
namespace {

StatusOr<Model> loadText(const std::string& text) {
  onnx::ModelProto proto;
  const auto status = onnx::OnnxParser::Parse(proto, text.c_str());
  if (!status.IsOK()) return Status(StatusCode::kInvalidModel, status.ErrorMessage());
  return parseModel(proto.SerializeAsString(), {}, {});
}

// Runs the model with every value in `names` as an extra graph output and compares each with
// its folded tensor (dtype, shape and contents). Returns how many were folded.
size_t expectFoldedEqualsExecuted(const std::string& text, const std::vector<std::string>& names,
                                  const std::vector<Tensor>& inputs) {
  auto model = loadText(text);
  EXPECT_TRUE(model.isOk()) << model.status().toString();
  if (!model.isOk()) return 0;
  Graph& g = *model->graph;
  const auto folded = foldShapeComputations(g, model->opsetVersion("")).values;
  for (const std::string& name : names) g.addOutput(g.findValue(name));
  auto ex = exec::Executor::create(*model, {1});
  EXPECT_TRUE(ex.isOk()) << ex.status().toString();
  if (!ex.isOk()) return 0;
  auto got = (*ex)->run(inputs);
  EXPECT_TRUE(got.isOk()) << got.status().toString();
  if (!got.isOk()) return 0;
  const size_t first = got->size() - names.size();
  size_t count = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    auto it = folded.find(g.findValue(names[i]));
    if (it == folded.end()) continue;
    ++count;
    const Tensor& run = (*got)[first + i];
    SCOPED_TRACE(names[i]);
    EXPECT_EQ(it->second.dtype(), run.dtype());
    EXPECT_EQ(it->second.shape(), run.shape());
    EXPECT_EQ(it->second.toInt64Vector(), run.toInt64Vector());
  }
  return count;
}

Tensor image() { return Tensor::fromVector<float>({1, 4}, {1.f, 2.f, 3.f, 4.f}); }

// torchvision ViT: class_token.expand(n, -1, -1) exported at opset 13 with a static batch.
const char* kClassToken = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  vit (float[1, 4] x, float[1, 1, 4] cls) => (y, e)
  {
    target = Constant <value = int64[3] {1, -1, -1}> ()
    three = Constant <value = int64[1] {3}> ()
    ones = ConstantOfShape <value = int64[1] {1}> (three)
    m1 = Constant <value = int64 {-1}> ()
    neg = Mul (ones, m1)
    eq = Equal (target, neg)
    shape = Where (eq, ones, target)
    e = Expand (cls, shape)
    y = Add (x, x)
  }
)";

TEST(ShapeFoldExecTest, ClassTokenExpandShapeFoldsAsExecuted) {
  const Tensor cls = Tensor::fromVector<float>({1, 1, 4}, {1.f, 2.f, 3.f, 4.f});
  EXPECT_EQ(expectFoldedEqualsExecuted(kClassToken, {"ones", "neg", "eq", "shape"}, {image(), cls}),
            4u);
  auto model = loadText(kClassToken);
  ASSERT_TRUE(model.isOk());
  const auto folded = foldShapeComputations(*model->graph, 13).values;
  const Tensor& shape = folded.at(model->graph->findValue("shape"));
  EXPECT_EQ(shape.toInt64Vector(), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(folded.at(model->graph->findValue("eq")).dtype(), DType::kBool);
}

// Broadcasting of one-element operands, an empty ConstantOfShape shape (a scalar), int32 and bool
// fill values, and Where with a scalar condition.
TEST(ShapeFoldExecTest, BroadcastScalarsAndFillTypesFoldAsExecuted) {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 4] x) => (y)
    {
      s = Shape (x)
      empty = Constant <value = int64[0] {}> ()
      scalar = ConstantOfShape <value = int64[1] {4}> (empty)
      eq = Equal (s, scalar)
      two = Constant <value = int64[1] {2}> ()
      i32 = ConstantOfShape <value = int32[1] {7}> (two)
      flags = ConstantOfShape <value = bool[1] {1}> (two)
      picked = Where (eq, s, scalar)
      t = Constant <value = bool {0}> ()
      other = Where (t, s, two)
      y = Add (x, x)
    }
  )";
  EXPECT_EQ(expectFoldedEqualsExecuted(text, {"scalar", "eq", "i32", "flags", "picked", "other"},
                                       {image()}),
            6u);
}

// Equal before opset 7 has a `broadcast` attribute and other rules; a float fill is not a shape.
TEST(ShapeFoldExecTest, OldEqualAndFloatFillAreNotFolded) {
  const char* text = R"(
    <ir_version: 3, opset_import: ["" : 6]>
    g (float[1, 4] x) => (y)
    {
      a = Constant <value = int64[2] {1, 4}> ()
      eq = Equal (a, a)
      y = Add (x, x)
    }
  )";
  auto model = loadText(text);
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  EXPECT_EQ(foldShapeComputations(*model->graph, 6).values.count(model->graph->findValue("eq")),
            0u);
  EXPECT_EQ(foldShapeComputations(*model->graph, 7).values.count(model->graph->findValue("eq")),
            1u);

  const char* fill = R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 4] x) => (y)
    {
      two = Constant <value = int64[1] {2}> ()
      f = ConstantOfShape <value = float[1] {1.5}> (two)
      d = ConstantOfShape (two)
      y = Add (x, x)
    }
  )";
  EXPECT_EQ(expectFoldedEqualsExecuted(fill, {"f", "d"}, {image()}), 0u);
}

// torchvision Swin's window padding at opset 13: pads computed as Mod of the spatial size, a
// ConstantOfShape of zeros, Reshape [-1, 2], a reversed Slice (ends INT64_MIN + 1, a literal
// although it lies in the range that codes symbols), Transpose and Reshape [-1]; plus Range and
// a strided multi-axis Slice, and a reversed Slice of an empty array (libonnx 1.12's data
// propagation crashed on it; guarded in onnx_io). Each folded value must equal what the executor
// computes.
TEST(ShapeFoldExecTest, SwinWindowPaddingFoldsAsExecuted) {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 5, 6, 4] x) => (y)
    {
      s = Shape (x)
      i1 = Constant <value = int64 {1}> ()
      h = Gather (s, i1)
      w7 = Constant <value = int64 {3}> ()
      m0 = Mod (h, w7)
      rest = Sub (w7, m0)
      pad_h = Mod (rest, w7)
      neg = Constant <value = int64 {-7}> ()
      m_neg = Mod (neg, w7)
      f_neg = Mod <fmod = 1> (neg, w7)
      z = Constant <value = int64[1] {0}> ()
      ph = Unsqueeze (pad_h, z)
      four = Constant <value = int64[1] {4}> ()
      zeros = ConstantOfShape <value = int64[1] {0}> (four)
      all = Concat <axis = 0> (z, z, ph, z, zeros)
      pairs_shape = Constant <value = int64[2] {-1, 2}> ()
      pairs = Reshape (all, pairs_shape)
      st = Constant <value = int64[1] {-1}> ()
      en = Constant <value = int64[1] {-9223372036854775807}> ()
      ax = Constant <value = int64[1] {0}> ()
      rev = Slice (pairs, st, en, ax, st)
      tr = Transpose <perm = [1, 0]> (rev)
      flat_shape = Constant <value = int64[1] {-1}> ()
      pads = Reshape (tr, flat_shape)
      y = Pad (x, pads)
      lim = Constant <value = int64 {11}> ()
      two = Constant <value = int64 {2}> ()
      r = Range (i1, lim, two)
      rr = Range (lim, i1, neg)
      grid_shape = Constant <value = int64[2] {2, 4}> ()
      g8 = Reshape (all, grid_shape)
      s2 = Constant <value = int64[2] {0, 3}> ()
      e2 = Constant <value = int64[2] {2, -5}> ()
      a2 = Constant <value = int64[2] {0, 1}> ()
      st2 = Constant <value = int64[2] {1, -2}> ()
      box = Slice (g8, s2, e2, a2, st2)
      none = Constant <value = int64[0] {}> ()
      rev_none = Slice (none, st, en, ax, st)
    }
  )";
  const Tensor x = Tensor::fromVector<float>({1, 5, 6, 4}, std::vector<float>(120, 1.f));
  const std::vector<std::string> names = {"m0",  "pad_h", "m_neg", "f_neg", "zeros",
                                          "all", "pairs", "rev",   "tr",    "pads",
                                          "r",   "rr",    "g8",    "box",   "rev_none"};
  EXPECT_EQ(expectFoldedEqualsExecuted(text, names, {x}), names.size());
  auto model = loadText(text);
  ASSERT_TRUE(model.isOk());
  const auto folded = foldShapeComputations(*model->graph, 13).values;
  EXPECT_EQ(folded.at(model->graph->findValue("pads")).toInt64Vector(),
            (std::vector<int64_t>{0, 0, 1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(folded.at(model->graph->findValue("m_neg")).toInt64Vector()[0], 2);
  EXPECT_EQ(folded.at(model->graph->findValue("f_neg")).toInt64Vector()[0], -1);
  // After loading, the padded tensor's shape is static: the pads were folded and fed back.
  EXPECT_EQ(model->graph->findValue("y")->staticShape(), (Shape{1, 5, 7, 4}));
}

// Mod before opset 10 and Range before 11 do not exist; a Range longer than the fold limit and a
// Reshape whose target does not fit the data are left alone.
TEST(ShapeFoldExecTest, OutOfRangeModRangeAndReshapeAreNotFolded) {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 4] x) => (y)
    {
      a = Constant <value = int64 {0}> ()
      b = Constant <value = int64 {1000}> ()
      c = Constant <value = int64 {1}> ()
      long = Range (a, b, c)
      six = Constant <value = int64[6] {1, 2, 3, 4, 5, 6}> ()
      bad_shape = Constant <value = int64[2] {4, 2}> ()
      bad = Reshape (six, bad_shape)
      zero = Constant <value = int64 {0}> ()
      byzero = Mod (b, zero)
      y = Add (x, x)
    }
  )";
  auto model = loadText(text);
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  const auto folded = foldShapeComputations(*model->graph, 13).values;
  for (const char* name : {"long", "bad", "byzero"})
    EXPECT_EQ(folded.count(model->graph->findValue(name)), 0u) << name;
}

}  // namespace
}  // namespace nnc
