// quantize on sequence models: the W and R weights of LSTM, GRU and RNN layers (nearly all of
// such a model's bytes) are stored as int8 rows, in every format, and the file answers as the
// float model does in ONNX Runtime.

#include <gtest/gtest.h>

#include <cmath>

#include "graph_input.h"
#include "nncompress/data/npy.h"
#include "nncompress/onnx_io/model_io.h"
#include "ort_util.h"
#include "random_tensor.h"

namespace nnc {
namespace {

constexpr int64_t kSteps = 12, kIn = 16, kHidden = 32;

int64_t gatesOf(const std::string& op) { return op == "LSTM" ? 4 : op == "GRU" ? 3 : 1; }

// x [N, 12, 16] -> Transpose to [12, N, 16] -> bidirectional `op` (hidden 32) -> Y_h [2, N, 32]
// -> Transpose -> Reshape [N, 64] -> Gemm [N, 5].
Model sequenceModel(const std::string& op) {
  const int64_t gates = gatesOf(op);
  Model m;
  m.opset_imports = {{"", 14}};
  Graph& g = *m.graph;
  g.setName(op);
  Value* x = testing::addTypedInput(g, "x", DType::kFloat32,
                                    {Dim::symbol("N"), Dim::known(kSteps), Dim::known(kIn)});
  Node* tx = g.addNode("Transpose", {x}, {"tx"});
  tx->setAttribute(Attribute::makeInts("perm", {1, 0, 2}));
  const float bound = 1.f / std::sqrt(float(kHidden));
  Value* w =
      g.addInitializer("W", testing::randomTensor({2, gates * kHidden, kIn}, 1, -bound, bound));
  Value* r =
      g.addInitializer("R", testing::randomTensor({2, gates * kHidden, kHidden}, 2, -bound, bound));
  Value* b = g.addInitializer("B", testing::randomTensor({2, 2 * gates * kHidden}, 3, -.1f, .1f));
  Node* rnn = g.addNode(op, {tx->output(0), w, r, b}, {"", "yh"});
  rnn->setName("rnn");
  rnn->setAttribute(Attribute::makeInt("hidden_size", kHidden));
  rnn->setAttribute(Attribute::makeString("direction", "bidirectional"));
  Node* ty = g.addNode("Transpose", {rnn->output(1)}, {"ty"});
  ty->setAttribute(Attribute::makeInts("perm", {1, 0, 2}));
  Value* shape = g.addInitializer("shape", Tensor::fromVector<int64_t>({2}, {0, 2 * kHidden}));
  Node* flat = g.addNode("Reshape", {ty->output(0), shape}, {"flat"});
  Node* head = g.addNode(
      "Gemm",
      {flat->output(0), g.addInitializer("fc_w", testing::randomTensor({5, 2 * kHidden}, 4)),
       g.addInitializer("fc_b", testing::randomTensor({5}, 5))},
      {"y"});
  head->setAttribute(Attribute::makeInt("transB", 1));
  head->output(0)->setType({DType::kFloat32, std::vector<Dim>{Dim::symbol("N"), Dim::known(5)}});
  g.addOutput(head->output(0));
  return m;
}

double cosine(const Tensor& a, const Tensor& b) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double p = a.data<float>()[i], q = b.data<float>()[i];
    ab += p * q, aa += p * p, bb += q * q;
  }
  return ab / std::sqrt(aa * bb + 1e-30);
}

TEST(QuantRecurrent, WeightsStoredAsInt8AndOrtAgrees) {
  ASSERT_TRUE(testing::ortAvailable());
  for (const char* op : {"LSTM", "GRU", "RNN"}) {
    for (const char* format : {"qdq", "weights-only"}) {
      SCOPED_TRACE(std::string(op) + " " + format);
      testing::TempDir dir;
      ASSERT_TRUE(saveModel(sequenceModel(op), dir / "f.onnx").isOk());
      const Tensor calib = testing::randomTensor({64, kSteps, kIn}, 9, -2.f, 2.f);
      ASSERT_TRUE(data::writeNpy((dir / "calib.npy").string(), calib).isOk());
      auto r = testing::runCli("quantize " + testing::quote(dir / "f.onnx") + " -o " +
                               testing::quote(dir / "q.onnx") + " --format " + format +
                               " --calib " + testing::quote(dir / "calib.npy"));
      ASSERT_EQ(r.exit_code, 0) << r.err;
      auto q = loadModel(dir / "q.onnx");
      ASSERT_TRUE(q.isOk()) << q.status().toString();
      // Written names are shortened: find W and R by shape.
      const int64_t rows = gatesOf(op) * kHidden;
      for (const Shape& shape : {Shape{2, rows, kIn}, Shape{2, rows, kHidden}}) {
        int int8 = 0, floats = 0;
        for (const Value* v : q->graph->initializers()) {
          if (v->initializer()->shape() != shape) continue;
          int8 += v->initializer()->dtype() == DType::kInt8;
          floats += v->initializer()->dtype() == DType::kFloat32;
        }
        EXPECT_EQ(int8, 1) << "an int8 weight of shape [2, " << rows << ", " << shape[2] << "]";
        EXPECT_EQ(floats, 0) << "a float weight is still stored";
      }
      EXPECT_LT(std::filesystem::file_size(dir / "q.onnx"),
                std::filesystem::file_size(dir / "f.onnx") * 0.4);
      const Tensor x = testing::randomTensor({8, kSteps, kIn}, 11, -2.f, 2.f);
      auto want = testing::runOrt(dir / "f.onnx", {{"x", x}}, dir);
      auto got = testing::runOrt(dir / "q.onnx", {{"x", x}}, dir);
      ASSERT_TRUE(want.isOk()) << want.status().toString();
      ASSERT_TRUE(got.isOk()) << got.status().toString();
      EXPECT_GT(cosine(got->front(), want->front()), 0.999);
    }
  }
}

}  // namespace
}  // namespace nnc
