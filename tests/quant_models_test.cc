// Quantized fixtures end to end: QDQ (int8) and weight-only (int8, int4) exports of every fixture
// pass the ONNX checker (opset <= 17), load and run in ONNX Runtime with outputs close to our
// executor's, and shrink the file. The CLI's usage errors and JSON fields. The FullDataset test
// (label full_dataset) measures top-1 on the 10k test set against the float fixture.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/pipeline/evaluate.h"
#include "nncompress/quant/balanced_rounding.h"
#include "nncompress/quant/bn_fold.h"
#include "nncompress/quant/calibration.h"
#include "nncompress/quant/compact.h"
#include "nncompress/quant/equalize.h"
#include "nncompress/quant/quantize.h"
#include "ort_util.h"

namespace nnc {
namespace {

const char* kData = "/usr/share/datasets/fashion-mnist/";
const char* kFixtures[] = {"vgg_bn",   "resnet",       "mobilenetv2",
                           "densenet", "flatten_head", "preact_densenet"};

std::unique_ptr<data::SampleReader> openSet(const std::string& file) {
  data::Preprocess p;
  EXPECT_TRUE(data::setPreprocessOption(p, "mean", "0.2860").isOk());
  EXPECT_TRUE(data::setPreprocessOption(p, "std", "0.3530").isOk());
  auto r = data::openData(std::string(kData) + file, p);
  EXPECT_TRUE(r.isOk()) << r.status().message();
  return std::move(r).value();
}

// The quantize command's pipeline: fold BN, calibrate on the first `calib` TRAIN images, export.
StatusOr<Model> quantizeFixture(const std::string& name, quant::QuantizeOptions options,
                                quant::CalibMethod method, int64_t calib = 256) {
  NNC_ASSIGN_OR_RETURN(Model m, loadModel(testing::sourcePath("models/" + name + ".onnx")));
  // int4 needs opset 21: the version converter takes the model to 17 first (as the CLI does).
  if (options.weight_bits == 4) NNC_RETURN_IF_ERROR(convertOpset(m, 17));
  NNC_ASSIGN_OR_RETURN(auto folded, quant::foldBatchNorms(*m.graph));
  (void)folded;
  quant::RemainingBatchNormOptions rbo;  // as the quantize command does
  rbo.into_next_layer = options.weight_bits == 8 && options.act_bits == 8;
  rbo.per_channel_weights = options.per_channel;
  rbo.quantized_activations = options.format != quant::QuantFormat::kWeightsOnly;
  NNC_ASSIGN_OR_RETURN(auto rest, quant::foldRemainingBatchNorms(*m.graph, rbo));
  (void)rest;
  NNC_ASSIGN_OR_RETURN(auto targets, quant::selectTargets(*m.graph, options));
  std::map<std::string, quant::Range> ranges;
  if (options.format != quant::QuantFormat::kWeightsOnly) {
    const std::vector<std::string> names = quant::valuesToCalibrate(targets, options);
    auto reader = openSet("train-images-idx3-ubyte.gz");
    quant::CalibrationOptions co;
    co.calib_size = calib;
    NNC_ASSIGN_OR_RETURN(auto hist, quant::collectHistograms(m, *reader, names, co));
    for (const auto& [n, h] : hist) ranges[n] = h.range(method, options.symmetric_activations, 8);
  }
  NNC_ASSIGN_OR_RETURN(auto layers, quant::quantizeModel(m, targets, ranges, options));
  if (layers.empty()) return internalError("nothing quantized");
  NNC_ASSIGN_OR_RETURN(auto compacted, quant::compactModel(m));
  (void)compacted;
  return m;
}

struct ExportCase {
  std::string name;
  quant::QuantFormat format;
  int weight_bits;
  double max_size_ratio;
};

class QuantExport : public ::testing::TestWithParam<ExportCase> {};

TEST_P(QuantExport, CheckerOrtAndSize) {
  const ExportCase& p = GetParam();
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  quant::QuantizeOptions options;
  options.format = p.format;
  options.weight_bits = p.weight_bits;
  auto m = quantizeFixture(p.name, options, quant::CalibMethod::kMinMax, 128);
  ASSERT_TRUE(m.isOk()) << m.status().message();
  int dq = 0, int_weights = 0, float_conv_weights = 0, qlinear = 0;
  for (const auto& n : m->graph->nodes()) {
    // DequantizeLinear, or Cast of an int8 weight (a float-input layer's, compact.h).
    const Value* in = n->isOp("Cast") ? n->input(0) : nullptr;
    dq += n->isOp("DequantizeLinear") || (in && in->isInitializer() && in->dtype() == DType::kInt8);
    qlinear += n->isOp("QLinearConv") || n->isOp("QLinearMatMul");
    if (n->isOp("Conv") && n->input(1)->isInitializer()) ++float_conv_weights;
  }
  for (const Value* v : m->graph->initializers())
    int_weights += v->dtype() == (p.weight_bits == 4 ? DType::kInt4 : DType::kInt8) &&
                   v->initializer()->numel() > 16;
  EXPECT_GT(dq, 0);
  EXPECT_GT(int_weights, 0);
  EXPECT_EQ(float_conv_weights, 0);  // every Conv reads a dequantized integer weight
  EXPECT_EQ(qlinear > 0, p.format == quant::QuantFormat::kQOperator);

  testing::TempDir dir;
  const auto path = dir / "q.onnx";
  ASSERT_TRUE(saveModel(*m, path).isOk());
  const int64_t opset = m->opsetVersion("");
  if (p.weight_bits == 8) {
    EXPECT_LE(opset, 17);
    Status checked = checkModelFile(path);
    EXPECT_TRUE(checked.isOk()) << checked.message();
  } else {
    EXPECT_EQ(opset, 21);
    EXPECT_GE(m->ir_version, 10);  // the first IR with int4
  }
  const double ratio =
      double(std::filesystem::file_size(path)) /
      double(std::filesystem::file_size(testing::sourcePath("models/" + p.name + ".onnx")));
  EXPECT_LE(ratio, p.max_size_ratio);

  auto reader = openSet("t10k-images-idx3-ubyte.gz");
  auto x = reader->readBatch(0, 16);
  ASSERT_TRUE(x.isOk());
  auto ours = exec::Executor::create(*m);
  ASSERT_TRUE(ours.isOk()) << ours.status().message();
  auto our_out = (*ours)->run({*x});
  ASSERT_TRUE(our_out.isOk()) << our_out.status().message();
  auto ort_out = testing::runOrt(path, {{"input", *x}}, dir);
  ASSERT_TRUE(ort_out.isOk()) << ort_out.status().message();
  ASSERT_EQ(ort_out->size(), 1u);
  EXPECT_EQ((*ort_out)[0].shape(), (Shape{16, 10}));
  // QDQ: ORT fuses into integer kernels whose requantization rounds differently (a value may land
  // one step away from the float QDQ chain's); the ort placement has such a step after every
  // layer and residual Add (mobilenetv2: 2.5%).
  EXPECT_LT(testing::relativeMaxError((*our_out)[0], (*ort_out)[0]), 0.03);
}

std::vector<ExportCase> exportCases() {
  std::vector<ExportCase> cases;
  for (const char* f : kFixtures) {
    // Issue 6 targets: int8 files <= 30% of the float file, int4 weight-only <= 18%. File size is
    // deterministic (no calibration data enters it except a few scalars), so these are exact
    // checks. The tightest (tools/quant_results.py): mobilenetv2 QOperator 28.9%, qdq 28.3%,
    // densenet qdq 27.4%, int4 17.4%.
    cases.push_back({f, quant::QuantFormat::kQdq, 8, 0.30});
    cases.push_back({f, quant::QuantFormat::kWeightsOnly, 8, 0.30});
    cases.push_back({f, quant::QuantFormat::kWeightsOnly, 4, 0.18});
    cases.push_back({f, quant::QuantFormat::kQOperator, 8, 0.30});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, QuantExport, ::testing::ValuesIn(exportCases()),
                         [](const auto& info) {
                           std::string format = quant::quantFormatName(info.param.format);
                           std::replace(format.begin(), format.end(), '-', '_');
                           return info.param.name + "_" + format +
                                  std::to_string(info.param.weight_bits);
                         });

// int4 needs opset 21. Below 17 only the version converter changes the opset: an opset-13 model
// is refused (the caller converts it); from 17 the quantizer bumps to 21 (IR 10). What 18-21 read
// differently is respelled to mean the same (a ReduceMean's axes attribute becomes its axes
// input: LayerNorm as exported before opset 17 is made of such ReduceMeans); a node whose meaning
// changed otherwise (DFT's axis) refuses the bump.
TEST(QuantizeOpset, Int4BumpsOnlyFromTheConvertersOpset) {
  quant::QuantizeOptions o;
  o.format = quant::QuantFormat::kWeightsOnly;
  o.weight_bits = 4;
  auto m = loadModel(testing::sourcePath("models/flatten_head.onnx"));
  ASSERT_TRUE(m.isOk());
  ASSERT_EQ(m->opsetVersion(""), 13);
  auto targets = quant::selectTargets(*m->graph, o);
  ASSERT_TRUE(targets.isOk());
  auto refused = quant::quantizeModel(*m, *targets, {}, o);
  EXPECT_EQ(refused.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(refused.status().message().find("convert"), std::string::npos);
  EXPECT_EQ(m->opsetVersion(""), 13);
  ASSERT_TRUE(convertOpset(*m, 17).isOk());
  targets = quant::selectTargets(*m->graph, o);
  ASSERT_TRUE(targets.isOk());
  ASSERT_TRUE(quant::quantizeModel(*m, *targets, {}, o).isOk());
  EXPECT_EQ(m->opsetVersion(""), 21);
  EXPECT_GE(m->ir_version, 10);

  auto withMean = [](Model& r) {
    Graph& g = *r.graph;
    Node* mean = g.addNode("ReduceMean", {g.outputs()[0]}, {"mean"});
    mean->setAttribute(Attribute::makeInts("axes", {1}));
    g.addOutput(mean->output(0));
    return mean;
  };
  auto r = loadModel(testing::sourcePath("models/flatten_head.onnx"));
  ASSERT_TRUE(r.isOk());
  ASSERT_TRUE(convertOpset(*r, 17).isOk());
  Node* mean = withMean(*r);
  ASSERT_TRUE(inferShapes(*r).isOk());
  auto float_model = cloneModel(*r);
  ASSERT_TRUE(float_model.isOk());
  auto rt = quant::selectTargets(*r->graph, o);
  ASSERT_TRUE(rt.isOk());
  ASSERT_TRUE(quant::quantizeModel(*r, *rt, {}, o).isOk());
  EXPECT_EQ(r->opsetVersion(""), 21);
  EXPECT_FALSE(mean->hasAttribute("axes"));
  ASSERT_EQ(mean->numInputs(), 2u);
  EXPECT_EQ(mean->input(1)->constantData()->toInt64Vector(), (std::vector<int64_t>{1}));
  auto reader = openSet("t10k-images-idx3-ubyte.gz");
  auto x = reader->readBatch(0, 8);
  ASSERT_TRUE(x.isOk());
  testing::TempDir dir;
  ASSERT_TRUE(saveModel(*r, dir / "int4.onnx").isOk());
  ASSERT_TRUE(saveModel(*float_model, dir / "float.onnx").isOk());
  auto got = testing::runOrt(dir / "int4.onnx", {{"input", *x}}, dir);
  auto want = testing::runOrt(dir / "float.onnx", {{"input", *x}}, dir);
  ASSERT_TRUE(got.isOk() && want.isOk()) << got.status().message() << want.status().message();
  ASSERT_EQ(got->size(), 2u);
  // ORT at opset 21 averages the logits over axis 1, as the axes attribute said at opset 17.
  ASSERT_EQ((*got)[1].shape(), (Shape{8, 1}));
  const Tensor& logits = (*got)[0];
  const int64_t classes = logits.dim(1);
  for (int64_t i = 0; i < 8; ++i) {
    double sum = 0;
    for (int64_t c = 0; c < classes; ++c) sum += logits.data<float>()[i * classes + c];
    EXPECT_NEAR((*got)[1].data<float>()[i], sum / classes, 1e-5) << i;
  }
  EXPECT_LT(testing::relativeMaxError(logits, (*want)[0]), 0.2);  // int4 weights

  // GridSample's opset-17 modes, spelled as opset 20 names them (no kernel here: structure only).
  auto gs = loadModel(testing::sourcePath("models/flatten_head.onnx"));
  ASSERT_TRUE(gs.isOk());
  ASSERT_TRUE(convertOpset(*gs, 17).isOk());
  std::vector<Node*> samplers;
  for (const char* mode : {"bilinear", "bicubic", "nearest"}) {
    Graph& g = *gs->graph;
    samplers.push_back(g.addNode("GridSample", {g.inputs()[0], g.inputs()[0]}, {mode}));
    samplers.back()->setAttribute(Attribute::makeString("mode", mode));
    g.addOutput(samplers.back()->output(0));  // kept by removeDeadNodes
  }
  auto gt = quant::selectTargets(*gs->graph, o);
  ASSERT_TRUE(gt.isOk());
  ASSERT_TRUE(quant::quantizeModel(*gs, *gt, {}, o).isOk());
  EXPECT_EQ(samplers[0]->stringAttr("mode", ""), "linear");
  EXPECT_EQ(samplers[1]->stringAttr("mode", ""), "cubic");
  EXPECT_EQ(samplers[2]->stringAttr("mode", ""), "nearest");

  auto d = loadModel(testing::sourcePath("models/flatten_head.onnx"));
  ASSERT_TRUE(d.isOk());
  ASSERT_TRUE(convertOpset(*d, 17).isOk());
  Graph& dg = *d->graph;
  Node* dft = dg.addNode("DFT", {dg.outputs()[0]}, {"spectrum"});
  dft->setAttribute(Attribute::makeInt("axis", 1));
  auto dt = quant::selectTargets(dg, o);
  ASSERT_TRUE(dt.isOk());
  auto blocked = quant::quantizeModel(*d, *dt, {}, o);
  EXPECT_EQ(blocked.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(blocked.status().message().find("DFT"), std::string::npos)
      << blocked.status().message();
  EXPECT_EQ(d->opsetVersion(""), 17);
}

TEST(QuantizeSelect, LastLayerStaysFloatAndExcludeWorks) {
  auto m = loadModel(testing::sourcePath("models/flatten_head.onnx"));
  ASSERT_TRUE(m.isOk());
  quant::QuantizeOptions o;
  auto all = quant::selectTargets(*m->graph, o);
  ASSERT_TRUE(all.isOk());
  ASSERT_EQ(all->size(), 5u);  // 3 Conv + 2 Gemm
  // The classifier Gemm gets int8 weights but keeps a float input.
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ((*all)[i].activation_inputs.size(), 1u) << i;
  EXPECT_TRUE((*all)[4].activation_inputs.empty());
  o.quantize_last = true;
  auto with_last = quant::selectTargets(*m->graph, o);
  ASSERT_TRUE(with_last.isOk());
  EXPECT_EQ((*with_last)[4].activation_inputs.size(), 1u);
  o.quantize_last = false;
  o.exclude = {(*all)[0].name};
  auto fewer = quant::selectTargets(*m->graph, o);
  ASSERT_TRUE(fewer.isOk());
  EXPECT_EQ(fewer->size(), 4u);
  o.exclude = {"no_such_layer"};
  EXPECT_EQ(quant::selectTargets(*m->graph, o).status().code(), StatusCode::kInvalidArgument);
}

TEST(QuantizeCli, MissingCalibIsUsageError) {
  testing::TempDir dir;
  auto r = testing::runCli("quantize " + testing::quote(testing::sourcePath("models/resnet.onnx")) +
                           " -o " + testing::quote(dir / "q.onnx"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--calib"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "q.onnx"));
}

TEST(QuantizeCli, JsonFieldsAndTable) {
  testing::TempDir dir;
  const std::string model = testing::quote(testing::sourcePath("models/vgg_bn.onnx"));
  const std::string calib = std::string(" --calib ") + kData +
                            "train-images-idx3-ubyte.gz --mean 0.2860 --std 0.3530 "
                            "--calib-size 64 --sqnr-samples 32 --calib-method entropy "
                            "--no-auto-exclude";  // every layer int8, as counted below
  auto r = testing::runCli("quantize " + model + " -o " + testing::quote(dir / "q.onnx") + calib +
                           " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"params", "macs", "file_bytes"}) {
    EXPECT_TRUE(j["before"].contains(k)) << k;
    EXPECT_TRUE(j["after"].contains(k)) << k;
  }
  EXPECT_EQ(j["output"], (dir / "q.onnx").string());
  EXPECT_LT(j["after"]["file_bytes"].get<int64_t>(), j["before"]["file_bytes"].get<int64_t>() / 3);
  ASSERT_EQ(j["layers"].size(), 6u);  // 5 Conv + the classifier Gemm (float activations)
  for (const auto& l : j["layers"]) {
    EXPECT_EQ(l["weight_bits"], 8);
    EXPECT_EQ(l["act_bits"], l["op"] == "Gemm" ? 0 : 8);
    EXPECT_GT(l["sqnr_db"].get<double>(), 15.0) << l["name"];
  }
  EXPECT_EQ(j["batchnorms_folded"], 5);
  EXPECT_FALSE(j.contains("auto_exclude"));
  auto t = testing::runCli("quantize " + model + " -o " + testing::quote(dir / "q2.onnx") + calib);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.out.find("SQNR dB"), std::string::npos);
  EXPECT_NE(t.out.find("model output SQNR"), std::string::npos);
  auto bad = testing::runCli("quantize " + model + " -o " + testing::quote(dir / "q3.onnx") +
                             calib + " --exclude nope");
  EXPECT_EQ(bad.exit_code, 2);
}

// The pre-activation fixture's post-Concat BNs (scales spanning 981x) stay float Mul/Add instead
// of widening the next convs' grids: the logits keep > 25 dB SQNR at int8 QDQ (3.5 dB when they
// were folded forward), every layer > 15 dB.
TEST(QuantizeCli, PreActivationBatchNormsKeepGrids) {
  testing::TempDir dir;
  auto r = testing::runCli("quantize " +
                           testing::quote(testing::sourcePath("models/preact_densenet.onnx")) +
                           " -o " + testing::quote(dir / "q.onnx") + " --calib " + kData +
                           "train-images-idx3-ubyte.gz --mean 0.2860 --std 0.3530 --calib-size 64 "
                           "--sqnr-samples 64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["batchnorms_folded"], 8);
  EXPECT_GT(j["output_sqnr_db"].get<double>(), 25.0);
  for (const auto& l : j["layers"]) EXPECT_GT(l["sqnr_db"].get<double>(), 15.0) << l["name"];
}

// --rounding adaround re-rounds int4 weights on calibration data: the logits get closer to float
// than with nearest rounding; bad combinations are usage errors.
TEST(QuantizeCli, AdaRoundRaisesOutputSqnr) {
  testing::TempDir dir;
  const std::string cmd = "quantize " +
                          testing::quote(testing::sourcePath("models/mobilenetv2.onnx")) +
                          " --format weights-only --weight-bits 4 --calib " + kData +
                          "train-images-idx3-ubyte.gz --mean 0.2860 --std 0.3530 --calib-size 64 "
                          "--sqnr-samples 64 --json -o ";
  auto nearest = testing::runCli(cmd + testing::quote(dir / "a.onnx") + " --rounding nearest");
  auto learned = testing::runCli(cmd + testing::quote(dir / "b.onnx") + " --rounding adaround");
  ASSERT_EQ(nearest.exit_code, 0) << nearest.err;
  ASSERT_EQ(learned.exit_code, 0) << learned.err;
  auto a = nlohmann::json::parse(nearest.out), b = nlohmann::json::parse(learned.out);
  EXPECT_EQ(a["rounding"], "nearest");
  EXPECT_GT(b["adaround_layers"].get<int>(), 10);
  EXPECT_GT(b["output_sqnr_db"].get<double>(), a["output_sqnr_db"].get<double>() + 2.0);
  EXPECT_EQ(testing::runCli(cmd + testing::quote(dir / "c.onnx") + " --rounding up").exit_code, 2);
  EXPECT_EQ(testing::runCli(cmd + testing::quote(dir / "d.onnx") +
                            " --rounding adaround --format qoperator --weight-bits 8")
                .exit_code,
            2);
  EXPECT_FALSE(std::filesystem::exists(dir / "c.onnx"));
}

// Bias correction removes the mean shift int4 weights rounded to nearest cause: the logits get
// closer to float. (Balanced rounding, the default, removes most of that shift by itself.)
TEST(QuantizeCli, BiasCorrectionRaisesOutputSqnr) {
  testing::TempDir dir;
  const std::string cmd =
      "quantize " + testing::quote(testing::sourcePath("models/mobilenetv2.onnx")) +
      " --rounding nearest --format weights-only --weight-bits 4 --calib " + kData +
      "train-images-idx3-ubyte.gz --mean 0.2860 --std 0.3530 --calib-size 64 "
      "--sqnr-samples 64 --json -o ";
  auto plain = testing::runCli(cmd + testing::quote(dir / "a.onnx"));
  auto corrected = testing::runCli(cmd + testing::quote(dir / "b.onnx") + " --bias-correction");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(corrected.exit_code, 0) << corrected.err;
  auto a = nlohmann::json::parse(plain.out), b = nlohmann::json::parse(corrected.out);
  EXPECT_EQ(a["bias_corrected_layers"], 0);
  EXPECT_GT(b["bias_corrected_layers"].get<int>(), 10);
  EXPECT_GT(b["output_sqnr_db"].get<double>(), a["output_sqnr_db"].get<double>() + 2.0);
}

// Models that hard-code batch 1 (a Reshape to [1, -1], a static batch dim) are calibrated and
// bias-corrected one sample at a time: correctBiases used to run batches of 32 and failed.
TEST(QuantizeCli, BiasCorrectionRespectsStaticBatch) {
  testing::TempDir dir;
  auto loaded = loadModel(testing::sourcePath("models/mobilenetv2.onnx"));
  ASSERT_TRUE(loaded.isOk()) << loaded.status().message();
  Model m = std::move(loaded).value();
  Graph& g = *m.graph;
  Node* flatten = nullptr;
  for (const auto& n : g.nodes())
    if (n->opType() == "Flatten") flatten = n.get();
  ASSERT_NE(flatten, nullptr);
  Value* target = g.addInitializer("batch1_shape", Tensor::fromVector<int64_t>({2}, {1, -1}));
  Node* reshape = g.insertNodeBefore(flatten, "Reshape", {flatten->input(0), target}, {"flat1"});
  g.replaceAllUsesWith(flatten->output(0), reshape->output(0));
  g.eraseNode(flatten);
  for (Value* v : {g.inputs()[0], g.outputs()[0]}) {
    ValueType t = v->type();
    t.shape->front() = Dim::known(1);
    v->setType(t);
  }
  ASSERT_TRUE(saveModel(m, dir / "b1.onnx").isOk());
  auto r =
      testing::runCli("quantize " + testing::quote(dir / "b1.onnx") +
                      " --format weights-only --weight-bits 4 --bias-correction --calib " + kData +
                      "train-images-idx3-ubyte.gz --mean 0.2860 --std 0.3530 "
                      "--calib-size 16 --sqnr-samples 16 --json -o " +
                      testing::quote(dir / "q.onnx"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(nlohmann::json::parse(r.out)["bias_corrected_layers"].get<int>(), 10);
}

Tensor runFloat(const Model& m, const Tensor& x) {
  auto ex = exec::Executor::create(m);
  EXPECT_TRUE(ex.isOk()) << ex.status().message();
  if (!ex.isOk()) return Tensor();
  auto out = (*ex)->run({x});
  EXPECT_TRUE(out.isOk()) << out.status().message();
  return out.isOk() ? (*out)[0] : Tensor();
}

// Balanced rounding keeps every channel's rounding-error sum within half a step, flipping only
// roundings that were near half a step, and lowers the logits' error of weights-only int8 on every
// fixture (flatten_head, 10k test images: 41.4 -> 46.2 dB; plain nearest lost 0.11 point there).
TEST(QuantRounding, BalancedKeepsChannelSumsAndRaisesSqnr) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  const std::vector<float> scale = {0.01f, 0.02f, 0.05f, 0.1f};
  auto row = [](int64_t i) { return i / 300; };
  std::vector<float> w(4 * 300);  // about +-100 steps: nothing clipped
  for (size_t i = 0; i < w.size(); ++i) w[i] = 30 * scale[row(i)] * normal(rng);
  const auto nearest = quant::roundWeights(w, scale, row, 127, false);
  const auto balanced = quant::roundWeights(w, scale, row, 127, true);
  int flipped = 0;
  for (int64_t c = 0; c < 4; ++c) {
    double near_sum = 0, bal_sum = 0;
    for (int64_t i = c * 300; i < (c + 1) * 300; ++i) {
      const double r = w[i] / scale[c];
      EXPECT_EQ(nearest[i], int(std::clamp<double>(std::nearbyint(r), -127, 127)));
      near_sum += nearest[i] - r;
      bal_sum += balanced[i] - r;
      if (balanced[i] != nearest[i]) {
        ++flipped;
        EXPECT_EQ(std::abs(balanced[i] - nearest[i]), 1);
        EXPECT_GT(std::abs(r - std::floor(r) - 0.5), 0.0);
        EXPECT_LT(std::abs(balanced[i] - r), 1.0);  // still one of the two neighbours
      }
    }
    EXPECT_LE(std::abs(bal_sum), 0.5) << c;
    EXPECT_LE(std::abs(bal_sum), std::abs(near_sum) + 1e-9) << c;
  }
  EXPECT_GT(flipped, 0);

  auto reader = openSet("t10k-images-idx3-ubyte.gz");
  auto x = reader->readBatch(0, 256);
  ASSERT_TRUE(x.isOk());
  for (const char* name : {"flatten_head", "resnet"}) {
    auto f = loadModel(testing::sourcePath(std::string("models/") + name + ".onnx"));
    ASSERT_TRUE(f.isOk());
    const Tensor expected = runFloat(*f, *x);
    auto sqnr = [&](bool balanced_rounding) {
      quant::QuantizeOptions o;
      o.format = quant::QuantFormat::kWeightsOnly;
      o.balanced_rounding = balanced_rounding;
      auto q = quantizeFixture(name, o, quant::CalibMethod::kMinMax);
      EXPECT_TRUE(q.isOk()) << q.status().message();
      if (!q.isOk()) return 0.0;
      const Tensor got = runFloat(*q, *x);
      double signal = 0, noise = 0;
      for (int64_t i = 0; i < expected.numel(); ++i) {
        const double e = expected.data<float>()[i], d = got.data<float>()[i] - e;
        signal += e * e, noise += d * d;
      }
      return 10 * std::log10(signal / noise);
    };
    const double plain = sqnr(false), balanced = sqnr(true);
    EXPECT_GT(balanced, plain + 3.0) << name << ": nearest " << plain << " dB";
  }
}

// DenseNet's pre-activation BNs (after Concat) leave the graph: folded through their Relu into
// the next Conv / Gemm (k > 0 commutes with Relu), or as Mul/Add; outputs unchanged.
TEST(QuantBatchNorm, RemainingBatchNormsFoldExactly) {
  auto reader = openSet("t10k-images-idx3-ubyte.gz");
  auto x = reader->readBatch(0, 32);
  ASSERT_TRUE(x.isOk());
  auto original = loadModel(testing::sourcePath("models/densenet.onnx"));
  ASSERT_TRUE(original.isOk());
  const Tensor expected = runFloat(*original, *x);
  for (bool into_next : {true, false}) {
    auto m = loadModel(testing::sourcePath("models/densenet.onnx"));
    ASSERT_TRUE(m.isOk());
    ASSERT_TRUE(quant::foldBatchNorms(*m->graph).isOk());
    int before = 0, after = 0, mul = 0;
    for (const auto& n : m->graph->nodes()) before += n->isOp("BatchNormalization");
    auto rest = quant::foldRemainingBatchNorms(*m->graph, into_next);
    ASSERT_TRUE(rest.isOk()) << rest.status().message();
    for (const auto& n : m->graph->nodes()) {
      after += n->isOp("BatchNormalization");
      mul += n->isOp("Mul");
    }
    EXPECT_EQ(before, 8);
    EXPECT_EQ(after, 0);
    EXPECT_EQ(int(rest->size()), before);
    EXPECT_EQ(mul, into_next ? 0 : 8) << "into_next " << into_next;
    EXPECT_LT(testing::relativeMaxError(expected, runFloat(*m, *x)), 1e-5) << into_next;
  }
}

// Compaction changes names and storage, not results: graph input/output names stay, node names
// go, Constants become (shared) initializers; float32 storage gives identical outputs, float16
// storage outputs within float16 rounding of biases and scales.
TEST(QuantCompact, KeepsOutputsAndInterface) {
  auto reader = openSet("t10k-images-idx3-ubyte.gz");
  auto x = reader->readBatch(0, 16);
  ASSERT_TRUE(x.isOk());
  auto q = loadModel(testing::sourcePath("models/mobilenetv2.onnx"));
  ASSERT_TRUE(q.isOk());
  quant::QuantizeOptions o;
  o.format = quant::QuantFormat::kWeightsOnly;
  auto targets = quant::selectTargets(*q->graph, o);
  ASSERT_TRUE(targets.isOk());
  ASSERT_TRUE(quant::quantizeModel(*q, *targets, {}, o).isOk());
  const Tensor expected = runFloat(*q, *x);
  for (bool fp16 : {false, true}) {
    auto m = cloneModel(*q);
    ASSERT_TRUE(m.isOk());
    auto stats = quant::compactModel(*m, {false, fp16});
    ASSERT_TRUE(stats.isOk()) << stats.status().message();
    EXPECT_EQ(stats->constants_to_initializers, 22);  // the Clip bounds
    EXPECT_GE(stats->initializers_shared, 20);        // ... all equal to 0 or 6
    EXPECT_GT(stats->values_renamed, 100);
    EXPECT_EQ(stats->stored_as_float16 > 0, fp16);
    // Weight-only: every layer reads a float input, so every int8 weight is read through Cast +
    // Mul (ONNX Runtime folds those at session start; a DequantizeLinear runs on every call).
    EXPECT_EQ(stats->weights_cast_mul, int(targets->size()));
    int int8_weights = 0;
    for (const auto& n : m->graph->nodes()) {
      EXPECT_FALSE(n->isOp("DequantizeLinear"));
      const Value* in = n->isOp("Cast") ? n->input(0) : nullptr;
      int8_weights += in && in->isInitializer() && in->initializer()->dtype() == DType::kInt8;
    }
    EXPECT_EQ(int8_weights, int(targets->size()));
    EXPECT_EQ(m->graph->inputs()[0]->name(), "input");
    EXPECT_EQ(m->graph->outputs()[0]->name(), "logits");
    for (const auto& n : m->graph->nodes()) {
      EXPECT_TRUE(n->name().empty());
      EXPECT_FALSE(n->isOp("Constant"));
      for (const Value* v : n->outputs()) {
        if (!v->isGraphOutput()) {
          EXPECT_LE(v->name().size(), 2u) << v->name();
        }
      }
    }
    const Tensor got = runFloat(*m, *x);
    if (fp16)
      EXPECT_LT(testing::relativeMaxError(expected, got), 2e-3);
    else
      EXPECT_EQ(expected, got);
  }
}

// Cross-layer equalisation is exact in float: mobilenetv2 (Conv -> Clip(0, 6) -> depthwise Conv
// and Conv -> Relu -> Conv in its SE blocks) and densenet (Conv -> Relu -> Conv) give the same
// logits, while the depthwise layers' per-channel weight ranges get closer to each other.
TEST(QuantEqualize, FloatOutputsUnchangedAndRangesEqualized) {
  auto reader = openSet("t10k-images-idx3-ubyte.gz");
  auto x = reader->readBatch(0, 32);
  ASSERT_TRUE(x.isOk());
  for (const char* name : {"mobilenetv2", "densenet"}) {
    auto m = loadModel(testing::sourcePath(std::string("models/") + name + ".onnx"));
    ASSERT_TRUE(m.isOk());
    ASSERT_TRUE(quant::foldBatchNorms(*m->graph).isOk());
    ASSERT_TRUE(quant::foldRemainingBatchNorms(*m->graph).isOk());
    const Tensor expected = runFloat(*m, *x);
    // Spread of per-channel ranges (max / min of max |W[c]|) of every depthwise Conv.
    auto worstSpread = [](const Graph& g) {
      double worst = 0;
      for (const auto& n : g.nodes()) {
        const Tensor* w = n->isOp("Conv") ? n->input(1)->constantData() : nullptr;
        if (w == nullptr || n->intAttr("group", 1) == 1 || w->dim(1) != 1) continue;
        const int64_t c = w->dim(0), per = w->numel() / c;
        double lo = 1e30, hi = 0;
        for (int64_t i = 0; i < c; ++i) {
          double r = 0;
          for (int64_t j = 0; j < per; ++j)
            r = std::max<double>(r, std::abs(w->data<float>()[i * per + j]));
          if (r > 0) lo = std::min(lo, r), hi = std::max(hi, r);
        }
        worst = std::max(worst, hi / lo);
      }
      return worst;
    };
    const double spread_before = worstSpread(*m->graph);
    auto stats = quant::equalizeLayers(*m->graph);
    ASSERT_TRUE(stats.isOk()) << stats.status().message();
    EXPECT_GT(stats->pairs, 5) << name;
    EXPECT_LT(testing::relativeMaxError(expected, runFloat(*m, *x)), 1e-5) << name;
    if (std::string(name) == "mobilenetv2") {
      EXPECT_GT(stats->clips_rewritten, 0);
      EXPECT_LT(worstSpread(*m->graph), spread_before / 1.5)
          << "before " << spread_before << " after " << worstSpread(*m->graph);
    }
  }
}

// x -> Conv1 -> Clip(lo, 6) -> Conv2 -> y with channel ranges far apart: with lo = 0 the pair is
// equalised (Clip -> Relu + Min(per-channel bound)) and outputs stay the same; with lo = -1 the
// scale would not commute with the Clip, so nothing changes.
Model makeClipPair(float lo) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = g.createValue("x").value();
  x->setType({DType::kFloat32,
              std::vector<Dim>{Dim::known(2), Dim::known(3), Dim::known(6), Dim::known(6)}});
  g.addInput(x);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Tensor w1(DType::kFloat32, {4, 3, 3, 3}), w2(DType::kFloat32, {5, 4, 1, 1});
  for (int64_t i = 0; i < w1.numel(); ++i) w1.mutableData<float>()[i] = u(rng) * (1 + 9 * (i / 27));
  for (float& v : w2.mutableData<float>()) v = u(rng);
  Node* c1 =
      g.addNode("Conv",
                {x, g.addInitializer("w1", std::move(w1)),
                 g.addInitializer("b1", Tensor::fromVector<float>({4}, {0.1f, -0.2f, 0.3f, 0.f}))},
                {"h"});
  Node* clip =
      g.addNode("Clip",
                {c1->output(0), g.addInitializer("lo", Tensor::fromVector<float>({}, {lo})),
                 g.addInitializer("hi", Tensor::fromVector<float>({}, {6.f}))},
                {"a"});
  clip->output(0)->setType(x->type());
  Node* c2 = g.addNode("Conv", {clip->output(0), g.addInitializer("w2", std::move(w2))}, {"y"});
  g.addOutput(c2->output(0));
  return m;
}

TEST(QuantEqualize, ClipPairFiresOnlyWhenExact) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  Tensor x(DType::kFloat32, {2, 3, 6, 6});
  for (float& v : x.mutableData<float>()) v = u(rng);
  for (float lo : {0.f, -1.f}) {
    Model before = makeClipPair(lo), after = makeClipPair(lo);
    auto stats = quant::equalizeLayers(*after.graph);
    ASSERT_TRUE(stats.isOk()) << stats.status().message();
    std::string ops;
    for (const auto& n : after.graph->nodes()) ops += n->opType() + ",";
    if (lo == 0.f) {
      EXPECT_EQ(stats->pairs, 1);
      EXPECT_EQ(stats->clips_rewritten, 1);
      EXPECT_EQ(ops, "Conv,Relu,Min,Conv,");
    } else {
      EXPECT_EQ(stats->pairs, 0);
      EXPECT_EQ(ops, "Conv,Clip,Conv,");
    }
    EXPECT_LT(testing::relativeMaxError(runFloat(before, x), runFloat(after, x)), 1e-5) << lo;
  }
}

// The CLI writes the small form by default; --keep-names and --fp32-storage give it up.
TEST(QuantizeCli, CompactByDefaultKeepNamesOnRequest) {
  testing::TempDir dir;
  const std::string base = "quantize " +
                           testing::quote(testing::sourcePath("models/densenet.onnx")) +
                           " --format weights-only --weight-bits 4 --json -o ";
  auto small = testing::runCli(base + testing::quote(dir / "a.onnx"));
  auto named = testing::runCli(base + testing::quote(dir / "b.onnx") + " --keep-names");
  auto fp32 = testing::runCli(base + testing::quote(dir / "c.onnx") + " --fp32-storage");
  ASSERT_EQ(small.exit_code, 0) << small.err;
  ASSERT_EQ(named.exit_code, 0) << named.err;
  ASSERT_EQ(fp32.exit_code, 0) << fp32.err;
  const auto a = std::filesystem::file_size(dir / "a.onnx");
  const double float_bytes =
      double(std::filesystem::file_size(testing::sourcePath("models/densenet.onnx")));
  EXPECT_LE(a / float_bytes, 0.18);
  EXPECT_GT(std::filesystem::file_size(dir / "b.onnx"), a + 1000);
  EXPECT_GT(std::filesystem::file_size(dir / "c.onnx"), a + 1000);
  auto kept = loadModel(dir / "b.onnx");
  ASSERT_TRUE(kept.isOk());
  bool any_named = false;
  for (const auto& n : kept->graph->nodes()) any_named = any_named || !n->name().empty();
  EXPECT_TRUE(any_named);
}

// Top-1 on the 10k TEST set in ONNX Runtime (calibration on 512 TRAIN images), issue 14's limits:
// int8 per-channel QDQ (best of minmax / entropy / percentile) and weights-only int8 each lose at
// most 0.1 point on every fixture, 0.3 on preact_densenet; int4 weights (balanced rounding) with
// int8 activations lose at most 0.5 on resnet (nearest rounding: 1.21).
TEST(QuantAccuracyFullDataset, EveryFixture) {
  auto labels = data::readLabels(std::string(kData) + "t10k-labels-idx1-ubyte.gz");
  ASSERT_TRUE(labels.isOk());
  // Top-1 in ONNX Runtime (the deployment runtime; seconds for 10k images where our executor
  // needs minutes on a loaded CI machine).
  auto reader = openSet("t10k-images-idx3-ubyte.gz");
  auto images = reader->readBatch(0, reader->size());
  ASSERT_TRUE(images.isOk());
  testing::TempDir dir;
  int counter = 0;
  auto top1 = [&](const Model& m) {
    const auto path = dir / ("m" + std::to_string(counter++) + ".onnx");
    EXPECT_TRUE(saveModel(m, path).isOk());
    auto out = testing::runOrt(path, {{"input", *images}}, dir);
    EXPECT_TRUE(out.isOk()) << out.status().message();
    if (!out.isOk()) return 0.0;
    const Tensor& logits = (*out)[0];
    const int64_t n = logits.dim(0), k = logits.dim(1);
    int64_t correct = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = logits.data<float>().data() + i * k;
      correct += std::max_element(row, row + k) - row == (*labels)[i];
    }
    return double(correct) / double(n);
  };
  for (const char* name : kFixtures) {
    auto f = loadModel(testing::sourcePath(std::string("models/") + name + ".onnx"));
    ASSERT_TRUE(f.isOk());
    const double base = top1(*f);
    const double limit = std::string(name) == "preact_densenet" ? 0.3 : 0.1;
    double best = 0;
    std::string best_method;
    for (auto method : {quant::CalibMethod::kMinMax, quant::CalibMethod::kEntropy,
                        quant::CalibMethod::kPercentile}) {
      auto q = quantizeFixture(name, {}, method, 512);
      ASSERT_TRUE(q.isOk()) << q.status().message();
      const double acc = top1(*q);
      if (acc > best) best = acc, best_method = quant::calibMethodName(method);
    }
    std::printf("%-13s float %.4f  int8 QDQ %.4f (%s)  drop %+.2f points\n", name, base, best,
                best_method.c_str(), 100 * (base - best));
    EXPECT_LE(100 * (base - best), limit) << name;
    quant::QuantizeOptions wo;
    wo.format = quant::QuantFormat::kWeightsOnly;
    auto w8 = quantizeFixture(name, wo, quant::CalibMethod::kMinMax);
    ASSERT_TRUE(w8.isOk()) << w8.status().message();
    const double w8_acc = top1(*w8);
    std::printf("%-13s weights-only int8 %.4f  drop %+.2f points\n", name, w8_acc,
                100 * (base - w8_acc));
    EXPECT_LE(100 * (base - w8_acc), limit) << name;
    if (std::string(name) == "resnet") {
      quant::QuantizeOptions o;
      o.weight_bits = 4;
      auto q = quantizeFixture(name, o, quant::CalibMethod::kPercentile, 512);
      ASSERT_TRUE(q.isOk()) << q.status().message();
      const double acc = top1(*q);
      std::printf("resnet int4 weights + int8 activations %.4f  drop %+.2f points\n", acc,
                  100 * (base - acc));
      EXPECT_LE(100 * (base - acc), 0.5);
    }
  }
}

}  // namespace
}  // namespace nnc
