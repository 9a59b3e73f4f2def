// Embedding tables (constants read only as rows by Gather): int8 with one scale per row in every
// format, read through Gather(q) -> Cast -> Mul(Gather(scale)); tables read otherwise, or whose
// Gather is excluded, stay float. Outputs checked against float in our executor and in ONNX
// Runtime.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/quant/compact.h"
#include "nncompress/quant/quantize.h"
#include "ort_util.h"
#include "random_tensor.h"

namespace nnc {
namespace {

constexpr int64_t kVocab = 300, kDim = 16, kTokens = 5, kBatch = 2;

// A table whose rows span 1x..7x in magnitude, so one scale for all would lose the small rows.
Tensor table(Shape shape, uint32_t seed) {
  Tensor t = testing::randomTensor(shape, seed);
  const int64_t length = t.dim(1);
  auto d = t.mutableData<float>();
  for (int64_t i = 0; i < t.numel(); ++i) d[i] *= float(1 + (i / length) % 7);
  return t;
}

// ids [2, 5] int64 -> Gather(emb) -> MatMul(16x16) -> Relu -> + Gather(pos) -> ReduceMean over
// tokens -> Gemm -> logits [2, 4]; `cols` also reads a [16, 300] table by columns (axis 1).
Model tokenModel() {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* ids = g.createValue("ids").value();
  ids->setType({DType::kInt64, std::vector<Dim>{Dim::known(kBatch), Dim::known(kTokens)}});
  g.addInput(ids);
  Node* emb = g.addNode("Gather", {g.addInitializer("emb", table({kVocab, kDim}, 1)), ids}, {"e"});
  emb->setName("emb_lookup");
  Node* mm = g.addNode(
      "MatMul", {emb->output(0), g.addInitializer("w1", testing::randomTensor({kDim, kDim}, 2))},
      {"h"});
  Node* relu = g.addNode("Relu", {mm->output(0)}, {"r"});
  Node* pos = g.addNode("Gather", {g.addInitializer("pos", table({kVocab, kDim}, 3)), ids}, {"p"});
  pos->setName("pos_lookup");
  Node* cols =
      g.addNode("Gather", {g.addInitializer("cols", table({kDim, kVocab}, 4)), ids}, {"c"});
  cols->setAttribute(Attribute::makeInt("axis", 1));
  Node* cols_mean = g.addNode("ReduceMean", {cols->output(0)}, {"cm"});
  cols_mean->setAttribute(Attribute::makeInts("axes", {1, 2}));  // [16, 2, 5] -> [16, 1, 1]
  Node* cols_flat =
      g.addNode("Reshape",
                {cols_mean->output(0),
                 g.addInitializer("flat_shape", Tensor::fromVector<int64_t>({1}, {kDim}))},
                {"cf"});
  Node* sum = g.addNode("Add", {relu->output(0), pos->output(0)}, {"s"});
  Node* sum2 = g.addNode("Add", {sum->output(0), cols_flat->output(0)}, {"s2"});
  Node* mean = g.addNode("ReduceMean", {sum2->output(0)}, {"m"});
  mean->setAttribute(Attribute::makeInts("axes", {1}));
  mean->setAttribute(Attribute::makeInt("keepdims", 0));
  Node* fc =
      g.addNode("Gemm",
                {mean->output(0), g.addInitializer("fc_w", testing::randomTensor({4, kDim}, 5)),
                 g.addInitializer("fc_b", testing::randomTensor({4}, 6))},
                {"logits"});
  fc->setAttribute(Attribute::makeInt("transB", 1));
  g.addOutput(fc->output(0));
  return m;
}

Tensor tokenIds() {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < kBatch * kTokens; ++i) v.push_back((i * 37 + 11) % kVocab);
  v[3] = -1;  // negative indices count from the end, in both tables
  return Tensor::fromVector<int64_t>({kBatch, kTokens}, v);
}

Tensor run(const Model& m, exec::Observer observer = nullptr) {
  auto ex = exec::Executor::create(m, {});
  EXPECT_TRUE(ex.isOk()) << ex.status().message();
  if (!ex.isOk()) return Tensor();
  std::vector<Tensor> feeds{tokenIds()};
  auto out = (*ex)->run(std::move(feeds), observer);
  EXPECT_TRUE(out.isOk()) << out.status().message();
  return out.isOk() ? (*out)[0] : Tensor();
}

// The float table each Gather reads, and the int8 table + per-row scale behind each rewritten one.
struct RowTable {
  const Tensor* q = nullptr;
  const Tensor* scale = nullptr;
};
std::map<std::string, RowTable> rowTables(const Graph& g) {
  std::map<std::string, RowTable> out;
  for (const auto& n : g.nodes()) {
    if (!n->isOp("Mul")) continue;
    const Node* cast = n->input(0)->producer();
    const Node* rows = cast && cast->isOp("Cast") ? cast->input(0)->producer() : nullptr;
    const Node* scales = n->input(1)->producer();
    if (!rows || !rows->isOp("Gather") || !scales || !scales->isOp("Gather")) continue;
    out[rows->input(0)->name()] = {rows->input(0)->initializer(), scales->input(0)->initializer()};
  }
  return out;
}

std::vector<std::string> floatTablesRead(const Graph& g) {
  std::vector<std::string> names;
  for (const auto& n : g.nodes())
    if (n->isOp("Gather") && n->input(0)->initializer() &&
        n->input(0)->initializer()->dtype() == DType::kFloat32 &&
        n->input(0)->initializer()->numel() >= 1024)
      names.push_back(n->input(0)->name());
  return names;
}

class QuantTables : public ::testing::TestWithParam<quant::QuantFormat> {};

TEST_P(QuantTables, RowsAreInt8WithinHalfAStepAndOutputsMatchInOrt) {
  const Model original = tokenModel();
  Model m = tokenModel();
  quant::QuantizeOptions o;
  o.format = GetParam();
  o.exclude = {"pos_lookup"};
  auto targets = quant::selectTargets(*m.graph, o);
  ASSERT_TRUE(targets.isOk()) << targets.status().message();
  std::map<std::string, quant::Range> ranges;
  for (const std::string& v : quant::valuesToCalibrate(*targets, o)) ranges[v] = {0.f, 0.f};
  run(original, [&](const Value& v, const Tensor& t) {
    auto it = ranges.find(v.name());
    if (it == ranges.end()) return;
    for (float x : t.data<float>())
      it->second = {std::min(it->second.lo, x), std::max(it->second.hi, x)};
  });
  auto layers = quant::quantizeModel(m, *targets, ranges, o);
  ASSERT_TRUE(layers.isOk()) << layers.status().message();
  int gathers = 0;
  for (const auto& l : *layers) gathers += l.op == "Gather";
  EXPECT_EQ(gathers, 1);  // emb only: pos is excluded, cols is read by columns

  // Every element of the int8 table is within half its row's step of the float table.
  const auto tables = rowTables(*m.graph);
  ASSERT_EQ(tables.size(), 1u);
  const RowTable& t = tables.begin()->second;
  ASSERT_TRUE(t.q && t.scale);
  EXPECT_EQ(t.q->dtype(), DType::kInt8);
  EXPECT_EQ(t.scale->shape(), (Shape{kVocab, 1}));
  const Tensor& w = *original.graph->findValue("emb")->initializer();
  const auto wd = w.data<float>();
  const auto qd = t.q->data<int8_t>();
  const auto sd = t.scale->data<float>();
  for (int64_t i = 0; i < w.numel(); ++i)
    ASSERT_LE(std::abs(qd[i] * sd[i / kDim] - wd[i]), sd[i / kDim] * 0.5f + 1e-6f) << i;
  // Row r spans (1 + r % 7): its own scale, not the largest row's.
  EXPECT_GT(sd[6] / sd[0], 4.f);
  auto still_float = floatTablesRead(*m.graph);
  std::sort(still_float.begin(), still_float.end());
  EXPECT_EQ(still_float, (std::vector<std::string>{"cols", "pos"}));

  const Tensor expected = run(original);
  const Tensor ours = run(m);
  EXPECT_LT(testing::relativeMaxError(ours, expected), 2e-2);
  EXPECT_GT(testing::relativeMaxError(ours, expected), 0.0);  // the int8 rows are used

  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  ASSERT_TRUE(quant::compactModel(m, {true, true}).isOk());
  testing::TempDir dir;
  const auto path = dir / "tables.onnx";
  ASSERT_TRUE(saveModel(m, path).isOk());
  auto ort = testing::runOrt(path, {{"ids", tokenIds()}}, dir);
  ASSERT_TRUE(ort.isOk()) << ort.status().message();
  EXPECT_LT(testing::relativeMaxError((*ort)[0], run(m)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantTables,
                         ::testing::Values(quant::QuantFormat::kWeightsOnly,
                                           quant::QuantFormat::kQdq,
                                           quant::QuantFormat::kQOperator),
                         [](const auto& info) {
                           return std::string(quant::quantFormatName(info.param)) == "weights-only"
                                      ? std::string("WeightsOnly")
                                      : std::string(quant::quantFormatName(info.param));
                         });

// The row tables of `m` after weights-only quantization (empty when it fails, which fails the
// test).
std::map<std::string, RowTable> quantizeWeightsOnly(Model& m) {
  quant::QuantizeOptions o;
  o.format = quant::QuantFormat::kWeightsOnly;
  auto targets = quant::selectTargets(*m.graph, o);
  EXPECT_TRUE(targets.isOk());
  if (!targets.isOk()) return {};
  auto layers = quant::quantizeModel(m, *targets, {}, o);
  EXPECT_TRUE(layers.isOk()) << layers.status().message();
  return layers.isOk() ? rowTables(*m.graph) : std::map<std::string, RowTable>{};
}

// A table also read by something other than a Gather (tied weights read by a Mul here) keeps its
// float storage for every reader: one int8 copy per row would not serve the other reader.
TEST(QuantTables, TableWithOtherReadersStaysFloat) {
  Model m = tokenModel();
  Graph& g = *m.graph;
  Value* emb = g.findValue("emb");
  Node* tied = g.addNode("ReduceSum", {emb}, {"tied"});
  tied->setAttribute(Attribute::makeInt("keepdims", 0));
  g.addOutput(tied->output(0));
  const auto tables = quantizeWeightsOnly(m);
  EXPECT_EQ(tables.count("emb_q"), 0u);
  EXPECT_EQ(tables.size(), 1u);  // pos
  auto still_float = floatTablesRead(g);
  EXPECT_NE(std::find(still_float.begin(), still_float.end(), "emb"), still_float.end());
}

// A table holding an inf (a masked-out row, say) has no int8 grid: it stays float.
TEST(QuantTables, TableWithNonFiniteValuesStaysFloat) {
  Model m = tokenModel();
  Graph& g = *m.graph;
  Tensor emb = *g.findValue("emb")->initializer();
  emb.mutableData<float>()[5] = -std::numeric_limits<float>::infinity();
  g.findValue("emb")->setInitializer(std::move(emb));
  const auto tables = quantizeWeightsOnly(m);
  EXPECT_EQ(tables.count("emb_q"), 0u);
  EXPECT_EQ(tables.count("pos_q"), 1u);
}

}  // namespace
}  // namespace nnc
