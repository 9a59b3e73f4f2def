// The tape on whole models: forward equals the executor on every fixture, backward matches finite
// differences on chosen weights of the ResNet fixture, a few SGD steps of distillation from a
// perturbed copy reduce the loss, writeBack, the up-front error for ops without a backward, the
// frozen-subgraph rule, activation gradients and the fake-quant straight-through estimator.

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "graph_input.h"
#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/train/tape.h"
#include "tensor_diff.h"
#include "test_util.h"

namespace nnc::train {
namespace {

using testing::maxAbsDiff;

Model loadFixture(const std::string& name) {
  auto m = loadModel(testing::sourcePath("models/" + name + ".onnx"));
  EXPECT_TRUE(m.isOk()) << m.status().toString();
  return std::move(m).value();
}

Tensor randomImages(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Tensor t(DType::kFloat32, {n, 1, 28, 28});
  for (float& v : t.mutableData<float>()) v = nd(rng);
  return t;
}

TEST(TrainTape, ForwardEqualsExecutorOnFixtures) {
  for (const char* name : {"resnet", "vgg_bn", "mobilenetv2", "densenet", "flatten_head"}) {
    SCOPED_TRACE(name);
    Model model = loadFixture(name);
    auto ex = exec::Executor::create(model, {.num_threads = 2});
    ASSERT_TRUE(ex.isOk());
    auto tape = GradientTape::create(model, {.num_threads = 2});
    ASSERT_TRUE(tape.isOk()) << tape.status().toString();
    EXPECT_FALSE(tape.value()->parameters().empty());
    const Tensor x = randomImages(5, 3);
    auto want = ex.value()->run({x});
    auto got = tape.value()->forward({x});
    ASSERT_TRUE(want.isOk() && got.isOk());
    EXPECT_LT(maxAbsDiff(want.value()[0], got.value()[0]), 1e-3f);
    std::vector<Tensor> grads{Tensor(DType::kFloat32, got.value()[0].shape())};
    grads[0].mutableData<float>()[0] = 1.f;
    Status st = tape.value()->backward(grads);
    EXPECT_TRUE(st.isOk()) << st.toString();
  }
}

// dL/dw for a few weights of every parameter of the ResNet fixture, L = sum(logits * R).
TEST(TrainTape, ResNetGradientsMatchFiniteDifferences) {
  Model model = loadFixture("resnet");
  auto tape_or = GradientTape::create(model, {.num_threads = 2});
  ASSERT_TRUE(tape_or.isOk());
  GradientTape& tape = *tape_or.value();
  const Tensor x = randomImages(3, 5);
  auto y = tape.forward({x});
  ASSERT_TRUE(y.isOk());
  Tensor r(DType::kFloat32, y.value()[0].shape());
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  for (float& v : r.mutableData<float>()) v = nd(rng);
  tape.zeroGrad();
  ASSERT_TRUE(tape.backward({r}).isOk());
  auto loss = [&] {
    auto o = tape.infer({x});
    double l = 0;
    for (int64_t i = 0; i < r.numel(); ++i)
      l += double(o.value()[0].data<float>()[i]) * r.data<float>()[i];
    return l;
  };
  int checked = 0;
  for (Parameter& p : tape.parameters()) {
    for (int64_t i : {int64_t{0}, p.value.numel() / 2, p.value.numel() - 1}) {
      float& v = p.value.mutableData<float>()[i];
      const float v0 = v, h = 3e-4f;  // larger steps cross ReLU kinks (checked: converges)
      v = v0 + h;
      const double up = loss();
      v = v0 - h;
      const double down = loss();
      v = v0;
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR(p.grad.data<float>()[i], numeric, 3e-2 + 5e-2 * std::abs(numeric))
          << p.name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 30);
}

// Distillation of a perturbed student towards the fixture: MSE on logits falls under plain SGD,
// and writeBack puts the trained weights into a model the executor runs.
TEST(TrainTape, SgdStepsReduceDistillationLossAndWriteBack) {
  Model teacher = loadFixture("flatten_head");
  Model student = loadFixture("flatten_head");
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.f, 0.05f);
  for (Value* v : student.graph->initializers())
    if (v->initializer()->dtype() == DType::kFloat32)
      for (float& w : v->mutableInitializer()->mutableData<float>()) w += nd(rng) * std::abs(w);
  auto ex = exec::Executor::create(teacher, {.num_threads = 2});
  auto tape_or = GradientTape::create(student, {.num_threads = 2});
  ASSERT_TRUE(ex.isOk() && tape_or.isOk());
  GradientTape& tape = *tape_or.value();
  const Tensor x = randomImages(16, 8);
  const Tensor target = ex.value()->run({x}).value()[0];
  auto mse = [&](const Tensor& y, Tensor* grad) {
    double l = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      const float d = y.data<float>()[i] - target.data<float>()[i];
      l += double(d) * d / y.numel();
      if (grad) grad->mutableData<float>()[i] = 2.f * d / y.numel();
    }
    return l;
  };
  double first = 0, last = 0;
  const float lr = 1e-4f;  // 1e-3 diverges: the Gemm reads 784 large features
  for (int step = 0; step < 20; ++step) {
    auto y = tape.forward({x});
    ASSERT_TRUE(y.isOk());
    Tensor g(DType::kFloat32, y.value()[0].shape());
    last = mse(y.value()[0], &g);
    if (step == 0) first = last;
    tape.zeroGrad();
    ASSERT_TRUE(tape.backward({g}).isOk());
    for (Parameter& p : tape.parameters())
      for (int64_t i = 0; i < p.value.numel(); ++i)
        p.value.mutableData<float>()[i] -= lr * p.grad.data<float>()[i];
  }
  EXPECT_LT(last, 0.7 * first);
  ASSERT_TRUE(tape.writeBack(student).isOk());
  auto ex2 = exec::Executor::create(student, {.num_threads = 2});
  auto after = ex2.value()->run({x});
  auto mine = tape.infer({x});
  EXPECT_LT(maxAbsDiff(after.value()[0], mine.value()[0]), 1e-4f);
}

Model chain(const std::vector<std::string>& ops) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = testing::addFloatInput(g);
  Value* cur = x;
  int i = 0;
  for (const std::string& op : ops) {
    std::vector<Value*> ins{cur};
    if (op == "Conv") ins.push_back(g.addInitializer("w", Tensor(DType::kFloat32, {1, 1, 1, 1})));
    cur = g.addNode(op, ins, {"v" + std::to_string(i++)})->output(0);
  }
  g.addOutput(cur);
  return m;
}

