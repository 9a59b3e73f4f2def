// Models that compute in float16 (exported with .half(), or converted for a GPU or NPU): the
// commands work on their float32 promotion (ir/float16.h) and write back what the user deployed.
// Checked in ONNX Runtime against the same command on the float32 original.

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "graph_input.h"
#include "nncompress/ir/float16.h"
#include "nncompress/onnx_io/model_io.h"
#include "ort_util.h"
#include "random_tensor.h"

namespace nnc {
namespace {

using testing::quote;
using testing::runCli;

const std::string kImages = " /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
const std::string kCalib = " --mean 0.2860 --std 0.3530 --calib-size 128 --data" + kImages;
const std::string kQuantCalib = " --mean 0.2860 --std 0.3530 --calib-size 128 --calib" + kImages;

int countValuesOf(const Model& m, DType d) {
  int n = 0;
  for (const auto& v : m.graph->values())
    n += v->dtype() == d || (v->isInitializer() && v->initializer()->dtype() == d);
  return n;
}

// The ResNet fixture as a float16 model: what writeBack does for a pure float16 promotion.
Model resnetFloat16() {
  auto m = loadModel(testing::sourcePath("models/resnet.onnx"));
  EXPECT_TRUE(m.isOk()) << m.status().toString();
  Float16Promotion as_if;
  as_if.promoted = as_if.pure = true;
  as_if.inputs = {"input"};
  as_if.outputs = {"logits"};
  bool demoted = false;
  EXPECT_TRUE(writeBackFloat16(*m, as_if, &demoted).isOk());
  EXPECT_TRUE(demoted);
  return std::move(m).value();
}

double cosine(const Tensor& a, const Tensor& b) {
  const Tensor x = convertFloatTensor(a, DType::kFloat32);
  const Tensor y = convertFloatTensor(b, DType::kFloat32);
  double xy = 0, xx = 0, yy = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double p = x.data<float>()[i], q = y.data<float>()[i];
    xy += p * q, xx += p * p, yy += q * q;
  }
  return xy / std::sqrt(xx * yy + 1e-30);
}

// The first output of `model` in ORT on the same 16 images (float16 or float32 as it takes them).
Tensor ortLogits(const std::filesystem::path& model, const testing::TempDir& dir) {
  const Tensor x = testing::randomTensor({16, 1, 28, 28}, 7, -0.8f, 2.0f);
  auto loaded = loadModel(model);
  EXPECT_TRUE(loaded.isOk()) << loaded.status().toString();
  const DType want = loaded->graph->inputs().front()->dtype();
  auto out = testing::runOrt(model, {{"input", convertFloatTensor(x, want)}}, dir);
  EXPECT_TRUE(out.isOk()) << out.status().toString();
  return out.isOk() ? out->front() : Tensor();
}

TEST(Float16Model, PromotionRecordsTheInterfaceAndRoundTrips) {
  Model half = resnetFloat16();
  EXPECT_EQ(countValuesOf(half, DType::kFloat32), 0);
  EXPECT_GT(countValuesOf(half, DType::kFloat16), 20);
  Float16Promotion p = promoteFloat16(half);
  EXPECT_TRUE(p.promoted);
  EXPECT_TRUE(p.pure);
  EXPECT_EQ(p.inputs, std::vector<std::string>{"input"});
  EXPECT_EQ(p.outputs, std::vector<std::string>{"logits"});
  EXPECT_EQ(countValuesOf(half, DType::kFloat16), 0);
  EXPECT_FALSE(promoteFloat16(half).promoted);  // float32 now: nothing to do
}

// float16 storage read through a Cast (quantize's compact biases) computes in float32: nothing
// to promote, and the model is written as it is.
TEST(Float16Model, Float16StorageCastToFloatIsNotPromoted) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  Value* x = testing::addTypedInput(g, "x", DType::kFloat32, {Dim::known(4)});
  Value* h =
      g.addInitializer("h", convertFloatTensor(testing::randomTensor({4}, 3), DType::kFloat16));
  Node* cast = g.addNode("Cast", {h}, {"hf"});
  cast->setAttribute(Attribute::makeInt("to", 1));
  g.addOutput(g.addNode("Add", {x, cast->output(0)}, {"y"})->output(0));
  EXPECT_FALSE(computesInFloat16(m));
  EXPECT_FALSE(promoteFloat16(m).promoted);
  EXPECT_EQ(h->initializer()->dtype(), DType::kFloat16);
  // Read by the Add directly, the same value computes in float16.
  Value* x16 = testing::addTypedInput(g, "x16", DType::kFloat16, {Dim::known(4)});
  g.addOutput(g.addNode("Add", {x16, h}, {"y16"})->output(0));
  EXPECT_TRUE(computesInFloat16(m));
  EXPECT_TRUE(promoteFloat16(m).promoted);
  EXPECT_EQ(h->initializer()->dtype(), DType::kFloat32);
}

TEST(Float16Model, WrittenBackWithCastsWhenNotPure) {
  if (!testing::ortAvailable()) GTEST_SKIP() << "onnxruntime-node is not installed";
  testing::TempDir dir;
  Model half = resnetFloat16();
  Float16Promotion p = promoteFloat16(half);
  p.pure = false;  // as for a model that mixed float16 and float32
  bool demoted = true;
  ASSERT_TRUE(writeBackFloat16(half, p, &demoted).isOk());
  EXPECT_FALSE(demoted);
  const Graph& g = *half.graph;
  EXPECT_EQ(g.inputs().front()->dtype(), DType::kFloat16);
  EXPECT_EQ(g.outputs().front()->dtype(), DType::kFloat16);
  EXPECT_EQ(g.outputs().front()->name(), "logits");
  EXPECT_TRUE(g.outputs().front()->producer()->isOp("Cast"));
  ASSERT_TRUE(saveModel(half, dir / "cast.onnx").isOk());
  const Tensor ours = ortLogits(dir / "cast.onnx", dir);
  const Tensor original = ortLogits(testing::sourcePath("models/resnet.onnx"), dir);
  EXPECT_EQ(ours.dtype(), DType::kFloat16);
  EXPECT_GT(cosine(ours, original), 0.9999);
}

