// Detectors that end in NonMaxSuppression: quantization and pruning sensitivity are judged on the
// boxes and scores the selection reads (fidelity_taps.h), not on the selected lists, which change
// length when a score moves by a rounding step. Before, auto-exclude compared those lists and
// kept every layer float, and sensitivity allocation refused the int64 first output.

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include <onnx/defs/parser.h>

#include "graph_input.h"
#include "nncompress/analysis/fidelity_taps.h"
#include "nncompress/data/npy.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/quant/quantize.h"
#include "ort_util.h"
#include "random_tensor.h"

namespace nnc {
namespace {

Value* ints(Graph& g, const std::string& name, std::vector<int64_t> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return g.addInitializer(name, Tensor::fromVector<int64_t>({n}, v));
}

// As torchvision's detection exports: the selection runs inside an If that skips it when no
// score passes (then_branch reads boxes and scores from the outer graph).
Model withGuardedSelection(Model& m, Value* boxes, Value* scores) {
  Graph& g = *m.graph;
  Node* top = g.addNode("ReduceMax", {scores}, {"top"});
  top->setAttribute(Attribute::makeInt("keepdims", 0));
  Value* any =
      g.addNode("Greater",
                {top->output(0), g.addInitializer("zero", Tensor::fromVector<float>({}, {0.f}))},
                {"any"})
          ->output(0);
  Node* guard = g.addNode("If", {any}, {"selected"});
  guard->setName("guard");
  const char* branches[2][2] = {{"then_branch", R"(select () => (int64[?, 3] sel) {
      max = Constant<value = int64[1] {10}>()
      iou = Constant<value = float[1] {0.5}>()
      thr = Constant<value = float[1] {0.3}>()
      sel = NonMaxSuppression(boxes, scores, max, iou, thr)
    })"},
                                {"else_branch", R"(none () => (int64[?, 3] empty) {
      shape = Constant<value = int64[2] {0, 3}>()
      empty = ConstantOfShape<value = int64[1] {0}>(shape)
    })"}};
  for (const auto& [name, text] : branches) {
    onnx::GraphProto body;
    onnx::OnnxParser parser(text);
    EXPECT_TRUE(parser.Parse(body).IsOK()) << text;
    Attribute a;
    a.name = name;
    a.kind = AttrKind::kGraph;
    a.opaque = {body.SerializeAsString()};
    guard->setAttribute(std::move(a));
  }
  guard->addImplicitInput(boxes);
  guard->addImplicitInput(scores);
  guard->output(0)->setType({DType::kInt64, std::vector<Dim>{Dim::symbol("K"), Dim::known(3)}});
  g.addOutput(guard->output(0));
  return std::move(m);
}

// x [N, 3, 8, 8] -> Conv 3x3 -> Relu -> {Conv 1x1 -> boxes [N, 64, 4],
// Conv 1x1 -> Sigmoid -> scores [N, 2, 64]} -> NonMaxSuppression -> selected [K, 3] and the
// same as float [K, 3].
Model detector(bool with_nms, bool unbatched = false) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  g.setName("detector");
  Value* x = unbatched ? testing::addTypedInput(g, "image", DType::kFloat32,
                                                {Dim::known(3), Dim::known(8), Dim::known(8)})
                       : testing::addTypedInput(
                             g, "x", DType::kFloat32,
                             {Dim::symbol("N"), Dim::known(3), Dim::known(8), Dim::known(8)});
  if (unbatched)  // as torchvision's detection exports: one image, batched inside the model
    x = g.addNode("Unsqueeze", {x, ints(g, "axis0", {0})}, {"x"})->output(0);
  auto conv = [&](Value* in, const std::string& name, Shape w, uint32_t seed) {
    Node* c =
        g.addNode("Conv",
                  {in, g.addInitializer(name + "_w", testing::randomTensor(w, seed, -.5f, .5f)),
                   g.addInitializer(name + "_b", testing::randomTensor({w[0]}, seed + 1))},
                  {name});
    c->setName(name);
    if (w[2] == 3) c->setAttribute(Attribute::makeInts("pads", {1, 1, 1, 1}));
    return c->output(0);
  };
  Value* f = g.addNode("Relu", {conv(x, "body", {8, 3, 3, 3}, 1)}, {"f"})->output(0);
  Value* b4 =
      g.addNode("Reshape", {conv(f, "box", {4, 8, 1, 1}, 3), ints(g, "s4", {0, 4, -1})}, {"b4"})
          ->output(0);
  Node* boxes = g.addNode("Transpose", {b4}, {"boxes"});
  boxes->setAttribute(Attribute::makeInts("perm", {0, 2, 1}));
  Value* logits = conv(f, "cls", {2, 8, 1, 1}, 5);
  Value* sig = g.addNode("Sigmoid", {logits}, {"sig"})->output(0);
  Value* scores = g.addNode("Reshape", {sig, ints(g, "s2", {0, 2, -1})}, {"scores"})->output(0);
  if (!with_nms) {
    scores->setType(
        {DType::kFloat32, std::vector<Dim>{Dim::symbol("N"), Dim::known(2), Dim::known(64)}});
    g.addOutput(scores);
    return m;
  }
  if (unbatched) return withGuardedSelection(m, boxes->output(0), scores);
  Node* nms = g.addNode("NonMaxSuppression",
                        {boxes->output(0), scores, ints(g, "max", {10}),
                         g.addInitializer("iou", Tensor::fromVector<float>({1}, {0.5f})),
                         g.addInitializer("thr", Tensor::fromVector<float>({1}, {0.3f}))},
                        {"selected"});
  Node* picked = g.addNode("Cast", {nms->output(0)}, {"picked"});
  picked->setAttribute(Attribute::makeInt("to", 1));  // float: a float output after the selection
  const std::vector<Dim> k3{Dim::symbol("K"), Dim::known(3)};
  nms->output(0)->setType({DType::kInt64, k3});
  picked->output(0)->setType({DType::kFloat32, k3});
  g.addOutput(nms->output(0));
  g.addOutput(picked->output(0));
  return m;
}

