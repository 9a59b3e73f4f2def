// Models with several inputs, one of them integer (an image and token ids): --data / --calib
// NAME=SPEC feed each input, so calibration, the data-driven pruning passes and eval run on
// them; outputs are checked in ONNX Runtime against the float model on the same inputs.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "graph_input.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/onnx_io/tensor_io.h"
#include "ort_util.h"
#include "random_tensor.h"
#include "test_util.h"

namespace nnc {
namespace {

using testing::quote;
using testing::randomTensor;
using testing::runCli;

constexpr int64_t kSamples = 24, kTokens = 6, kVocab = 400;

Node* conv(Graph& g, Value* x, int64_t in, int64_t out, const std::string& name, uint32_t seed) {
  Node* n =
      g.addNode("Conv",
                {x, g.addInitializer(name + "_w", randomTensor({out, in, 3, 3}, seed, -.3f, .3f)),
                 g.addInitializer(name + "_b", randomTensor({out}, seed + 1, -.1f, .1f))},
                {name + "_y"});
  n->setName(name);
  n->setAttribute(Attribute::makeInts("pads", {1, 1, 1, 1}));
  return g.addNode("Relu", {n->output(0)}, {name + "_r"});
}

// image [N,3,8,8] -> Conv -> Relu -> Conv -> Relu -> GAP -> Flatten --+
// ids [N,6] int64 -> Gather(table [400,8]) -> ReduceMean over tokens --+-> Add -> Gemm -> [N,4]
Model twoInputModel() {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  g.setName("two_inputs");
  Value* image = testing::addTypedInput(
      g, "image", DType::kFloat32, {Dim::symbol("N"), Dim::known(3), Dim::known(8), Dim::known(8)});
  Value* ids =
      testing::addTypedInput(g, "ids", DType::kInt64, {Dim::symbol("N"), Dim::known(kTokens)});
  Node* c2 = conv(g, conv(g, image, 3, 8, "conv1", 1)->output(0), 8, 8, "conv2", 3);
  Node* gap = g.addNode("GlobalAveragePool", {c2->output(0)}, {"gap"});
  Node* flat = g.addNode("Flatten", {gap->output(0)}, {"flat"});
  Node* emb =
      g.addNode("Gather", {g.addInitializer("table", randomTensor({kVocab, 8}, 5)), ids}, {"emb"});
  Node* pool = g.addNode("ReduceMean", {emb->output(0)}, {"pool"});
  pool->setAttribute(Attribute::makeInts("axes", {1}));
  pool->setAttribute(Attribute::makeInt("keepdims", 0));
  Node* sum = g.addNode("Add", {flat->output(0), pool->output(0)}, {"sum"});
  Node* fc = g.addNode("Gemm",
                       {sum->output(0), g.addInitializer("fc_w", randomTensor({4, 8}, 7)),
                        g.addInitializer("fc_b", randomTensor({4}, 8))},
                       {"logits"});
  fc->setAttribute(Attribute::makeInt("transB", 1));
  fc->output(0)->setType({DType::kFloat32, std::vector<Dim>{Dim::symbol("N"), Dim::known(4)}});
  g.addOutput(fc->output(0));
  return m;
}

class ModelInputsCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(saveModel(twoInputModel(), model_).isOk());
    images_ = randomTensor({kSamples, 3, 8, 8}, 11, 0.f, 1.f);
    std::mt19937 rng(12);
    std::vector<int64_t> v(kSamples * kTokens);
    for (int64_t& x : v) x = int64_t(rng() % kVocab);
    ids_ = Tensor::fromVector<int64_t>({kSamples, kTokens}, v);
    ASSERT_TRUE(data::writeNpy(image_npy_.string(), images_).isOk());
    ASSERT_TRUE(data::writeNpy(ids_npy_.string(), ids_).isOk());
  }

