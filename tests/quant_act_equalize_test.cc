// Activation-range equalisation into depthwise layers (quant/act_equalize.h): same float function,
// even channel ranges on the quantized tensor, far less int8 error, and the cases it must leave.
// Also: a layer kept float behind a quantized one reads a per-channel DequantizeLinear, which
// ONNX Runtime's WeightBiasQuantization does not rewrite (quantize_internal.h).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "nncompress/exec/executor.h"
#include "nncompress/ir/batch_norm.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/quant/act_equalize.h"
#include "nncompress/quant/calibration.h"
#include "nncompress/quant/quantize.h"
#include "random_tensor.h"

namespace nnc {
namespace {

using testing::randomTensor;

// Fixed random samples [n, 4, 6, 6].
class RandomReader : public data::SampleReader {
 public:
  int64_t size() const override { return 16; }
  Shape sampleShape() const override { return {4, 6, 6}; }
  StatusOr<Tensor> readBatch(int64_t start, int64_t count) override {
    return randomTensor({count, 4, 6, 6}, uint32_t(100 + start * 7 + count));
  }
  std::string description() const override { return "random"; }
};

enum class Act { kRelu, kPRelu, kNone };
constexpr int64_t kC = 8;

// x -> Conv 1x1 (8 channels; channel i scaled by 2^-i, channel 5 dead) -> act -> second -> y.
// second: depthwise 3x3 (weights scaled by 2^i, so every channel matters) or dense 1x1.
Model makeModel(Act act, bool depthwise) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = g.createValue("x").value();
  x->setType({DType::kFloat32,
              std::vector<Dim>{Dim::symbol("n"), Dim::known(4), Dim::known(6), Dim::known(6)}});
  g.addInput(x);
  Tensor w1 = randomTensor({kC, 4, 1, 1}, 1), w2 = randomTensor({kC, depthwise ? 1 : kC, 3, 3}, 2);
  Tensor b1 = randomTensor({kC}, 3, 0.f, 0.1f);
  for (int64_t i = 0; i < kC; ++i) {
    const float f = i == 5 ? 0.f : float(std::pow(2.0, -double(i)));
    for (int64_t j = 0; j < 4; ++j) w1.mutableData<float>()[i * 4 + j] *= f;
    b1.mutableData<float>()[i] *= f;
    if (depthwise)
      for (int64_t j = 0; j < 9; ++j) w2.mutableData<float>()[i * 9 + j] /= std::max(f, 1e-3f);
  }
  Node* c1 = g.addNode("Conv", {x, g.addInitializer("w1", w1), g.addInitializer("b1", b1)}, {"h"});
  c1->setName("first");
  Value* between = c1->output(0);
  if (act == Act::kRelu) between = g.addNode("Relu", {between}, {"a"})->output(0);
  if (act == Act::kPRelu)
    between =
        g.addNode("PRelu",
                  {between, g.addInitializer("slope", randomTensor({kC, 1, 1}, 4, 0.01f, 0.1f))},
                  {"a"})
            ->output(0);
  Node* c2 = g.addNode(
      "Conv", {between, g.addInitializer("w2", w2), g.addInitializer("b2", randomTensor({kC}, 5))},
      {"y"});
  c2->setName("second");
  c2->setAttribute(Attribute::makeInts("pads", {1, 1, 1, 1}));
  if (depthwise) c2->setAttribute(Attribute::makeInt("group", kC));
  g.addOutput(c2->output(0));
  return m;
}

// Per-channel max |value| of the named tensor over the reader's first batch of 16.
std::vector<double> channelMax(const Model& m, const std::string& name) {
  RandomReader reader;
  auto ex = exec::Executor::create(m);
  EXPECT_TRUE(ex.isOk());
  std::vector<double> r(kC, 0.0);
  auto batch = reader.readBatch(0, 16);
  EXPECT_TRUE(batch.isOk());
  auto out = (*ex)->run({*batch}, [&](const Value& v, const Tensor& t) {
    if (v.name() != name) return;
    const int64_t inner = t.numel() / (t.dim(0) * kC);
    for (int64_t i = 0; i < t.numel(); ++i)
      r[(i / inner) % kC] = std::max<double>(r[(i / inner) % kC], std::abs(t.data<float>()[i]));
  });
  EXPECT_TRUE(out.isOk());
  return r;
}

// int8 QDQ (ort placement, minmax) output SQNR against the model's own float output.
double int8OutputSqnr(const Model& float_model) {
  RandomReader reader;
  auto q = cloneModel(float_model);
  EXPECT_TRUE(q.isOk());
  quant::QuantizeOptions qo;
  qo.quantize_last = true;
  auto targets = quant::selectTargets(*q->graph, qo);
  EXPECT_TRUE(targets.isOk());
  auto hist = quant::collectHistograms(*q, reader, quant::valuesToCalibrate(*targets, qo), {});
  EXPECT_TRUE(hist.isOk());
  std::map<std::string, quant::Range> ranges;
  for (const auto& [name, h] : *hist) ranges[name] = h.range(quant::CalibMethod::kMinMax, false, 8);
  EXPECT_TRUE(quant::quantizeModel(*q, *targets, ranges, qo).isOk());
  auto s = quant::measureSqnr(float_model, *q, reader, {{"y", "y"}}, 16, 16, 1);
  EXPECT_TRUE(s.isOk()) << s.status().message();
  return s->at("y");
}

double maxRelDiff(const Model& a, const Model& b) {
  RandomReader reader;
  auto x = reader.readBatch(0, 4);
  auto ea = exec::Executor::create(a), eb = exec::Executor::create(b);
  EXPECT_TRUE(x.isOk() && ea.isOk() && eb.isOk());
  auto ya = (*ea)->run({*x}), yb = (*eb)->run({*x});
  EXPECT_TRUE(ya.isOk() && yb.isOk());
  double d = 0, ref = 0;
  for (int64_t i = 0; i < (*ya)[0].numel(); ++i) {
    d = std::max(d, std::abs(double((*ya)[0].data<float>()[i]) - (*yb)[0].data<float>()[i]));
    ref = std::max(ref, std::abs(double((*ya)[0].data<float>()[i])));
  }
  return d / ref;
}

class ActEqualize : public ::testing::TestWithParam<Act> {};

TEST_P(ActEqualize, EvensChannelRangesKeepsTheFunctionAndCutsInt8Error) {
  const Act act = GetParam();
  const std::string between = act == Act::kNone ? "h" : "a";
  Model before = makeModel(act, true), after = makeModel(act, true);
  RandomReader reader;
  auto stats = quant::equalizeActivationRanges(after, reader);
  ASSERT_TRUE(stats.isOk()) << stats.status().message();
  EXPECT_EQ(stats->pairs, 1);
  EXPECT_GT(stats->largest_multiplier, 50);
  EXPECT_LT(maxRelDiff(before, after), 1e-5);
  const std::vector<double> r0 = channelMax(before, between), r = channelMax(after, between);
  const double top = *std::max_element(r.begin(), r.end());
  for (int64_t i = 0; i < kC; ++i) {
    if (i == 5) {  // the dead channel is left alone
      EXPECT_EQ(r[i], 0.0);
      continue;
    }
    EXPECT_NEAR(r[i] / top, 1.0, 1e-4) << "channel " << i;
  }
  // The tensor's range (what its one int8 scale covers) does not grow; for PRelu neither does
  // the range of its input, which is quantized too.
  EXPECT_LE(top, *std::max_element(r0.begin(), r0.end()) * (1 + 1e-5));
  if (act == Act::kPRelu) {
    const std::vector<double> h0 = channelMax(before, "h"), h = channelMax(after, "h");
    EXPECT_LE(*std::max_element(h.begin(), h.end()),
              *std::max_element(h0.begin(), h0.end()) * (1 + 1e-5));
  }
  const double sqnr_before = int8OutputSqnr(before), sqnr_after = int8OutputSqnr(after);
  EXPECT_GT(sqnr_after, sqnr_before + 10) << sqnr_before << " dB -> " << sqnr_after << " dB";
}

INSTANTIATE_TEST_SUITE_P(Activations, ActEqualize,
                         ::testing::Values(Act::kRelu, Act::kPRelu, Act::kNone),
                         [](const auto& info) {
                           return info.param == Act::kRelu    ? std::string("Relu")
                                  : info.param == Act::kPRelu ? std::string("PRelu")
                                                              : std::string("NoActivation");
                         });

// A dense second layer would pay for the rescaling in its weight grid: left alone.
TEST(ActEqualizeLeaves, DenseConsumer) {
  Model m = makeModel(Act::kRelu, false);
  RandomReader reader;
  auto stats = quant::equalizeActivationRanges(m, reader);
  ASSERT_TRUE(stats.isOk());
  EXPECT_EQ(stats->pairs, 0);
  EXPECT_NE(m.graph->findValue("w1"), nullptr);
}

// first quantized, second (dense) kept float: second's input is a DequantizeLinear with the
// activation's scale repeated per channel (axis 1), not the scalar one ORT would match.
TEST(OrtFloatGuard, FloatLayerReadsAPerChannelDequantizeLinear) {
  Model m = makeModel(Act::kNone, false);
  RandomReader reader;
  quant::QuantizeOptions qo;
  qo.quantize_last = true;
  qo.exclude = {"second"};
  auto targets = quant::selectTargets(*m.graph, qo);
  ASSERT_TRUE(targets.isOk());
  ASSERT_EQ(targets->size(), 1u);
  auto hist = quant::collectHistograms(m, reader, quant::valuesToCalibrate(*targets, qo), {});
  ASSERT_TRUE(hist.isOk());
  std::map<std::string, quant::Range> ranges;
  for (const auto& [name, h] : *hist) ranges[name] = h.range(quant::CalibMethod::kMinMax, false, 8);
  ASSERT_TRUE(quant::quantizeModel(m, *targets, ranges, qo).isOk());
  const Node* second = nullptr;
  for (const auto& n : m.graph->nodes())
    if (n->name() == "second") second = n.get();
  ASSERT_NE(second, nullptr);
  EXPECT_NE(constantFloat32(second->input(1)), nullptr) << "second stays float";
  const Node* dq = second->input(0)->producer();
  ASSERT_NE(dq, nullptr);
  ASSERT_TRUE(dq->isOp("DequantizeLinear"));
  EXPECT_EQ(dq->intAttr("axis", -1), 1);
  ASSERT_NE(dq->input(1)->initializer(), nullptr);
  EXPECT_EQ(dq->input(1)->initializer()->numel(), kC);
  EXPECT_EQ(dq->input(2)->initializer()->numel(), kC);
  ASSERT_TRUE(dq->input(0)->producer() && dq->input(0)->producer()->isOp("QuantizeLinear"));
}

}  // namespace
}  // namespace nnc
