// Conv -> BatchNormalization folding on the tape (tape_fusion.cc): the folded forward equals the
// executor's fused plan bit for bit, and the folded backward (the BN's gradients formed by the
// Conv's) matches the unfolded tape, which the per-op gradient checks cover, on a small residual
// block with odd shapes: strides 1 and 2, groups and depthwise, padding, with and without Conv
// bias, a folded BN with and without a Relu after it, one channel with gamma = 0.

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "graph_input.h"
#include "nncompress/exec/executor.h"
#include "nncompress/train/tape.h"
#include "random_tensor.h"
#include "tensor_diff.h"

namespace nnc::train {
namespace {

using testing::maxAbs;
using testing::maxAbsDiff;

struct BlockConfig {
  int64_t stride = 1, groups = 1;
  bool bias = false;
};

Tensor uniform(Shape s, float lo, float hi, std::mt19937& rng) {
  return testing::randomTensor(std::move(s), rng, lo, hi);
}

// x [3, 4, 7, 5] -> Conv c1 (3x3, stride s, pads 1) -> BN -> Relu -> Conv c2 (3x3, groups, pads 1)
// -> BN -> Add <- BN <- Conv c3 (1x1, stride s) <- x; then Relu.
Model residualBlock(const BlockConfig& cfg, std::mt19937& rng) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = testing::addFloatInput(g);
  constexpr int64_t kOut = 6;
  auto convBn = [&](const std::string& name, Value* in, int64_t cin, int64_t k, int64_t stride,
                    int64_t groups, int64_t pad) {
    std::vector<Value*> ins{
        in, g.addInitializer(name + ".w", uniform({kOut, cin / groups, k, k}, -0.5f, 0.5f, rng))};
    if (cfg.bias) ins.push_back(g.addInitializer(name + ".b", uniform({kOut}, -0.5f, 0.5f, rng)));
    Node* conv = g.addNode("Conv", ins, {name});
    conv->setAttribute(Attribute::makeInts("strides", {stride, stride}));
    conv->setAttribute(Attribute::makeInts("pads", {pad, pad, pad, pad}));
    conv->setAttribute(Attribute::makeInt("group", groups));
    Tensor gamma = uniform({kOut}, -1.5f, 1.5f, rng);
    gamma.mutableData<float>()[1] = 0.f;  // the fold must not divide by gamma
    std::vector<Value*> bn_in{conv->output(0), g.addInitializer(name + ".gamma", gamma),
                              g.addInitializer(name + ".beta", uniform({kOut}, -1, 1, rng)),
                              g.addInitializer(name + ".mean", uniform({kOut}, -1, 1, rng)),
                              g.addInitializer(name + ".var", uniform({kOut}, 0.5f, 1.5f, rng))};
    return g.addNode("BatchNormalization", bn_in, {name + ".bn"})->output(0);
  };
  Value* a = g.addNode("Relu", {convBn("c1", x, 4, 3, cfg.stride, 1, 1)}, {"r1"})->output(0);
  Value* b = convBn("c2", a, kOut, 3, 1, cfg.groups, 1);
  Value* c = convBn("c3", x, 4, 1, cfg.stride, 1, 0);
  Value* sum = g.addNode("Add", {b, c}, {"sum"})->output(0);
  g.addOutput(g.addNode("Relu", {sum}, {"y"})->output(0));
  return m;
}

void expectFoldMatchesUnfolded(const BlockConfig& cfg) {
  SCOPED_TRACE("stride " + std::to_string(cfg.stride) + " groups " + std::to_string(cfg.groups) +
               (cfg.bias ? " bias" : ""));
  std::mt19937 rng(7 + cfg.stride * 10 + cfg.groups);
  const Model model = residualBlock(cfg, rng);
  const Tensor x = uniform({3, 4, 7, 5}, -1, 1, rng);
  // Asking for a Conv output's gradient keeps it: no fold there.
  auto folded = GradientTape::create(model, {.num_threads = 2, .keep_activation_grads = {"x"}});
  auto plain = GradientTape::create(
      model, {.num_threads = 2, .keep_activation_grads = {"x", "c1", "c2", "c3"}});
  ASSERT_TRUE(folded.isOk() && plain.isOk());
  auto ex = exec::Executor::create(model, {.num_threads = 2});
  ASSERT_TRUE(ex.isOk());
  const Tensor want = ex.value()->run({x}).value()[0];
  std::vector<Tensor> ys;
  for (GradientTape* t : {folded.value().get(), plain.value().get()}) {
    auto y = t->forward({x});
    ASSERT_TRUE(y.isOk()) << y.status().toString();
    ys.push_back(y.value()[0]);
    std::mt19937 r(3);
    Tensor dy = uniform(y.value()[0].shape(), -1, 1, r);
    t->zeroGrad();
    ASSERT_TRUE(t->backward({dy}).isOk());
  }
  EXPECT_EQ(maxAbsDiff(ys[0], want), 0.f);  // the executor's fused plan exactly
  EXPECT_LE(maxAbsDiff(ys[0], ys[1]), 1e-5f * maxAbs(ys[1]));
  const auto &pf = folded.value()->parameters(), &pp = plain.value()->parameters();
  ASSERT_EQ(pf.size(), pp.size());
  EXPECT_EQ(pf.size(), cfg.bias ? 12u : 9u);
  for (size_t p = 0; p < pf.size(); ++p) {
    ASSERT_EQ(pf[p].name, pp[p].name);
    EXPECT_GT(maxAbs(pp[p].grad), 0.f) << pp[p].name;
    EXPECT_LE(maxAbsDiff(pf[p].grad, pp[p].grad), 1e-4f * maxAbs(pp[p].grad)) << pf[p].name;
  }
  const Tensor *dx_f = folded.value()->activationGrad("x"),
               *dx_p = plain.value()->activationGrad("x");
  ASSERT_TRUE(dx_f && dx_p);
  EXPECT_LE(maxAbsDiff(*dx_f, *dx_p), 1e-4f * maxAbs(*dx_p));
}

TEST(TrainFold, ConvBatchNormFoldMatchesUnfolded) {
  for (int64_t stride : {1, 2})
    for (int64_t groups : {1, 2, 6})  // 6: depthwise
      for (bool bias : {false, true}) expectFoldMatchesUnfolded({stride, groups, bias});
}

}  // namespace
}  // namespace nnc::train