TEST(DetectorNms, TapsAreTheBoxesAndScoresBeforeTheSelection) {
  Model with = detector(true), without = detector(false);
  EXPECT_TRUE(outputsFollowSelection(*with.graph));
  EXPECT_EQ(fidelityTaps(*with.graph), (std::vector<std::string>{"boxes", "scores"}));
  EXPECT_FALSE(outputsFollowSelection(*without.graph));
  EXPECT_EQ(fidelityTaps(*without.graph), (std::vector<std::string>{"scores"}));
}

// Every Conv is quantized and the SQNR reported is that of the boxes and scores, as is eval's
// cosine; the file runs in ONNX Runtime and selects from 2 classes.
TEST(DetectorNms, DetectorWithNmsIsQuantizedAndJudgedBeforeTheSelection) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing: run tools/bootstrap.sh";
  testing::TempDir dir;
  const auto model = dir / "det.onnx", out = dir / "det_q.onnx", calib = dir / "x.npy";
  ASSERT_TRUE(saveModel(detector(true), model).isOk());
  ASSERT_TRUE(
      data::writeNpy(calib.string(), testing::randomTensor({64, 3, 8, 8}, 9u, 0.f, 1.f)).isOk());
  for (const char* format : {"qdq", "qoperator"}) {
    SCOPED_TRACE(format);
    auto r =
        testing::runCli("quantize " + testing::quote(model) + " -o " + testing::quote(out) +
                        " --calib " + testing::quote(calib) + " --format " + format + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["layers"].size(), 3u) << r.out;
    ASSERT_TRUE(j["output_sqnr_db"].is_number()) << r.out;
    EXPECT_GT(j["output_sqnr_db"].get<double>(), 30.0);
    // eval compares the boxes and scores too (the selected lists have no sample axis).
    auto e = testing::runCli("eval " + testing::quote(out) + " --data " + testing::quote(calib) +
                             " --reference " + testing::quote(model) + " --json");
    ASSERT_EQ(e.exit_code, 0) << e.err;
    EXPECT_GT(nlohmann::json::parse(e.out)["cosine"].get<double>(), 0.999) << e.out;
    auto ort =
        testing::runOrt(out, {{"x", testing::randomTensor({2, 3, 8, 8}, 10u, 0.f, 1.f)}}, dir);
    ASSERT_TRUE(ort.isOk()) << ort.status().toString();
    ASSERT_EQ(ort->front().rank(), 2);
    EXPECT_EQ(ort->front().dim(1), 3);
    EXPECT_GT(ort->front().dim(0), 0);
  }
}