TEST(TrainTape, OpsWithoutBackwardFailBeforeWork) {
  // Sin and Cos lie after the trained conv: listed, both.
  auto bad = GradientTape::create(chain({"Conv", "Sin", "Relu", "Cos"}));
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(bad.status().message().find("Sin"), std::string::npos);
  EXPECT_NE(bad.status().message().find("Cos"), std::string::npos);
  // Before the trained conv (nothing trainable upstream): no backward needed.
  EXPECT_TRUE(GradientTape::create(chain({"Sin", "Cos", "Conv", "Relu"})).isOk());
  // Unknown trainable names are usage errors.
  auto unknown = GradientTape::create(chain({"Conv"}), {.trainable = {"nope"}});
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
}

TEST(TrainTape, ActivationGradientsAndFakeQuant) {
  Model m = chain({"Conv", "Relu"});
  m.graph->findValue("w")->mutableInitializer()->mutableData<float>()[0] = 0.3f;
  auto tape_or = GradientTape::create(m, {.num_threads = 1, .keep_activation_grads = {"v0"}});
  ASSERT_TRUE(tape_or.isOk()) << tape_or.status().toString();
  GradientTape& tape = *tape_or.value();
  Tensor x = Tensor::fromVector<float>({1, 1, 1, 3}, {1.f, -2.f, 4.f});
  ASSERT_TRUE(tape.forward({x}).isOk());
  tape.zeroGrad();
  ASSERT_TRUE(tape.backward({Tensor::fromVector<float>({1, 1, 1, 3}, {1.f, 1.f, 1.f})}).isOk());
  // v0 = 0.3 x; dL/dv0 = relu'(v0) = [1, 0, 1]; dL/dw = 1 + 4 = 5.
  const Tensor* g = tape.activationGrad("v0");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->data<float>()[0], 1.f);
  EXPECT_EQ(g->data<float>()[1], 0.f);
  EXPECT_NEAR(tape.activation("v0")->data<float>()[2], 1.2f, 1e-6f);
  EXPECT_NEAR(tape.parameter("w")->grad.data<float>()[0], 5.f, 1e-5f);
  // Fake-quant v0 to a grid of 0.25 clamped to [-1, 1]: forward rounds, backward passes only
  // where not clamped (x = 1 -> 0.3 -> 0.25 kept; x = 4 -> 1.2 -> clamped to 1).
  ASSERT_TRUE(tape.setFakeQuant("v0",
                                [](const Tensor&) {
                                  return FakeQuantSpec{{0.25f}, {}, 0, -4, 4};
                                })
                  .isOk());
  auto y = tape.forward({x});
  ASSERT_TRUE(y.isOk());
  EXPECT_EQ(y.value()[0].data<float>()[0], 0.25f);
  EXPECT_EQ(y.value()[0].data<float>()[2], 1.f);
  tape.zeroGrad();
  ASSERT_TRUE(tape.backward({Tensor::fromVector<float>({1, 1, 1, 3}, {1.f, 1.f, 1.f})}).isOk());
  EXPECT_NEAR(tape.parameter("w")->grad.data<float>()[0], 1.f, 1e-6f);
  // Weight fake-quant: 4 bits symmetric per channel; w = 0.3 is its own channel max, so exact.
  ASSERT_TRUE(tape.setFakeQuant("v0", {}).isOk());
  ASSERT_TRUE(tape.setFakeQuant("w", symmetricPerChannelWeights(4)).isOk());
  EXPECT_NEAR(tape.infer({x}).value()[0].data<float>()[2], 1.2f, 1e-6f);
}

