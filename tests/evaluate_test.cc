// evaluate(): which outputs hold class scores, top-1 agreement over all of them, and the outputs'
// fidelity (1 - relative squared error) to a reference. A
// regression's [N, 1] output would always agree with its reference, so it gives no agreement
// (and compress, which asks for class scores, refuses it); a model with several classification
// heads agrees only as far as every head does; a final Softmax over the last axis of [N, T, K]
// gives one row of class scores per position.

#include "nncompress/pipeline/evaluate.h"

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include "model_text.h"
#include "nncompress/onnx_io/model_io.h"
#include "random_tensor.h"
#include "tensor_reader.h"

namespace nnc {
namespace {

Model parse(const std::string& text) { return testing::parseModelText(text); }

// A model of x [N, 2, 3] with outputs `outs` computed by `body` (opset 13).
Model graph(const std::string& body, const std::string& outs) {
  return parse("<ir_version: 8, opset_import: [\"\" : 13]>\ng (float[N,2,3] x) => (" + outs +
               ")\n{\n  f = Flatten (x)\n" + body + "}\n");
}

struct Measured {
  Status status;
  EvalResult result;
};

// `model` against `reference` on 10 random samples.
Measured measure(const Model& model, const Model& reference, bool require_classes,
                 const std::vector<int64_t>* labels = nullptr) {
  auto ex = exec::Executor::create(model, {1});
  auto ref = exec::Executor::create(reference, {1});
  EXPECT_TRUE(ex.isOk() && ref.isOk());
  testing::TensorReader reader(testing::randomTensor({10, 2, 3}, 7));
  EvalOptions o;
  o.batch = 4;
  o.classes = classesOf(model);
  o.require_classes = require_classes;
  auto r = evaluate(**ex, reader, labels, ref->get(), o);
  if (!r.isOk()) return {r.status(), {}};
  return {Status::ok(), *r};
}

TEST(Evaluate, AgreementAveragesEveryClassifierHead) {
  // Head 2 of `flipped` is the negated scores: its top-1 is the reference's bottom-1, never the
  // same class, so each sample agrees on one head of two.
  const Model reference =
      graph("  a = Identity (f)\n  b = Identity (f)\n", "float[N,6] a, float[N,6] b");
  const Model flipped = graph("  a = Identity (f)\n  b = Neg (f)\n", "float[N,6] a, float[N,6] b");
  const Measured m = measure(flipped, reference, true);
  ASSERT_TRUE(m.status.isOk()) << m.status.toString();
  ASSERT_TRUE(m.result.agreement);
  EXPECT_DOUBLE_EQ(*m.result.agreement, 0.5);
  // The first output alone is unchanged: cosine and SQNR, which read it, are perfect.
  EXPECT_DOUBLE_EQ(*m.result.cosine, 1.0);
  EXPECT_DOUBLE_EQ(*measure(reference, reference, true).result.agreement, 1.0);
}

// Fidelity: 1 - each output's relative squared error, averaged over outputs. Head b scaled by 0.9
// has a relative squared error of 0.01, head a none: 1 - 0.01 / 2.
TEST(Evaluate, FidelityAveragesTheRelativeErrorOfEveryOutput) {
  const Model reference =
      graph("  a = Identity (f)\n  b = Identity (f)\n", "float[N,6] a, float[N,6] b");
  const Model scaled = graph(
      "  k = Constant <value: tensor = float[1] {0.9}> ()\n  a = Identity (f)\n  b = Mul (f, k)\n",
      "float[N,6] a, float[N,6] b");
  const Measured m = measure(scaled, reference, false);
  ASSERT_TRUE(m.status.isOk()) << m.status.toString();
  ASSERT_TRUE(m.result.fidelity);
  EXPECT_NEAR(*m.result.fidelity, 0.995, 1e-6);
  EXPECT_DOUBLE_EQ(*measure(reference, reference, false).result.fidelity, 1.0);
}

TEST(Evaluate, RegressionOutputsHoldNoClassScores) {
  // [N, 1] (always the same top-1) and a [N, 2, 3] map (2 rows that are not classes): no
  // agreement, cosine and SQNR still measured; asked for class scores, it is refused.
  const std::string axes = "  axes = Constant <value: tensor = int64[1] {1}> ()\n";
  const Model sum = graph(axes + "  s = ReduceSum (f, axes)\n  m = Identity (x)\n",
                          "float[N,1] s, float[N,2,3] m");
  const Model scaled = graph(axes + "  t = ReduceSum (f, axes)\n  s = Neg (t)\n  m = Neg (x)\n",
                             "float[N,1] s, float[N,2,3] m");
  const Measured m = measure(scaled, sum, false);
  ASSERT_TRUE(m.status.isOk()) << m.status.toString();
  EXPECT_FALSE(m.result.agreement);
  ASSERT_TRUE(m.result.cosine);
  EXPECT_NEAR(*m.result.cosine, -1.0, 1e-6);
  const Measured refused = measure(scaled, sum, true);
  EXPECT_EQ(refused.status.code(), StatusCode::kUnsupported);
  EXPECT_NE(refused.status.message().find("no output holds class scores ('s' [4x1], 'm' [4x2x3])"),
            std::string::npos)
      << refused.status.message();
  // Labels need class scores in the first output.
  const std::vector<int64_t> labels(10, 0);
  EXPECT_EQ(measure(sum, sum, false, &labels).status.code(), StatusCode::kUnsupported);
}

TEST(Evaluate, ClassesOfAnySingletonTailOrLastAxisSoftmax) {
  // [N, 6, 1, 1] holds 6 class scores per sample.
  const Model column = graph(
      "  shape = Constant <value: tensor = int64[4] {-1, 6, 1, 1}> ()\n  y = Reshape (f, shape)\n",
      "float[N,6,1,1] y");
  const Model column_flipped = graph(
      "  shape = Constant <value: tensor = int64[4] {-1, 6, 1, 1}> ()\n  n = Neg (f)\n"
      "  y = Reshape (n, shape)\n",
      "float[N,6,1,1] y");
  EXPECT_DOUBLE_EQ(*measure(column_flipped, column, true).result.agreement, 0.0);

  // A Softmax over the last axis of [N, 2, 3]: a row of 3 classes per position. `half` negates
  // position 1 only, so every sample agrees on one row of two.
  const Model probs = graph("  y = Softmax (x)\n", "float[N,2,3] y");
  const Model half = graph(
      "  c = Constant <value: tensor = float[2,1] {1, -1}> ()\n  z = Mul (x, c)\n"
      "  y = Softmax (z)\n",
      "float[N,2,3] y");
  ASSERT_EQ(classesOf(half), std::vector{EvalOptions::Classes::kLastAxis});
  const Measured m = measure(half, probs, true);
  ASSERT_TRUE(m.status.isOk()) << m.status.toString();
  EXPECT_DOUBLE_EQ(*m.result.agreement, 0.5);
  // One label per sample cannot score two rows per sample.
  const std::vector<int64_t> labels(10, 0);
  EXPECT_EQ(measure(half, probs, true, &labels).status.code(), StatusCode::kUnsupported);
  // A Softmax over axis 1 is not a last-axis class row: [N, 2, 3] then holds no class scores.
  const Model axis1 = graph("  y = Softmax <axis: int = 1> (x)\n", "float[N,2,3] y");
  EXPECT_EQ(measure(axis1, axis1, true).status.code(), StatusCode::kUnsupported);
}

}  // namespace
}  // namespace nnc