// Sensitivity allocation measures each group on the boxes and scores; the pruned file runs in
// ONNX Runtime.
TEST(DetectorNms, SensitivityAllocationPrunesADetector) {
  ASSERT_TRUE(testing::ortAvailable());
  testing::TempDir dir;
  const auto model = dir / "det.onnx", out = dir / "det_p.onnx", calib = dir / "x.npy";
  ASSERT_TRUE(saveModel(detector(true), model).isOk());
  ASSERT_TRUE(
      data::writeNpy(calib.string(), testing::randomTensor({64, 3, 8, 8}, 9u, 0.f, 1.f)).isOk());
  auto r = testing::runCli("prune " + testing::quote(model) + " -o " + testing::quote(out) +
                           " --target-macs 0.7 --allocation sensitivity --recover lsq --data " +
                           testing::quote(calib) + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_LE(j["macs_kept"].get<double>(), 0.7);
  auto ort = testing::runOrt(out, {{"x", testing::randomTensor({2, 3, 8, 8}, 10u, 0.f, 1.f)}}, dir);
  ASSERT_TRUE(ort.isOk()) << ort.status().toString();
  EXPECT_EQ(ort->front().dim(1), 3);
}

// A two-stage shape: TopK keeps the best-scoring proposals, whose features a box head (Gemm)
// reads. The taps are the scores and features before the TopK; the head, past the selection,
// keeps float activations (its weights are still int8).
TEST(DetectorNms, TopKIsASelectionAndTheHeadPastItKeepsFloatActivations) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* feats =
      testing::addTypedInput(g, "feats", DType::kFloat32, {Dim::known(16), Dim::known(8)});
  auto gemm = [&](Value* in, const std::string& name, Shape w) {
    Node* n = g.addNode("Gemm", {in, g.addInitializer(name + "_w", testing::randomTensor(w, 3u))},
                        {name});
    n->setName(name);
    n->setAttribute(Attribute::makeInt("transB", 1));
    return n->output(0);
  };
  Value* proposals = gemm(feats, "rpn", {8, 8});              // [16, 8]
  Value* objectness = gemm(proposals, "objectness", {1, 8});  // [16, 1]
  Value* flat = g.addNode("Flatten", {objectness}, {"flat"})->output(0);
  Node* sq = g.addNode("Reshape", {flat, ints(g, "to1d", {-1})}, {"scores"});
  Node* top = g.addNode("TopK", {sq->output(0), ints(g, "k", {4})}, {"best", "idx"});
  Value* picked = g.addNode("Gather", {proposals, top->output(1)}, {"picked"})->output(0);
  Value* head = gemm(picked, "box_head", {8, 8});
  g.addOutput(gemm(head, "box_pred", {4, 8}));
  EXPECT_TRUE(outputsFollowSelection(g));
  EXPECT_EQ(fidelityTaps(g), (std::vector<std::string>{"scores", "rpn"}));
  auto targets = quant::selectTargets(g, quant::QuantizeOptions{});
  ASSERT_TRUE(targets.isOk()) << targets.status().toString();
  std::map<std::string, bool> quantized_input;
  for (const auto& t : *targets) quantized_input[t.name] = !t.activation_inputs.empty();
  EXPECT_TRUE(quantized_input.at("objectness"));
  EXPECT_FALSE(quantized_input.at("box_head"));  // past the TopK
  EXPECT_EQ(targets->size(), 4u);                // every layer's weights still quantized
}