// One step on the first output with the output gradient dY[i] = scale * (i % period - period / 2):
// forward, zeroGrad, backward.
::testing::AssertionResult stepWithPatternGrad(GradientTape& tape, const Tensor& x, float scale,
                                               int64_t period = 5) {
  auto y = tape.forward({x});
  if (!y.isOk()) return ::testing::AssertionFailure() << y.status().toString();
  Tensor g(DType::kFloat32, y.value()[0].shape());
  float* d = g.mutableData<float>().data();
  for (int64_t i = 0; i < g.numel(); ++i) d[i] = scale * (i % period) - (period / 2) * scale;
  tape.zeroGrad();
  Status st = tape.backward({g});
  if (!st.isOk()) return ::testing::AssertionFailure() << st.toString();
  return ::testing::AssertionSuccess();
}

// A smaller last batch after bigger ones (cached kernels, pooled buffers) gives the gradients a
// fresh tape gives.
TEST(TrainTape, BatchSizeChangesGiveFreshResults) {
  Model model = loadFixture("resnet");
  auto used = GradientTape::create(model, {.num_threads = 2}).value();
  auto fresh = GradientTape::create(model, {.num_threads = 2}).value();
  auto step = [](GradientTape& t, const Tensor& x) {
    EXPECT_TRUE(stepWithPatternGrad(t, x, 0.01f, 7));
  };
  step(*used, randomImages(6, 1));
  step(*used, randomImages(4, 2));
  const Tensor last = randomImages(3, 3);
  step(*used, last);
  step(*fresh, last);
  for (size_t p = 0; p < used->parameters().size(); ++p)
    EXPECT_LT(maxAbsDiff(used->parameters()[p].grad, fresh->parameters()[p].grad), 1e-5f)
        << used->parameters()[p].name;
}

// The Conv backward gives each thread a fixed range of samples with its own partial sums, added
// in thread order: repeated steps give the same bits (a guard for any change to that split).
TEST(TrainTape, GradientsDoNotDependOnThreadScheduling) {
  Model model = loadFixture("resnet");
  auto tape = GradientTape::create(model, {.num_threads = 2}).value();
  const Tensor x = randomImages(64, 5);
  std::vector<Tensor> first;
  for (int rep = 0; rep < 4; ++rep) {
    ASSERT_TRUE(stepWithPatternGrad(*tape, x, 0.01f));
    for (size_t p = 0; p < tape->parameters().size(); ++p) {
      const Tensor& grad = tape->parameters()[p].grad;
      if (rep == 0) {
        const auto d = grad.data<float>();  // a deep copy: the tape reuses its buffers
        first.push_back(Tensor::fromVector<float>(grad.shape(), {d.begin(), d.end()}));
        continue;
      }
      EXPECT_EQ(maxAbsDiff(grad, first[p]), 0.f) << tape->parameters()[p].name << " step " << rep;
    }
  }
}

