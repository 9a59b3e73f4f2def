// --qdq-placement ort: the QDQ export of each fixture, loaded by ONNX Runtime with its graph
// optimizations on, runs as integer kernels. tools/ort/fused_ops.js saves ORT's optimized model
// (session option optimizedModelFilePath) and counts its op types; a placement change that stops
// ORT's QDQ selectors from matching shows up here as float Conv / Add nodes. The tensorrt layout
// (Q/DQ on layer inputs only) leaves float Conv nodes in residual blocks: the difference the
// flag makes.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <string>

#include "test_util.h"

namespace nnc {
namespace {

const char* kData = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

// Op type -> count in ORT's optimized model (domains dropped: QLinearConv may be either).
std::map<std::string, int> ortKernels(const std::filesystem::path& model,
                                      const testing::TempDir& dir, const char* opt_level) {
  const auto out = dir / "fused.json";
  const std::string cmd = "node " + testing::quote(testing::sourcePath("tools/ort/fused_ops.js")) +
                          " " + testing::quote(model) + " --opt-level " + opt_level + " > " +
                          testing::quote(out);
  std::map<std::string, int> counts;
  if (std::system(cmd.c_str()) != 0) return counts;
  const auto j = nlohmann::json::parse(testing::readText(out), nullptr, false);
  if (j.is_discarded()) return counts;
  for (const auto& [key, n] : j["ops"].items()) {
    const auto colon = key.rfind(':');
    counts[colon == std::string::npos ? key : key.substr(colon + 1)] += n.get<int>();
  }
  return counts;
}

// --no-auto-exclude: this test is about where the placement puts Q/DQ, so every layer is asked
// to be integer. With auto-exclude on (the default) flatten_head and densenet keep their first
// Conv float (worst-sample output SQNR 28.9 dB with every layer quantized on these 32 images,
// target 30 dB), and a Conv kept float rightly runs as a float Conv in ORT.
testing::CommandResult quantize(const std::string& fixture, const std::filesystem::path& out,
                                const std::string& placement) {
  return testing::runCli(
      "-q quantize " + testing::quote(testing::sourcePath("models/" + fixture + ".onnx")) + " -o " +
      testing::quote(out) + " --qdq-placement " + placement + " --calib " + kData +
      " --mean 0.2860 --std 0.3530 --calib-size 32 --sqnr-samples 0 --no-auto-exclude");
}

struct FusionCase {
  std::string fixture;
  // Integer kernels ORT must run besides one QLinearConv per Conv.
  std::map<std::string, int> kernels;
  bool residual = false;  // has Adds of two branches
};

void PrintTo(const FusionCase& c, std::ostream* os) { *os << c.fixture; }

class OrtFusion : public ::testing::TestWithParam<FusionCase> {};

TEST_P(OrtFusion, EveryConvAndTheListedOpsRunAsIntegerKernels) {
  ASSERT_TRUE(
      std::filesystem::exists(testing::sourcePath("node_modules/onnxruntime-node/package.json")))
      << "onnxruntime-node missing: run tools/bootstrap.sh";
  const FusionCase& c = GetParam();
  testing::TempDir dir;
  const auto float_ops =
      ortKernels(testing::sourcePath("models/" + c.fixture + ".onnx"), dir, "disable");
  ASSERT_GT(float_ops.count("Conv"), 0u) << c.fixture;

  const auto ort = dir / "ort.onnx";
  auto r = quantize(c.fixture, ort, "ort");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto fused = ortKernels(ort, dir, "all");
  EXPECT_EQ(fused["QLinearConv"], float_ops.at("Conv")) << c.fixture;
  EXPECT_EQ(fused["Conv"], 0) << c.fixture << ": a Conv ran in float";
  for (const auto& [op, n] : c.kernels) EXPECT_EQ(fused[op], n) << c.fixture << " " << op;

  const auto trt = dir / "tensorrt.onnx";
  r = quantize(c.fixture, trt, "tensorrt");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto trt_fused = ortKernels(trt, dir, "all");
  // ORT fuses only the Conv -> Relu -> (next layer's Q) chains of that layout: not a Conv whose
  // output is also read by a float Add (residual blocks).
  const auto count = [](const std::map<std::string, int>& m, const char* op) {
    return m.count(op) ? m.at(op) : 0;
  };
  EXPECT_LE(count(trt_fused, "QLinearConv"), fused["QLinearConv"]) << c.fixture;
  if (c.residual) {
    EXPECT_GT(count(trt_fused, "Conv"), 0) << c.fixture;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, OrtFusion,
    ::testing::Values(
        // Residual Adds become QLinearAdd (Relu after them absorbed), but the last one, which
        // feeds the float classifier head.
        FusionCase{"resnet", {{"QLinearAdd", 3}}, true},
        // Clip(0, 6) absorbed into the conv's output Q; the SE blocks' GlobalAveragePool is
        // integer, the head's is not; HardSigmoid has no integer kernel.
        FusionCase{"mobilenetv2", {{"QLinearAdd", 3}, {"QLinearGlobalAveragePool", 2}}, true},
        // MaxPool runs on uint8 (Q and DQ share the scale, so ORT drops them).
        FusionCase{"vgg_bn", {{"NhwcMaxPool", 3}}},
        FusionCase{"flatten_head", {{"NhwcMaxPool", 2}}}, FusionCase{"densenet", {}}),
    [](const ::testing::TestParamInfo<FusionCase>& info) { return info.param.fixture; });

// With auto-exclude on (the default), exactly the Convs it keeps float run as float Convs in ORT:
// every other Conv still gets the Q/DQ it needs to fuse, also next to a float neighbour.
TEST(OrtFusionAutoExclude, OnlyTheConvsKeptFloatRunInFloat) {
  ASSERT_TRUE(
      std::filesystem::exists(testing::sourcePath("node_modules/onnxruntime-node/package.json")));
  testing::TempDir dir;
  const auto float_ops =
      ortKernels(testing::sourcePath("models/flatten_head.onnx"), dir, "disable");
  const auto out = dir / "auto.onnx";
  auto r = testing::runCli("quantize " +
                           testing::quote(testing::sourcePath("models/flatten_head.onnx")) +
                           " -o " + testing::quote(out) + " --calib " + kData +
                           " --mean 0.2860 --std 0.3530 --calib-size 32 --sqnr-samples 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  int float_convs = 0;
  for (const auto& e : j["auto_exclude"]["float_layers"])
    float_convs += e.value("op", "") == "Conv";
  auto fused = ortKernels(out, dir, "all");
  EXPECT_EQ(fused["Conv"], float_convs);
  EXPECT_EQ(fused["QLinearConv"], float_ops.at("Conv") - float_convs);
}

// int4 weights (QDQ, int8 activations, the default placement) need opset 21, whose int4 type
// the spec ties to IR version 10: the export declares both, and ORT loads and optimizes it.
TEST(OrtFusionInt4, Int4WeightsAreOpset21WithIrVersion10) {
  ASSERT_TRUE(
      std::filesystem::exists(testing::sourcePath("node_modules/onnxruntime-node/package.json")));
  testing::TempDir dir;
  const auto out = dir / "int4.onnx";
  auto r = quantize("resnet", out, "ort --weight-bits 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string cmd = "node " + testing::quote(testing::sourcePath("tools/ort/fused_ops.js")) +
                          " " + testing::quote(out) + " > " + testing::quote(dir / "j.json");
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const auto j = nlohmann::json::parse(testing::readText(dir / "j.json"));
  EXPECT_GE(j["ir_version"].get<int>(), 10);
  EXPECT_EQ(j["opset"].get<int>(), 21);
  EXPECT_GT(j["nodes"].get<int>(), 0);
}

}  // namespace
}  // namespace nnc
