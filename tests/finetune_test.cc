// Fine-tuning loop and the taylor criterion on tiny models (issue 16): distillation lowers the
// loss, a resumed run ends with the same weights as an uninterrupted one, Taylor scores match a
// hand computation.

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "model_text.h"
#include "nncompress/analysis/channel_groups.h"
#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/pipeline/finetune.h"
#include "nncompress/pipeline/taylor_stats.h"
#include "nncompress/prune/criteria.h"
#include "nncompress/prune/iterative.h"
#include "nncompress/train/softmax_heads.h"

namespace nnc {
namespace {

Model parse(const std::string& text) { return testing::parseModelText(text); }

// In-memory samples [count, ...shape].
class VectorReader : public data::SampleReader {
 public:
  VectorReader(Shape sample, std::vector<float> values)
      : sample_(std::move(sample)), values_(std::move(values)) {}
  int64_t size() const override {
    return static_cast<int64_t>(values_.size()) / shapeNumel(sample_);
  }
  Shape sampleShape() const override { return sample_; }
  StatusOr<Tensor> readBatch(int64_t start, int64_t count) override {
    Shape s = sample_;
    s.insert(s.begin(), count);
    const int64_t per = shapeNumel(sample_);
    std::vector<float> v(values_.begin() + start * per, values_.begin() + (start + count) * per);
    return Tensor::fromVector<float>(s, v);
  }
  std::string description() const override { return "vector"; }