  // Cosine of the model's ORT outputs against the float model's, on every sample.
  double ortCosine(const std::filesystem::path& model) {
    auto want = testing::runOrt(model_, {{"image", images_}, {"ids", ids_}}, dir_);
    auto got = testing::runOrt(model, {{"image", images_}, {"ids", ids_}}, dir_);
    EXPECT_TRUE(want.isOk() && got.isOk());
    if (!want.isOk() || !got.isOk()) return 0;
    const auto a = (*want)[0].data<float>(), b = (*got)[0].data<float>();
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
    return ab / std::sqrt(aa * bb);
  }

  std::string feeds(const char* flag) const {
    return std::string(" ") + flag + " image=" + quote(image_npy_) + " " + flag +
           " ids=" + quote(ids_npy_);
  }

  testing::TempDir dir_;
  std::filesystem::path model_ = dir_ / "two.onnx";
  std::filesystem::path image_npy_ = dir_ / "image.npy", ids_npy_ = dir_ / "ids.npy";
  Tensor images_, ids_;
};

TEST_F(ModelInputsCli, QuantizeCalibratesEveryInputAndMatchesInOrt) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  const auto out = dir_ / "q.onnx";
  auto r = runCli("quantize " + quote(model_) + " -o " + quote(out) + feeds("--calib") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  int gathers = 0, activations = 0;
  for (const auto& l : j["layers"]) {
    gathers += l["op"] == "Gather";
    activations += l["act_bits"] == 8;
  }
  EXPECT_EQ(gathers, 1);      // the table is int8
  EXPECT_GE(activations, 2);  // conv1 and conv2 read calibrated int8 activations
  EXPECT_GT(ortCosine(out), 0.999);

  auto eval =
      runCli("eval " + quote(out) + feeds("--data") + " --reference " + quote(model_) + " --json");
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  auto e = nlohmann::json::parse(eval.out);
  EXPECT_EQ(e["count"], kSamples);
  EXPECT_GT(e["cosine"].get<double>(), 0.999);
}

// An ONNX test_data_set folder (input_0.pb, input_1.pb) feeds the inputs in order.
TEST_F(ModelInputsCli, ATestDataSetFolderFeedsEveryInput) {
  const auto folder = dir_ / "test_data_set_0";
  std::filesystem::create_directories(folder);
  ASSERT_TRUE(saveTensorFile(images_, folder / "input_0.pb").isOk());
  ASSERT_TRUE(saveTensorFile(ids_, folder / "input_1.pb").isOk());
  auto eval = runCli("eval " + quote(model_) + " --data " + quote(folder) + " --reference " +
                     quote(model_) + " --json");
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  auto e = nlohmann::json::parse(eval.out);
  EXPECT_EQ(e["count"], kSamples);
  EXPECT_DOUBLE_EQ(e["agreement"].get<double>(), 1.0);
}

TEST_F(ModelInputsCli, PruneRunsItsDataPassesOnEveryInput) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  const auto out = dir_ / "p.onnx";
  // An unnamed SPEC feeds the first input not named.
  auto r = runCli("prune " + quote(model_) + " -o " + quote(out) + " --data " + quote(image_npy_) +
                  " --data ids=" + quote(ids_npy_) +
                  " --method contribution --ratio 0.25 --recover lsq --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_LT(j["after"]["macs"].get<double>(), j["before"]["macs"].get<double>());
  EXPECT_GT(ortCosine(out), 0.9);
}

TEST_F(ModelInputsCli, EveryInputNeedsDataAndNamesMustBeInputs) {
  const auto out = dir_ / "never.onnx";
  auto missing =
      runCli("quantize " + quote(model_) + " -o " + quote(out) + " --calib " + quote(image_npy_));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("no data for model input 'ids'"), std::string::npos) << missing.err;
  auto unknown = runCli("quantize " + quote(model_) + " -o " + quote(out) + feeds("--calib") +
                        " --calib tokens=" + quote(ids_npy_));
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("'tokens' names no input"), std::string::npos) << unknown.err;
  // Image data (scaled floats) cannot feed the token ids.
  auto swapped = runCli("quantize " + quote(model_) + " -o " + quote(out) +
                        " --calib ids=" + quote(image_npy_) + " --calib image=" + quote(ids_npy_));
  EXPECT_EQ(swapped.exit_code, 2) << swapped.err;
  EXPECT_FALSE(std::filesystem::exists(out));
}