// A model with neither an input nor an output batch axis ([3, 8, 8] -> [4]): eval counts one
// sample per run and reads the reference's input the same way (it used to take the output's
// first axis, 4, for the number of samples).
TEST(DetectorNms, UnbatchedModelIsEvaluatedOneSamplePerRun) {
  testing::TempDir dir;
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  g.setName("unbatched");
  Value* x = testing::addTypedInput(g, "image", DType::kFloat32,
                                    {Dim::known(3), Dim::known(8), Dim::known(8)});
  Value* b = g.addNode("Unsqueeze", {x, ints(g, "axis0", {0})}, {"b"})->output(0);
  Value* c =
      g.addNode("Conv", {b, g.addInitializer("w", testing::randomTensor({4, 3, 3, 3}, 1u))}, {"c"})
          ->output(0);
  Value* p = g.addNode("GlobalAveragePool", {c}, {"p"})->output(0);
  Node* y = g.addNode("Reshape", {p, ints(g, "flat", {-1})}, {"y"});
  y->output(0)->setType({DType::kFloat32, std::vector<Dim>{Dim::known(4)}});
  g.addOutput(y->output(0));
  const auto model = dir / "m.onnx", data = dir / "x.npy";
  ASSERT_TRUE(saveModel(m, model).isOk());
  ASSERT_TRUE(
      data::writeNpy(data.string(), testing::randomTensor({10, 3, 8, 8}, 9u, 0.f, 1.f)).isOk());
  auto e = testing::runCli("eval " + testing::quote(model) + " --data " + testing::quote(data) +
                           " --reference " + testing::quote(model) + " --json");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const auto j = nlohmann::json::parse(e.out);
  EXPECT_EQ(j["count"].get<int64_t>(), 10) << e.out;
  EXPECT_EQ(j["sqnr_db"], "inf") << e.out;
}

// A detector whose input has no batch axis ([3, H, W], as torchvision exports) and whose
// selection sits in an If: quantize calibrates one image per run, through the If, and the file
// runs in ONNX Runtime with the same selection; eval and prune take it the same way.
TEST(DetectorNms, BatchlessDetectorWithGuardedSelection) {
  ASSERT_TRUE(testing::ortAvailable());
  testing::TempDir dir;
  const auto model = dir / "det.onnx", out = dir / "det_q.onnx", pruned = dir / "det_p.onnx",
             calib = dir / "x.npy";
  ASSERT_TRUE(saveModel(detector(true, true), model).isOk());
  ASSERT_TRUE(
      data::writeNpy(calib.string(), testing::randomTensor({16, 3, 8, 8}, 9u, 0.f, 1.f)).isOk());
  auto r = testing::runCli("quantize " + testing::quote(model) + " -o " + testing::quote(out) +
                           " --calib " + testing::quote(calib) + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["layers"].size(), 3u) << r.out;
  ASSERT_TRUE(j["output_sqnr_db"].is_number()) << r.out << r.err;
  EXPECT_GT(j["output_sqnr_db"].get<double>(), 30.0) << r.out;
  const Tensor image = testing::randomTensor({3, 8, 8}, 10u, 0.f, 1.f);
  auto want = testing::runOrt(model, {{"image", image}}, dir);
  auto got = testing::runOrt(out, {{"image", image}}, dir);
  ASSERT_TRUE(want.isOk() && got.isOk()) << got.status().toString();
  ASSERT_GE(want->front().dim(0), 5);
  ASSERT_GE(got->front().dim(0), 5);
  const auto a = got->front().toInt64Vector(), b = want->front().toInt64Vector();
  // The five best boxes are the same (lower down, near-tied scores may trade places).
  EXPECT_EQ(std::vector<int64_t>(a.begin(), a.begin() + 15),
            std::vector<int64_t>(b.begin(), b.begin() + 15));

  auto e = testing::runCli("eval " + testing::quote(out) + " --data " + testing::quote(calib) +
                           " --reference " + testing::quote(model) + " --json");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const auto ej = nlohmann::json::parse(e.out);
  EXPECT_EQ(ej["count"].get<int64_t>(), 16) << e.out;
  EXPECT_GT(ej["sqnr_db"].get<double>(), 30.0) << e.out;  // of the boxes and scores
  auto p = testing::runCli("prune " + testing::quote(model) + " -o " + testing::quote(pruned) +
                           " --ratio 0.25 --method contribution --recover lsq --data " +
                           testing::quote(calib) + " --json");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  ASSERT_TRUE(testing::runOrt(pruned, {{"image", image}}, dir).isOk());
}

}  // namespace
}  // namespace nnc
