// --qdq-placement ort on small graphs: which tensors get Q/DQ, which ops become integer, which
// scales are shared (golden structure, also where it must not fire), and the int32 bias: range
// checked (tiny s_x s_w raise the weight scale instead of overflowing) in both the ort QDQ and
// the QOperator export, with outputs close to float in our executor.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <set>

#include "nncompress/exec/executor.h"
#include "nncompress/ir/verify.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/quant/int32_bias.h"
#include "nncompress/quant/qdq_placement.h"
#include "nncompress/quant/quantize.h"
#include "random_tensor.h"

namespace nnc {
namespace {

using testing::randomTensor;

Value* input(Graph& g, const std::string& name, std::vector<int64_t> dims) {
  Value* x = g.createValue(name).value();
  std::vector<Dim> shape;
  for (int64_t d : dims) shape.push_back(Dim::known(d));
  x->setType({DType::kFloat32, shape});
  g.addInput(x);
  return x;
}

Node* conv(Graph& g, Value* x, int64_t in, int64_t out, const std::string& name, uint32_t seed) {
  Node* n = g.addNode("Conv",
                      {x, g.addInitializer(name + "_w", randomTensor({out, in, 3, 3}, seed)),
                       g.addInitializer(name + "_b", randomTensor({out}, seed + 1))},
                      {name + "_y"});
  n->setName(name);
  n->setAttribute(Attribute::makeInts("pads", {1, 1, 1, 1}));
  return n;
}

// x -> conv1 -> Relu -> MaxPool -> conv2 -> Add(., MaxPool) -> Relu -> conv3 -> GAP -> Flatten
//   -> Gemm (the classifier: float activations) -> y
Model residualModel() {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = input(g, "x", {1, 2, 8, 8});
  Node* c1 = conv(g, x, 2, 4, "conv1", 1);
  Node* r1 = g.addNode("Relu", {c1->output(0)}, {"relu1"});
  Node* mp = g.addNode("MaxPool", {r1->output(0)}, {"pool"});
  mp->setAttribute(Attribute::makeInts("kernel_shape", {2, 2}));
  mp->setAttribute(Attribute::makeInts("strides", {2, 2}));
  Node* c2 = conv(g, mp->output(0), 4, 4, "conv2", 3);
  Node* add = g.addNode("Add", {c2->output(0), mp->output(0)}, {"sum"});
  Node* r2 = g.addNode("Relu", {add->output(0)}, {"relu2"});
  Node* c3 = conv(g, r2->output(0), 4, 4, "conv3", 5);
  Node* gap = g.addNode("GlobalAveragePool", {c3->output(0)}, {"gap"});
  Node* flat = g.addNode("Flatten", {gap->output(0)}, {"flat"});
  Node* fc = g.addNode("Gemm",
                       {flat->output(0), g.addInitializer("fc_w", randomTensor({3, 4}, 7)),
                        g.addInitializer("fc_b", randomTensor({3}, 8))},
                       {"y"});
  fc->setName("fc");
  fc->setAttribute(Attribute::makeInt("transB", 1));
  g.addOutput(fc->output(0));
  EXPECT_TRUE(inferShapes(m).isOk());
  return m;
}

// Every calibration range the options ask for, as float min/max over `samples` random inputs.
std::map<std::string, quant::Range> observedRanges(const Model& m,
                                                   const std::vector<std::string>& names,
                                                   int samples = 8) {
  std::map<std::string, quant::Range> ranges;
  std::set<std::string> wanted(names.begin(), names.end());
  auto ex = exec::Executor::create(m, {});
  EXPECT_TRUE(ex.isOk());
  auto observe = [&](const std::string& name, const Tensor& t) {
    if (!wanted.count(name) || t.dtype() != DType::kFloat32) return;
    auto [it, fresh] = ranges.try_emplace(name, quant::Range{INFINITY, -INFINITY});
    for (float f : t.data<float>()) it->second.lo = std::min(it->second.lo, f);
    for (float f : t.data<float>()) it->second.hi = std::max(it->second.hi, f);
  };
  for (int s = 0; s < samples; ++s) {
    const Value* x = m.graph->inputs()[0];
    std::vector<Tensor> feeds{randomTensor(*x->staticShape(), 100 + s)};
    observe(x->name(), feeds[0]);
    auto out = (*ex)->run(std::move(feeds),
                          [&](const Value& v, const Tensor& t) { observe(v.name(), t); });
    EXPECT_TRUE(out.isOk()) << out.status().message();
  }
  return ranges;
}

const quant::PlannedTensor* findPlanned(const quant::OrtQdqPlan& plan, const std::string& name) {
  for (const auto& t : plan.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

TEST(OrtPlacement, PlansIntegerOpsSharedScalesAndAbsorbedRelus) {
  Model m = residualModel();
  quant::QuantizeOptions o;
  auto targets = quant::selectTargets(*m.graph, o);
  ASSERT_TRUE(targets.isOk());
  const quant::OrtQdqPlan plan = quant::planOrtQdq(*m.graph, *targets, o);
  std::vector<std::string> ops;
  for (const Node* n : plan.integer_ops) ops.push_back(n->opType());
  // GAP and Flatten feed only the float classifier: they stay float.
  EXPECT_EQ(ops, (std::vector<std::string>{"MaxPool", "Add"}));
  EXPECT_EQ(plan.layers.size(), 3u);  // conv1..3; the Gemm's activations stay float
  // MaxPool: Q and DQ must agree. Its input has no other reader, so both take the pooled range.
  ASSERT_NE(findPlanned(plan, "pool"), nullptr);
  ASSERT_NE(findPlanned(plan, "relu1"), nullptr);
  EXPECT_EQ(findPlanned(plan, "pool")->params_of, "pool");
  EXPECT_EQ(findPlanned(plan, "relu1")->params_of, "pool");
  ASSERT_NE(findPlanned(plan, "relu2"), nullptr);  // Add's Relu absorbed: its output
  EXPECT_EQ(findPlanned(plan, "sum"), nullptr);
  EXPECT_EQ(findPlanned(plan, "conv1_y"), nullptr);  // conv1's Relu absorbed
  EXPECT_NE(findPlanned(plan, "conv2_y"), nullptr);  // read by the integer Add
  EXPECT_NE(findPlanned(plan, "conv3_y"), nullptr);  // a layer's output is always Q'd
  EXPECT_EQ(findPlanned(plan, "gap"), nullptr);
  const auto names = quant::plannedCalibrationNames(plan);
  EXPECT_EQ(std::count(names.begin(), names.end(), "pool"), 1);
}

TEST(OrtPlacement, DoesNotFireForOtherLayoutsAndFormats) {
  Model m = residualModel();
  quant::QuantizeOptions o;
  auto targets = quant::selectTargets(*m.graph, o);
  ASSERT_TRUE(targets.isOk());
  for (auto edit : std::vector<std::function<void(quant::QuantizeOptions&)>>{
           [](auto& q) { q.placement = quant::QdqPlacement::kTensorRt; },
           [](auto& q) { q.act_bits = 4; }, [](auto& q) { q.symmetric_activations = true; },
           [](auto& q) { q.format = quant::QuantFormat::kQOperator; },
           [](auto& q) { q.format = quant::QuantFormat::kWeightsOnly; }}) {
    quant::QuantizeOptions changed = o;
    edit(changed);
    EXPECT_TRUE(quant::planOrtQdq(*m.graph, *targets, changed).tensors.empty());
  }
}

// After the rewrite each planned tensor is read only by its QuantizeLinear, every Conv bias is
// int32 behind a DequantizeLinear, and the model stays close to float.
TEST(OrtPlacement, RewriteRoutesReadersThroughQdqAndKeepsOutputs) {
  Model m = residualModel();
  auto reference = cloneModel(m);
  ASSERT_TRUE(reference.isOk());
  quant::QuantizeOptions o;
  auto targets = quant::selectTargets(*m.graph, o);
  ASSERT_TRUE(targets.isOk());
  const auto ranges = observedRanges(m, quant::valuesToCalibrate(*targets, o));
  const auto plan = quant::planOrtQdq(*m.graph, *targets, o);
  auto layers = quant::quantizeModel(m, *targets, ranges, o);
  ASSERT_TRUE(layers.isOk()) << layers.status().message();
  ASSERT_TRUE(verifyGraph(*m.graph).isOk());
  for (const auto& t : plan.tensors) {
    const Value* v = m.graph->findValue(t.name);
    ASSERT_NE(v, nullptr) << t.name;
    ASSERT_EQ(v->uses().size(), 1u) << t.name;
    EXPECT_TRUE(v->uses()[0].node->isOp("QuantizeLinear")) << t.name;
  }
  int int32_biases = 0;
  for (const auto& n : m.graph->nodes()) {
    if (!n->isOp("Conv")) continue;
    const Node* dq = n->input(2)->producer();
    ASSERT_NE(dq, nullptr);
    EXPECT_TRUE(dq->isOp("DequantizeLinear"));
    int32_biases += dq->input(0)->initializer()->dtype() == DType::kInt32;
  }
  EXPECT_EQ(int32_biases, 3);
  auto ref = exec::Executor::create(*reference, {});
  auto quant = exec::Executor::create(m, {});
  ASSERT_TRUE(ref.isOk() && quant.isOk());
  std::vector<Tensor> a{randomTensor({1, 2, 8, 8}, 100)}, b{randomTensor({1, 2, 8, 8}, 100)};
  auto ya = (*ref)->run(std::move(a)), yb = (*quant)->run(std::move(b));
  ASSERT_TRUE(ya.isOk() && yb.isOk());
  const auto fa = (*ya)[0].data<float>(), fb = (*yb)[0].data<float>();
  double signal = 0, noise = 0;
  for (size_t i = 0; i < fa.size(); ++i)
    signal += fa[i] * fa[i], noise += std::pow(fa[i] - fb[i], 2);
  EXPECT_GT(10 * std::log10(signal / noise), 25.0) << "output SQNR too low";
}

TEST(Int32Bias, RaisesTinyWeightScalesInsteadOfOverflowing) {
  const std::vector<float> bias = {500.f, 0.25f, -300.f};
  std::vector<float> scales = {1e-12f, 1e-3f, 1e-12f};
  const float s_x = 1e-3f;
  EXPECT_EQ(quant::raiseWeightScalesForInt32Bias(bias, s_x, scales), 2);
  EXPECT_EQ(scales[1], 1e-3f);  // untouched: 0.25 / 1e-6 fits
  const Tensor q = quant::quantizeBiasInt32(bias, s_x, scales);
  for (size_t c = 0; c < bias.size(); ++c) {
    EXPECT_LE(std::abs(double(q.data<int32_t>()[c])), quant::kInt32BiasLimit) << c;
    const double back = double(q.data<int32_t>()[c]) * s_x * scales[c];
    EXPECT_NEAR(back, bias[c], 0.5 * s_x * scales[c] + 1e-6) << c;
  }
  std::vector<float> one = {1e-12f};  // per-tensor: one scale for every channel
  EXPECT_EQ(quant::raiseWeightScalesForInt32Bias(bias, s_x, one), 1);
  EXPECT_GE(one[0], 500.0 / (s_x * quant::kInt32BiasLimit));
}

// x -> Conv (channel 0: weights ~1e-9 with bias 500, an overflow at s_x s_w ~ 1e-11) -> y.
Model tinyWeightModel() {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = input(g, "x", {1, 2, 6, 6});
  Tensor w = randomTensor({2, 2, 3, 3}, 11);
  for (int i = 0; i < 18; ++i) w.mutableData<float>()[i] *= 1e-9f;
  Node* c = g.addNode("Conv",
                      {x, g.addInitializer("w", std::move(w)),
                       g.addInitializer("b", Tensor::fromVector<float>({2}, {500.f, 0.1f}))},
                      {"c"});
  c->setName("conv");
  Node* c2 = conv(g, c->output(0), 2, 2, "conv2", 13);  // so conv's output is quantized too
  g.addOutput(c2->output(0));
  g.addOutput(c->output(0));
  EXPECT_TRUE(inferShapes(m).isOk());
  return m;
}

class TinyWeightBias : public ::testing::TestWithParam<quant::QuantFormat> {};

TEST_P(TinyWeightBias, KeepsTheBiasWithoutOverflow) {
  Model m = tinyWeightModel();
  auto reference = cloneModel(m);
  ASSERT_TRUE(reference.isOk());
  quant::QuantizeOptions o;
  o.format = GetParam();
  o.quantize_last = true;
  auto targets = quant::selectTargets(*m.graph, o);
  ASSERT_TRUE(targets.isOk());
  const auto ranges = observedRanges(m, quant::valuesToCalibrate(*targets, o));
  auto layers = quant::quantizeModel(m, *targets, ranges, o);
  ASSERT_TRUE(layers.isOk()) << layers.status().message();
  for (const Value* v : m.graph->initializers()) {
    if (v->initializer()->dtype() != DType::kInt32) continue;
    for (int32_t b : v->initializer()->data<int32_t>())
      EXPECT_LE(std::abs(double(b)), quant::kInt32BiasLimit) << v->name();
  }
  auto ref = exec::Executor::create(*reference, {});
  auto quant = exec::Executor::create(m, {});
  ASSERT_TRUE(ref.isOk() && quant.isOk()) << quant.status().message();
  std::vector<Tensor> a{randomTensor({1, 2, 6, 6}, 5)}, b{randomTensor({1, 2, 6, 6}, 5)};
  auto ya = (*ref)->run(std::move(a)), yb = (*quant)->run(std::move(b));
  ASSERT_TRUE(ya.isOk() && yb.isOk()) << yb.status().message();
  // Output 1 is the first conv: channel 0 is its bias, 500, everywhere.
  ASSERT_EQ(ya->size(), 2u);
  ASSERT_EQ(yb->size(), 2u);
  ASSERT_EQ((*yb)[1].shape(), (Shape{1, 2, 4, 4}));
  const auto fa = (*ya)[1].data<float>(), fb = (*yb)[1].data<float>();
  for (size_t i = 0; i < fa.size(); ++i) ASSERT_NEAR(fb[i], fa[i], 500 * 0.01) << i;
}

INSTANTIATE_TEST_SUITE_P(Formats, TinyWeightBias,
                         ::testing::Values(quant::QuantFormat::kQdq,
                                           quant::QuantFormat::kQOperator),
                         [](const auto& info) {
                           return std::string(quant::quantFormatName(info.param));
                         });

}  // namespace
}  // namespace nnc