// The gradient tape trains models with one float input: prune --finetune says so before pruning,
// with nothing written (it used to fail only after the prune, or read token ids as floats).
TEST_F(ModelInputsCli, FinetuneIsRefusedBeforeAnyWork) {
  const auto out = dir_ / "never.onnx";
  auto r = runCli("prune " + quote(model_) + " -o " + quote(out) + feeds("--data") +
                  " --ratio 0.25 --finetune 1");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("fine-tuning needs a model with one input"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("recovery"), std::string::npos) << "refused before pruning: " << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
  auto tune = runCli("finetune " + quote(model_) + " -o " + quote(out) + " --teacher " +
                     quote(model_) + feeds("--data"));
  EXPECT_EQ(tune.exit_code, 3) << tune.err;
  EXPECT_FALSE(std::filesystem::exists(out));
}

// A model of one integer input (token ids -> embedding -> mean -> two Gemms), its Gemms drawn
// from `seed`: fine-tuning reads the ids as stored and distils from the teacher.
Model tokenModel(uint32_t seed) {
  Model m;
  m.opset_imports = {{"", 13}};
  Graph& g = *m.graph;
  g.setName("tokens");
  Value* ids =
      testing::addTypedInput(g, "ids", DType::kInt64, {Dim::symbol("N"), Dim::known(kTokens)});
  Node* emb =
      g.addNode("Gather", {g.addInitializer("table", randomTensor({kVocab, 8}, 5)), ids}, {"emb"});
  Node* pool = g.addNode("ReduceMean", {emb->output(0)}, {"pool"});
  pool->setAttribute(Attribute::makeInts("axes", {1}));
  pool->setAttribute(Attribute::makeInt("keepdims", 0));
  Node* fc1 = g.addNode("Gemm",
                        {pool->output(0), g.addInitializer("w1", randomTensor({16, 8}, seed)),
                         g.addInitializer("b1", randomTensor({16}, seed + 1, -.1f, .1f))},
                        {"h"});
  fc1->setAttribute(Attribute::makeInt("transB", 1));
  Node* relu = g.addNode("Relu", {fc1->output(0)}, {"r"});
  Node* fc2 = g.addNode("Gemm",
                        {relu->output(0), g.addInitializer("w2", randomTensor({4, 16}, seed + 2)),
                         g.addInitializer("b2", randomTensor({4}, seed + 3, -.1f, .1f))},
                        {"logits"});
  fc2->setAttribute(Attribute::makeInt("transB", 1));
  fc2->output(0)->setType({DType::kFloat32, std::vector<Dim>{Dim::symbol("N"), Dim::known(4)}});
  g.addOutput(fc2->output(0));
  return m;
}

TEST_F(ModelInputsCli, FinetuneDistilsAModelOfTokenIds) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  const auto teacher = dir_ / "teacher.onnx", student = dir_ / "student.onnx";
  const auto out = dir_ / "tuned.onnx";
  ASSERT_TRUE(saveModel(tokenModel(20), teacher).isOk());
  ASSERT_TRUE(saveModel(tokenModel(40), student).isOk());
  auto r = runCli("finetune " + quote(student) + " -o " + quote(out) + " --teacher " +
                  quote(teacher) + " --data " + quote(ids_npy_) + " --val " + quote(ids_npy_) +
                  " --epochs 8 --batch 8 --lr 0.01 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out)["finetune"];
  const double start = j["val_loss_start"].get<double>();
  const double best = j["epochs"][j["best_epoch"].get<int>() - 1]["val_loss"].get<double>();
  EXPECT_LT(best, 0.5 * start) << r.out;
  auto ort = testing::runOrt(out, {{"ids", ids_}}, dir_);
  ASSERT_TRUE(ort.isOk()) << ort.status().message();
  EXPECT_EQ((*ort)[0].shape(), (Shape{kSamples, 4}));
}

}  // namespace
}  // namespace nnc