// BatchNormalization -> Relu and Add -> Relu pairs run fused (one forward pass, the Relu mask
// applied in the producer's backward), and BatchNormalizations are folded into the Convs before
// them, unless a value between is asked for; both ways give the same numbers up to rounding and
// summation order; fused, the outputs are the executor's fused plan's bit for bit.
TEST(TrainTape, FusedReluPairsMatchUnfused) {
  Model model = loadFixture("resnet");
  std::vector<std::string> between;
  for (const auto& n : model.graph->nodes())
    if (n->opType() == "BatchNormalization" || n->opType() == "Add")
      between.push_back(n->output(0)->name());
  ASSERT_GE(between.size(), 15u);
  auto fused = GradientTape::create(model, {.num_threads = 2}).value();
  auto plain =
      GradientTape::create(model, {.num_threads = 2, .keep_activation_grads = between}).value();
  const Tensor x = randomImages(4, 8);
  for (GradientTape* t : {fused.get(), plain.get()}) {
    ASSERT_TRUE(stepWithPatternGrad(*t, x, 0.02f));
  }
  auto ex = exec::Executor::create(model, {.num_threads = 2});
  ASSERT_TRUE(ex.isOk());
  const Tensor want = ex.value()->run({x}).value()[0], got = fused->infer({x}).value()[0];
  EXPECT_EQ(maxAbsDiff(got, want), 0.f);
  float scale = 0;
  for (float v : want.data<float>()) scale = std::max(scale, std::abs(v));
  EXPECT_LE(maxAbsDiff(got, plain->infer({x}).value()[0]), 1e-5f * scale);
  for (size_t p = 0; p < fused->parameters().size(); ++p) {
    const Tensor &a = fused->parameters()[p].grad, &b = plain->parameters()[p].grad;
    float scale = 0;
    for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(b.data<float>()[i]));
    EXPECT_LE(maxAbsDiff(a, b), 1e-5f * scale) << fused->parameters()[p].name;
  }
}

// Taylor scores need dL/d(activation) only: no parameters, the gradient still arrives.
TEST(TrainTape, ActivationGradientsWithoutParameters) {
  Model m = chain({"Conv", "Relu"});
  m.graph->findValue("w")->mutableInitializer()->mutableData<float>()[0] = 2.f;
  auto tape_or = GradientTape::create(
      m, {.num_threads = 1, .default_trainable = false, .keep_activation_grads = {"v0"}});
  ASSERT_TRUE(tape_or.isOk()) << tape_or.status().toString();
  GradientTape& tape = *tape_or.value();
  EXPECT_TRUE(tape.parameters().empty());
  ASSERT_TRUE(tape.forward({Tensor::fromVector<float>({1, 1, 1, 2}, {1.f, -1.f})}).isOk());
  ASSERT_TRUE(tape.backward({Tensor::fromVector<float>({1, 1, 1, 2}, {3.f, 5.f})}).isOk());
  const Tensor* g = tape.activationGrad("v0");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->data<float>()[0], 3.f);
  EXPECT_EQ(g->data<float>()[1], 0.f);
  EXPECT_EQ(tape.activation("v0")->data<float>()[1], -2.f);
}

// A Conv whose weight is a Constant node's output (Paddle's exports): hoisted into an initializer
// it trains; the outputs do not change; a Constant that is no weight (a Reshape shape) stays.
TEST(TrainTape, ConstantNodeWeightsAreHoistedAndTrain) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = testing::addFloatInput(g);
  Node* w = g.addNode("Constant", {}, {"w"});
  w->setAttribute(
      Attribute::makeTensor("value", Tensor::fromVector<float>({2, 1, 1, 1}, {0.5f, -2.f})));
  Node* conv = g.addNode("Conv", {x, w->output(0)}, {"c"});
  Node* shape = g.addNode("Constant", {}, {"shape"});
  shape->setAttribute(Attribute::makeTensor("value", Tensor::fromVector<int64_t>({2}, {1, -1})));
  g.addOutput(g.addNode("Reshape", {conv->output(0), shape->output(0)}, {"y"})->output(0));
  const Tensor in = Tensor::fromVector<float>({1, 1, 1, 2}, {1.f, 3.f});
  auto before = exec::Executor::create(m, {.num_threads = 1});
  ASSERT_TRUE(before.isOk());
  const Tensor want = before.value()->run({in}).value()[0];

  EXPECT_EQ(hoistConstantWeights(m), 1);
  int constants = 0;
  for (const auto& n : g.nodes()) constants += n->isOp("Constant");
  EXPECT_EQ(constants, 1);  // the shape
  auto after = exec::Executor::create(m, {.num_threads = 1});
  ASSERT_TRUE(after.isOk());
  EXPECT_EQ(maxAbsDiff(after.value()->run({in}).value()[0], want), 0.f);
  auto tape = GradientTape::create(m, {.num_threads = 1});
  ASSERT_TRUE(tape.isOk()) << tape.status().toString();
  ASSERT_EQ(tape.value()->parameters().size(), 1u);
  ASSERT_TRUE(tape.value()->forward({in}).isOk());
  ASSERT_TRUE(tape.value()->backward({Tensor::fromVector<float>({1, 4}, {1, 1, 1, 1})}).isOk());
  const Tensor& dw = tape.value()->parameters()[0].grad;
  EXPECT_EQ(dw.data<float>()[0], 4.f);  // dW[oc] = sum of x times dY = 1 + 3
  EXPECT_EQ(dw.data<float>()[1], 4.f);
}

}  // namespace
}  // namespace nnc::train