// quantize: int8 inside, the float16 interface kept, the same answers as the float32 original's
// quantization.
TEST(Float16Model, QuantizeKeepsTheFloat16Interface) {
  if (!testing::ortAvailable()) GTEST_SKIP() << "onnxruntime-node is not installed";
  testing::TempDir dir;
  ASSERT_TRUE(saveModel(resnetFloat16(), dir / "half.onnx").isOk());
  auto r =
      runCli("quantize " + quote(dir / "half.onnx") + " -o " + quote(dir / "q.onnx") + kQuantCalib);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto q = loadModel(dir / "q.onnx");
  ASSERT_TRUE(q.isOk()) << q.status().toString();
  EXPECT_EQ(q->graph->inputs().front()->dtype(), DType::kFloat16);
  EXPECT_EQ(q->graph->outputs().front()->dtype(), DType::kFloat16);
  const auto bytes = [](const std::filesystem::path& p) { return std::filesystem::file_size(p); };
  EXPECT_LT(bytes(dir / "q.onnx"), bytes(dir / "half.onnx") * 0.7);
  const Tensor half = ortLogits(dir / "half.onnx", dir);
  const Tensor quantized = ortLogits(dir / "q.onnx", dir);
  EXPECT_GT(cosine(quantized, half), 0.995);
}

// prune: float16 again, smaller, and the same model (to float16 rounding) as pruning the float32
// original gives.
TEST(Float16Model, PruneWritesFloat16LikeTheFloat32Path) {
  if (!testing::ortAvailable()) GTEST_SKIP() << "onnxruntime-node is not installed";
  testing::TempDir dir;
  ASSERT_TRUE(saveModel(resnetFloat16(), dir / "half.onnx").isOk());
  const std::string args = " --ratio 0.3 --method l1 --recover lsq" + kCalib;
  auto r = runCli("prune " + quote(dir / "half.onnx") + " -o " + quote(dir / "p16.onnx") + args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = runCli("prune " + quote(testing::sourcePath("models/resnet.onnx")) + " -o " +
             quote(dir / "p32.onnx") + args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto p16 = loadModel(dir / "p16.onnx");
  ASSERT_TRUE(p16.isOk()) << p16.status().toString();
  EXPECT_EQ(countValuesOf(*p16, DType::kFloat32), 0);
  EXPECT_LT(std::filesystem::file_size(dir / "p16.onnx"),
            std::filesystem::file_size(dir / "p32.onnx") * 0.6);
  EXPECT_GT(cosine(ortLogits(dir / "p16.onnx", dir), ortLogits(dir / "p32.onnx", dir)), 0.999);
}

// compress measures sizes against the float16 file the user has, not its float32 promotion.
TEST(Float16Model, CompressTargetsAreRelativeToTheFloat16File) {
  testing::TempDir dir;
  ASSERT_TRUE(saveModel(resnetFloat16(), dir / "half.onnx").isOk());
  auto r = runCli("compress " + quote(dir / "half.onnx") + " -o " + quote(dir / "c.onnx") +
                  " --data" + kImages +
                  " --labels /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
                  " --data-range 59500:60000 --calib-range 0:1000 --mean 0.2860 --std 0.3530"
                  " --max-accuracy-drop 2 --target-size 2x --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const double file = double(std::filesystem::file_size(dir / "half.onnx"));
  EXPECT_NEAR(j["before"]["file_bytes"].get<double>(), file, 0.02 * file);
  EXPECT_NEAR(j["target_bytes"].get<double>(), file / 2, 0.02 * file);
  EXPECT_LE(double(std::filesystem::file_size(dir / "c.onnx")), file / 2);
  // Pruning alone writes float16: the sizes the search measured are the float16 file's too.
  r = runCli("compress " + quote(dir / "half.onnx") + " -o " + quote(dir / "p.onnx") + " --data" +
             kImages +
             " --labels /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
             " --data-range 59500:60000 --calib-range 0:1000 --mean 0.2860 --std 0.3530"
             " --max-accuracy-drop 2 --target-size 2x --no-quantize --keep-best --json");
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 1) << r.err;
  const double written = double(std::filesystem::file_size(dir / "p.onnx"));
  EXPECT_NEAR(nlohmann::json::parse(r.out)["after"]["file_bytes"].get<double>(), written,
              0.02 * written);
}

// eval reads a float16 model as it reads its float32 original.
TEST(Float16Model, EvalMatchesTheFloat32Original) {
  testing::TempDir dir;
  ASSERT_TRUE(saveModel(resnetFloat16(), dir / "half.onnx").isOk());
  const std::string data =
      " --mean 0.2860 --std 0.3530 --data-range :500 --json --data "
      "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --labels "
      "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
  auto half = runCli("eval " + quote(dir / "half.onnx") + data);
  ASSERT_EQ(half.exit_code, 0) << half.err;
  auto full = runCli("eval " + quote(testing::sourcePath("models/resnet.onnx")) + data);
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const double a = nlohmann::json::parse(half.out)["top1"].get<double>();
  const double b = nlohmann::json::parse(full.out)["top1"].get<double>();
  EXPECT_NEAR(a, b, 0.006);  // 3 of 500 images may flip with float16 weights
}

}  // namespace
}  // namespace nnc