 private:
  Shape sample_;
  std::vector<float> values_;
};

std::string floats(int count, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::string s;
  for (int i = 0; i < count; ++i) s += (i ? ", " : "") + std::to_string(d(rng));
  return s;
}

// x[N,4] -> Gemm(8) -> BatchNormalization-free Relu -> Gemm(3): a small classifier.
Model mlp(uint32_t seed) {
  return parse(
      "<ir_version: 8, opset_import: [\"\" : 13]>\n"
      "g (float[N,4] x) => (float[N,3] y)\n"
      "<float[8,4] w1 = {" +
      floats(32, seed, 0.7f) + "}, float[8] b1 = {" + floats(8, seed + 1, 0.1f) +
      "}, float[3,8] w2 = {" + floats(24, seed + 2, 0.5f) + "}, float[3] b2 = {" +
      floats(3, seed + 3, 0.1f) +
      "}>\n"
      "{\n h = Gemm <transB: int = 1> (x, w1, b1)\n r = Relu (h)\n"
      " y = Gemm <transB: int = 1> (r, w2, b2)\n}\n");
}

VectorReader randomData(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(count * 4);
  for (float& x : v) x = d(rng);
  return VectorReader({4}, v);
}

FinetuneOptions baseOptions() {
  FinetuneOptions o;
  o.epochs = 2;
  o.batch = 8;
  o.learning_rate = 0.02;
  o.num_threads = 1;
  o.seed = 7;
  return o;
}

std::vector<float> weights(const Model& m, const std::string& name) {
  const auto d = m.graph->findValue(name)->initializer()->data<float>();
  return {d.begin(), d.end()};
}

// Six epochs of distillation on 128 random samples, validated on 64 others.
StatusOr<FinetuneResult> distilSixEpochs(Model& student, const Model& teacher,
                                         FinetuneOptions o = baseOptions()) {
  VectorReader train = randomData(128, 3), val = randomData(64, 4);
  o.epochs = 6;
  o.val = &val;
  return finetune(student, teacher, train, o);
}

TEST(Finetune, DistillationMovesTheStudentTowardsTheTeacher) {
  const Model teacher = mlp(1);
  Model student = mlp(100);
  auto r = distilSixEpochs(student, teacher);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_EQ(r->epochs.size(), 6u);
  ASSERT_TRUE(r->epochs.front().val_loss && r->epochs.back().val_loss);
  // Validation distillation loss falls by more than half.
  EXPECT_LT(*r->epochs.back().val_loss, 0.5 * *r->epochs.front().val_loss);
  EXPECT_LT(r->epochs.back().train_loss, r->epochs.front().train_loss);
  EXPECT_GE(r->best_epoch, 1);
  EXPECT_EQ(r->steps, 6 * 16);
}

// A student that already matches its teacher loses on every epoch with a learning rate far too
// high: the starting weights compete on --val and come back unchanged (best_epoch 0).
TEST(Finetune, StartingWeightsAreKeptWhenNoEpochBeatsThemOnVal) {
  const Model teacher = mlp(1);
  Model student = mlp(1);
  FinetuneOptions o = baseOptions();
  o.learning_rate = 5.0;
  auto r = distilSixEpochs(student, teacher, o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(r->epochs.front().val_loss);
  EXPECT_GT(*r->epochs.front().val_loss, 0.0);  // training moved the weights away
  EXPECT_EQ(r->best_epoch, 0);
  for (const char* w : {"w1", "b1", "w2", "b2"})
    EXPECT_EQ(weights(student, w), weights(teacher, w)) << w;
}

// mlp() whose input fixes the batch at 1, as many exporters write it.
Model mlpFixedBatch(uint32_t seed) {
  Model m = mlp(seed);
  ValueType t = m.graph->inputs()[0]->type();
  (*t.shape)[0] = Dim::known(1);
  m.graph->inputs()[0]->setType(t);
  return m;
}

// A step sums the gradients of its passes: training a batch-1 model with batches of 8 (passes of
// one sample), or the free-batch model in passes of 3, 3 and 2, ends where whole batches of 8 do.
TEST(Finetune, PassesOfABatchMakeTheSameStep) {
  FinetuneOptions o = baseOptions();
  std::vector<std::string> lines;
  o.log = [&lines](const std::string& line) { lines.push_back(line); };
  VectorReader train = randomData(40, 3);
  Model whole = mlp(100);
  ASSERT_TRUE(finetune(whole, mlp(1), train, o).isOk());
  EXPECT_EQ(std::count_if(lines.begin(), lines.end(),
                          [](const std::string& l) { return l.find("passes") != l.npos; }),
            0);
  Model fixed = mlpFixedBatch(100);
  auto r = finetune(fixed, mlpFixedBatch(1), train, o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      "the model fixes its batch at 1: each step of 8 samples runs in passes of "
                      "1, their gradients summed"),
            lines.end());
  Model thirds = mlp(100);
  o.pass_batch = 3;
  ASSERT_TRUE(finetune(thirds, mlp(1), train, o).isOk());
  for (const char* name : {"w1", "b1", "w2", "b2"}) {
    const auto want = weights(whole, name), a = weights(fixed, name), b = weights(thirds, name);
    ASSERT_EQ(want.size(), a.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(a[i], want[i], 1e-4) << name << "[" << i << "]";
      EXPECT_NEAR(b[i], want[i], 1e-4) << name << "[" << i << "]";
    }
  }
  EXPECT_NE(weights(whole, "w2"), weights(mlp(100), "w2"));  // it trained
}

// mlp() with its probabilities as the output: Softmax over the classes, at `opset`.
Model mlpWithSoftmax(uint32_t seed, int opset) {
  Model m = mlp(seed);
  m.opset_imports = {{"", opset}};
  Graph& g = *m.graph;
  Value* logits = g.outputs()[0];
  Node* softmax = g.addNode("Softmax", {logits}, {"probs"});
  softmax->setAttribute(Attribute::makeInt("axis", 1));
  softmax->output()->setType(logits->type());
  g.setOutput(0, softmax->output());
  return m;
}

// Softmax outputs of `model` on `reader`: mean |p - p_teacher|.
double meanProbabilityError(const Model& model, const Model& teacher, data::SampleReader& reader) {
  auto s = exec::Executor::create(model), t = exec::Executor::create(teacher);
  auto x = reader.readBatch(0, reader.size());
  auto ps = (*s)->run({*x}), pt = (*t)->run({*x});
  EXPECT_TRUE(ps.isOk() && pt.isOk());
  const auto a = (*ps)[0].data<float>(), b = (*pt)[0].data<float>();
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += std::abs(a[i] - b[i]);
  return sum / a.size();
}

// A classifier that outputs probabilities trains on the logits before its Softmax (opset 9
// spelling, axis 1 of rank 2), and the written model still ends in that Softmax.
TEST(Finetune, ModelsEndingInSoftmaxTrainOnTheirLogits) {
  const Model teacher = mlpWithSoftmax(1, 9);
  Model student = mlpWithSoftmax(100, 9);
  VectorReader train = randomData(128, 3), val = randomData(64, 4);
  const double before = meanProbabilityError(student, teacher, val);
  FinetuneOptions o = baseOptions();
  o.epochs = 6;
  auto r = finetune(student, teacher, train, o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->softmax_logits, 1);
  EXPECT_EQ(r->loss, "kl");
  ASSERT_TRUE(student.graph->outputs()[0]->producer());
  EXPECT_EQ(student.graph->outputs()[0]->producer()->opType(), "Softmax");
  EXPECT_EQ(student.graph->outputs()[0]->name(), "probs");
  EXPECT_LT(meanProbabilityError(student, teacher, val), 0.5 * before);
  // The weights trained are the model's: w2 moved from where it started.
  EXPECT_NE(weights(student, "w2"), weights(mlpWithSoftmax(100, 9), "w2"));
}

// mlp() with a second head: the same logits through an Identity, a second [N, 3] output.
Model mlpWithTwoHeads(uint32_t seed) {
  Model m = mlp(seed);
  Graph& g = *m.graph;
  Node* second = g.addNode("Identity", {g.outputs()[0]}, {"y2"});
  second->output()->setType(g.outputs()[0]->type());
  g.addOutput(second->output());
  return m;
}

// --loss kl trains a model with several classification heads (auto would pick mse for it).
TEST(Finetune, KlTrainsSeveralHeads) {
  const Model teacher = mlpWithTwoHeads(1);
  Model student = mlpWithTwoHeads(100);
  FinetuneOptions o = baseOptions();
  o.loss.kind = train::LossKind::kKlDivergence;
  auto r = distilSixEpochs(student, teacher, o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->loss, "kl");
  ASSERT_TRUE(r->epochs.front().val_loss && r->epochs.back().val_loss);
  EXPECT_LT(*r->epochs.back().val_loss, 0.5 * *r->epochs.front().val_loss);
}

// Which final Softmaxes count: over the last axis only, in every opset's spelling, and only
// when every output has one.
TEST(SoftmaxHeads, OnlyLastAxisSoftmaxOnEveryOutputIsExposed) {
  auto graph = [](int opset, const std::string& body, const std::string& outs) {
    return parse("<ir_version: 8, opset_import: [\"\" : " + std::to_string(opset) +
                 "]>\ng (float[N,5,4] x) => (" + outs + ")\n{\n" + body + "}\n");
  };
  struct Case {
    int opset;
    std::string body, outs;
    int exposed;
  } cases[] = {
      {13, "y = Softmax (x)\n", "float[N,5,4] y", 1},                  // default -1
      {11, "y = Softmax <axis: int = 2> (x)\n", "float[N,5,4] y", 1},  // flattens at the last
      {11, "y = Softmax (x)\n", "float[N,5,4] y", 0},                  // default 1: two axes
      {13, "y = Softmax <axis: int = 1> (x)\n", "float[N,5,4] y", 0},  // not the last axis
      {13, "y = LogSoftmax <axis: int = -1> (x)\n", "float[N,5,4] y", 1},
      {13, "y = Softmax (x)\n z = Relu (x)\n", "float[N,5,4] y, float[N,5,4] z", 0},
      {13, "y = Softmax (x)\n z = LogSoftmax (x)\n", "float[N,5,4] y, float[N,5,4] z", 2},
      {13, "h = Relu (x)\n y = Sigmoid (h)\n", "float[N,5,4] y", 0},
  };
  for (const Case& c : cases) {
    Model m = graph(c.opset, c.body, c.outs);
    const size_t nodes = m.graph->numNodes();
    EXPECT_EQ(train::exposeSoftmaxLogits(m), c.exposed) << c.body;
    EXPECT_EQ(m.graph->numNodes(), nodes - c.exposed) << c.body;
    if (c.exposed) {
      EXPECT_EQ(m.graph->outputs()[0]->name(), "x") << c.body;
    }
  }
}

TEST(Finetune, ResumedRunEqualsUninterruptedRun) {
  const Model teacher = mlp(1);
  VectorReader train = randomData(60, 5), val = randomData(16, 6);
  FinetuneOptions o = baseOptions();
  o.val = &val;
  Model uninterrupted = mlp(100);
  auto a = finetune(uninterrupted, teacher, train, o);
  ASSERT_TRUE(a.isOk()) << a.status().toString();

  const auto dir = std::filesystem::temp_directory_path() / "nnc_finetune_resume_test";
  std::filesystem::remove_all(dir);
  o.checkpoint_dir = dir.string();
  o.checkpoint_every = 3;
  o.stop_after_steps = 11;  // mid second epoch (8 steps per epoch), off the checkpoint grid
  Model first = mlp(100);
  auto b = finetune(first, teacher, train, o);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  EXPECT_TRUE(b->stopped_early);
  EXPECT_NE(weights(first, "w1"), weights(uninterrupted, "w1"));
  o.stop_after_steps = -1;
  Model resumed = mlp(100);  // a fresh process: starts from the original weights file
  auto c = finetune(resumed, teacher, train, o);
  ASSERT_TRUE(c.isOk()) << c.status().toString();
  EXPECT_TRUE(c->resumed);
  for (const char* name : {"w1", "b1", "w2", "b2"})
    EXPECT_EQ(weights(resumed, name), weights(uninterrupted, name)) << name;
  EXPECT_EQ(c->best_epoch, a->best_epoch);

  // Another seed is another run: its checkpoint is refused.
  o.seed = 8;
  Model other = mlp(100);
  EXPECT_FALSE(finetune(other, teacher, train, o).isOk());
  std::filesystem::remove_all(dir);
}

TEST(Finetune, LabelsAndBadOptionsAreChecked) {
  const Model teacher = mlp(1);
  Model student = mlp(100);
  VectorReader train = randomData(16, 5);
  FinetuneOptions o = baseOptions();
  std::vector<int64_t> labels(15, 0);
  o.labels = &labels;
  EXPECT_EQ(finetune(student, teacher, train, o).status().code(), StatusCode::kInvalidArgument);
  labels.assign(16, 5);  // outside the 3 classes
  EXPECT_EQ(finetune(student, teacher, train, o).status().code(), StatusCode::kInvalidArgument);
  labels.assign(16, 1);
  EXPECT_TRUE(finetune(student, teacher, train, o).isOk());
  o.epochs = 0;
  EXPECT_FALSE(finetune(student, teacher, train, o).isOk());
}

// Weight averaging: a decay of ~0 averages nothing (the result equals a plain run); a real decay
// gives other weights, judged as such on the validation data; the average is part of the
// checkpoint (a resumed run ends equal to an uninterrupted one).
TEST(Finetune, WeightAverageIsKeptAndCheckpointed) {
  const Model teacher = mlp(1);
  VectorReader train = randomData(96, 5), val = randomData(64, 6);
  FinetuneOptions o = baseOptions();
  o.learning_rate = 0.05;
  o.epochs = 3;
  o.val = &val;
  Model plain = mlp(100), tiny = mlp(100), averaged = mlp(100);
  auto a = finetune(plain, teacher, train, o);
  o.ema_decay = 1e-12;
  auto b = finetune(tiny, teacher, train, o);
  ASSERT_TRUE(a.isOk() && b.isOk());
  for (const char* name : {"w1", "b1", "w2", "b2"})
    EXPECT_EQ(weights(tiny, name), weights(plain, name)) << name;
  o.ema_decay = 0.9;
  auto c = finetune(averaged, teacher, train, o);
  ASSERT_TRUE(c.isOk()) << c.status().toString();
  EXPECT_NE(weights(averaged, "w1"), weights(plain, "w1"));
  // Validation judges the averaged weights (the epoch metric differs from the plain run's).
  ASSERT_TRUE(c->epochs.front().val_loss && a->epochs.front().val_loss);
  EXPECT_NE(*c->epochs.front().val_loss, *a->epochs.front().val_loss);

  const auto dir = std::filesystem::temp_directory_path() / "nnc_finetune_ema_test";
  std::filesystem::remove_all(dir);
  o.checkpoint_dir = dir.string();
  o.stop_after_steps = 17;  // mid third epoch
  Model first = mlp(100);
  ASSERT_TRUE(finetune(first, teacher, train, o).isOk());
  o.stop_after_steps = -1;
  Model resumed = mlp(100);
  auto d = finetune(resumed, teacher, train, o);
  ASSERT_TRUE(d.isOk()) << d.status().toString();
  EXPECT_TRUE(d->resumed);
  for (const char* name : {"w1", "b1", "w2", "b2"})
    EXPECT_EQ(weights(resumed, name), weights(averaged, name)) << name;
  std::filesystem::remove_all(dir);
}

// Blocked fake quantization (FakeQuantSpec::block_size, as int4 weights with DequantizeLinear
// block_size): w1 [8, 4] in blocks of 2 along each row; the tape's output equals the executor's
// on a copy whose w1 was quantized by hand.
TEST(FakeQuant, BlockedScalesMatchAHandQuantizedCopy) {
  const Model model = mlp(11);
  Model by_hand = mlp(11);
  Tensor& w = *by_hand.graph->findValue("w1")->mutableInitializer();
  auto d = w.mutableData<float>();
  train::FakeQuantSpec spec;
  spec.axis = 0;
  spec.block_size = 2;
  spec.qmin = -7;
  spec.qmax = 7;
  for (int64_t b = 0; b < 16; ++b) {  // 8 rows x 2 blocks of 2
    const float m = std::max(std::abs(d[2 * b]), std::abs(d[2 * b + 1]));
    const float scale = m / 7.f;
    spec.scales.push_back(scale);
    for (int64_t j = 2 * b; j < 2 * b + 2; ++j)
      d[j] = std::clamp(std::nearbyint(d[j] / scale), -7.f, 7.f) * scale;
  }
  auto tape = train::GradientTape::create(model);
  ASSERT_TRUE(tape.isOk());
  ASSERT_TRUE((*tape)->setFakeQuant("w1", [spec](const Tensor&) { return spec; }).isOk());
  VectorReader data = randomData(5, 9);
  auto x = data.readBatch(0, 5);
  auto got = (*tape)->infer({*x});
  ASSERT_TRUE(got.isOk()) << got.status().toString();
  auto ex = exec::Executor::create(by_hand);
  ASSERT_TRUE(ex.isOk());
  auto want = (*ex)->run({*x});
  ASSERT_TRUE(want.isOk());
  for (int64_t i = 0; i < 15; ++i)
    EXPECT_NEAR((*got)[0].data<float>()[i], (*want)[0].data<float>()[i], 1e-5) << i;
  // A spec whose scale count does not fit the blocks is refused.
  spec.scales.pop_back();
  ASSERT_TRUE((*tape)->setFakeQuant("w1", [spec](const Tensor&) { return spec; }).isOk());
  EXPECT_FALSE((*tape)->infer({*x}).isOk());
}

// x[1,2,1,1] -> Conv w1 (4 units, 1x1) -> Relu -> Conv w2 -> Flatten -> logits [1, 2].
// x = (1, 1): a = (1, 2, 3, -10), r = (1, 2, 3, 0); y = (r0 + r2 + 5 r3, r1 + 5 r3) = (4, 2).
// Loss: cross-entropy against the model's own top-1 (class 0): dL/dy = softmax(y) - (1, 0)
// = (-q, q) with q = 1 / (1 + e^2). dL/dr = W2^T dL/dy = (-q, q, -q, 0).
// taylor_c = (g_c a_c)^2 = q^2 (1, 4, 9, 0). Unit 3 (largest weights, dead) goes first; l1 would
// remove unit 0.
Model taylorModel() {
  return parse(
      "<ir_version: 8, opset_import: [\"\" : 13]>\n"
      "g (float[N,2,1,1] x) => (float[N,2] y)\n"
      "<float[4,2,1,1] w1 = {1, 0, 0, 2, 1, 2, -5, -5}, "
      "float[2,4,1,1] w2 = {1, 0, 1, 5, 0, 1, 0, 5}>\n"
      "{\n a = Conv (x, w1)\n r = Relu (a)\n c = Conv (r, w2)\n y = Flatten (c)\n}\n");
}

TEST(Taylor, ScoresMatchTheHandComputation) {
  Model model = taylorModel();
  const ChannelAnalysis analysis = analyzeChannels(model);
  const ChannelGroup* group = nullptr;
  for (const ChannelGroup& g : analysis.groups)
    if (g.prunable) group = &g;
  ASSERT_NE(group, nullptr);
  VectorReader data({2, 1, 1}, {1.0f, 1.0f});
  CalibrationSource calibration{&data, 1, 1, 1};
  FeatureStats stats;
  const auto src = groupFeatureSource(*group);
  ASSERT_TRUE(src.has_value());
  EXPECT_EQ(src->value->name(), "r");
  ASSERT_TRUE(collectTaylorStats(model, {src->value}, calibration, stats).isOk());
  const double q = 1.0 / (1.0 + std::exp(2.0));
  CriterionOptions co;
  co.stats = &stats;
  auto taylor = makeCriterion("taylor", co);
  ASSERT_TRUE(taylor.isOk());
  auto scores = (*taylor)->score(*group);
  ASSERT_TRUE(scores.isOk()) << scores.status().toString();
  const double expected[4] = {q * q, 4 * q * q, 9 * q * q, 0.0};
  for (int c = 0; c < 4; ++c) EXPECT_NEAR((*scores)[c], expected[c], 1e-6) << "unit " << c;

  // Through pruneStep: the dead unit 3 is removed (l1 removes unit 0).
  PruneStepOptions so;
  so.criterion = "taylor";
  so.allocation.ratio = 0.25;
  so.calibration = &calibration;
  so.gradient_stats = taylorStatsFn();
  auto step = pruneStep(model, analysis, so);
  ASSERT_TRUE(step.isOk()) << step.status().toString();
  ASSERT_EQ(step->allocation.plan.size(), 1u);
  EXPECT_EQ(step->allocation.plan[0].keep, (std::vector<int64_t>{0, 1, 2}));
  so.criterion = "l1";
  auto l1 = pruneStep(model, analysis, so);
  ASSERT_TRUE(l1.isOk());
  EXPECT_EQ(l1->allocation.plan[0].keep, (std::vector<int64_t>{1, 2, 3}));
  // Without a gradient provider the criterion says what is missing.
  so.criterion = "taylor";
  so.gradient_stats = nullptr;
  EXPECT_EQ(pruneStep(model, analysis, so).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace nnc
