// `nncompress finetune`, `prune --finetune` and `--method taylor` end to end on a small fixture
// with a few hundred samples (the accuracy targets on the full data are measured by
// tools/finetune_results.py, not here). Fine-tuned models run in ONNX Runtime and compute what
// our executor computes.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nncompress/data/dataset.h"
#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/train/tape.h"
#include "ort_util.h"
#include "test_util.h"

namespace nnc {
namespace {

using testing::CommandResult;
using testing::quote;
using testing::runCli;
using testing::sourcePath;
using testing::TempDir;

const std::string kData = "/usr/share/datasets/fashion-mnist/";
const std::string kNorm = " --mean 0.2860 --std 0.3530 ";
const std::string kTrain = " --data " + kData + "train-images-idx3-ubyte.gz" + kNorm;

std::string fixture() { return quote(sourcePath("models/flatten_head.onnx")); }

TEST(FinetuneCliTest, DistilsAPrunedModelThatRunsInOrt) {
  TempDir dir;
  const auto pruned = dir / "p.onnx", tuned = dir / "t.onnx";
  ASSERT_EQ(runCli("prune " + fixture() + " -o " + quote(pruned) + " --ratio 0.5").exit_code, 0);
  auto r = runCli("finetune " + quote(pruned) + " -o " + quote(tuned) + " --teacher " + fixture() +
                  kTrain + "--data-range 0:320 --epochs 2 --batch 32 --val " + kData +
                  "t10k-images-idx3-ubyte.gz --val-labels " + kData +
                  "t10k-labels-idx1-ubyte.gz --val-range 0:200 --seed 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["output"], tuned.string());
  EXPECT_EQ(j["samples"], 320);
  EXPECT_FALSE(j["labels"].get<bool>());
  const auto& f = j["finetune"];
  ASSERT_EQ(f["epochs"].size(), 2u);
  EXPECT_EQ(f["steps"], 20);
  EXPECT_GE(f["best_epoch"].get<int>(), 1);
  EXPECT_TRUE(f["epochs"][0].contains("val_top1"));
  EXPECT_EQ(f["grad_precision"], train::bf16ConvGradsAvailable() ? "bf16" : "fp32");
  EXPECT_NE(r.err.find("images/s"), std::string::npos);  // progress on stderr

  // The weights changed, and ONNX Runtime computes what our executor computes.
  auto before = loadModel(pruned.string());
  auto after = loadModel(tuned.string());
  ASSERT_TRUE(before.isOk() && after.isOk());
  EXPECT_NE(before->graph->initializers()[0]->initializer()->bytes(),
            after->graph->initializers()[0]->initializer()->bytes());
  if (!testing::ortAvailable()) GTEST_FAIL() << "onnxruntime-node is missing";
  auto reader = data::openData(kData + "t10k-images-idx3-ubyte.gz");
  ASSERT_TRUE(reader.isOk());
  auto x = (*reader)->readBatch(0, 8);
  ASSERT_TRUE(x.isOk());
  auto ex = exec::Executor::create(*after);
  ASSERT_TRUE(ex.isOk());
  auto ours = (*ex)->run({*x});
  ASSERT_TRUE(ours.isOk());
  auto ort = testing::runOrt(tuned, {{(*ex)->inputs()[0]->name(), *x}}, dir);
  ASSERT_TRUE(ort.isOk()) << ort.status().toString();
  EXPECT_LT(testing::relativeMaxError((*ours)[0], (*ort)[0]), 1e-4);
}

TEST(FinetuneCliTest, PruneWithTaylorAndFinetune) {
  TempDir dir;
  const auto out = dir / "p.onnx";
  auto r = runCli("prune " + fixture() + " -o " + quote(out) +
                  " --method taylor --target-macs 0.6 --recover lsq --calib-size 128 --finetune 1" +
                  kTrain + "--data-range 0:256 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["method"], "taylor");
  EXPECT_LE(j["macs_kept"].get<double>(), 0.6 + 1e-9);
  ASSERT_TRUE(j.contains("finetune"));
  EXPECT_EQ(j["finetune"]["steps"], 4);  // 256 samples, batch 64
  EXPECT_EQ(j["finetune"]["loss"], "kl");
  // --finetune-loss is finetune's --loss; mse drops the labels' cross-entropy instead of being
  // refused for it.
  r = runCli("prune " + fixture() + " -o " + quote(out) +
             " --target-macs 0.6 --finetune 1 --finetune-loss mse --labels " + kData +
             "train-labels-idx1-ubyte.gz" + kTrain + "--data-range 0:128 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["finetune"]["loss"], "mse");
  EXPECT_EQ(runCli("prune " + fixture() + " -o " + quote(out) +
                   " --target-macs 0.6 --finetune 1 --finetune-loss ce" + kTrain)
                .exit_code,
            2);
}

// DenseNet groups reach their next layers only through Concats: taylor scores them by weight
// magnitude instead of refusing the model (it exited 3 before).
TEST(FinetuneCliTest, TaylorPrunesAConcatDenseNet) {
  TempDir dir;
  const auto out = dir / "p.onnx";
  auto r = runCli("prune " + quote(sourcePath("models/densenet.onnx")) + " -o " + quote(out) +
                  " --method taylor --target-macs 0.7 --calib-size 64" + kTrain +
                  "--data-range 0:64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(nlohmann::json::parse(r.out)["macs_kept"].get<double>(), 0.7 + 1e-9);
}

// compress --recipe RECIPE on the fixture (200 labelled validation images, `calib_range` of the
// training images); the run and the descriptions of the replayed steps.
struct RecipeRun {
  CommandResult cli;
  std::vector<std::string> replayed;
};
RecipeRun replayRecipe(const std::filesystem::path& recipe, const std::filesystem::path& out,
                       const std::string& calib_range) {
  RecipeRun run;
  run.cli = runCli("compress " + fixture() + " -o " + quote(out) + " --data " + kData +
                   "t10k-images-idx3-ubyte.gz --labels " + kData +
                   "t10k-labels-idx1-ubyte.gz --data-range 0:200 --calib " + kData +
                   "train-images-idx3-ubyte.gz --calib-range " + calib_range + kNorm + "--recipe " +
                   quote(recipe) + " --json");
  if (run.cli.exit_code != 0) return run;
  const auto j = nlohmann::json::parse(run.cli.out);
  for (const auto& s : j["steps"])
    if (s["kind"] == "recipe") run.replayed.push_back(s["description"]);
  return run;
}

// A compress recipe's retrain step (what --save-recipe records after --finetune) replays:
// prune, distil with the recorded settings, quantize.
TEST(FinetuneCliTest, CompressRecipeReplaysItsRetrainStep) {
  TempDir dir;
  const auto recipe = dir / "recipe.json", out = dir / "out.onnx";
  {
    std::ofstream f(recipe);
    f << R"({"nncompress_recipe": 1, "steps": [
      {"prune": {"method": "l1", "fraction": 0.3, "recover": "lsq"}},
      {"retrain": {"method": "distillation", "epochs": 1, "batch": 64, "lr": 0.0005,
                   "optimizer": "adamw", "temperature": 2, "loss": "mse"}},
      {"quantize": {"format": "qdq"}}]})";
  }
  const RecipeRun r = replayRecipe(recipe, out, "0:256");
  ASSERT_EQ(r.cli.exit_code, 0) << r.cli.err;
  ASSERT_EQ(r.replayed.size(), 3u) << r.cli.out;
  EXPECT_EQ(r.replayed[1], "retrain (distillation, 1 epochs)");
  EXPECT_NE(r.cli.err.find("finetune"), std::string::npos) << r.cli.err;            // it did train
  EXPECT_NE(r.cli.err.find("finetune: loss mse"), std::string::npos) << r.cli.err;  // as recorded
  // A malformed retrain step is the recipe's error.
  {
    std::ofstream f(recipe);
    f << R"({"nncompress_recipe": 1, "steps": [{"retrain": {"epochs": 0}}]})";
  }
  const auto bad_out = dir / "bad.onnx";
  auto bad = runCli("compress " + fixture() + " -o " + quote(bad_out) + " --data " + kData +
                    "t10k-images-idx3-ubyte.gz --calib-range 0:64 --recipe " + quote(recipe));
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(bad_out));
}

// A quantize step recorded with "qat" (compress --qat) trains the low-bit layers with fake
// quantization before quantizing, as the search did.
TEST(FinetuneCliTest, CompressRecipeReplaysQuantizationAwareTraining) {
  TempDir dir;
  const auto recipe = dir / "recipe.json", out = dir / "out.onnx";
  {
    std::ofstream f(recipe);
    f << R"({"nncompress_recipe": 1, "steps": [
      {"quantize": {"format": "qdq", "layer_weight_bits": {"/features/features.4/Conv": 4},
                    "qat": true, "qat_epochs": 1}}]})";
  }
  const RecipeRun r = replayRecipe(recipe, out, "0:128");
  ASSERT_EQ(r.cli.exit_code, 0) << r.cli.err;
  ASSERT_EQ(r.replayed.size(), 1u) << r.cli.out;
  EXPECT_NE(r.replayed[0].find("quantization-aware trained"), std::string::npos) << r.replayed[0];
  EXPECT_NE(r.cli.err.find("finetune: epoch 1/1"), std::string::npos) << r.cli.err;
}

TEST(FinetuneCliTest, UsageErrors) {
  TempDir dir;
  const std::string out = " -o " + quote(dir / "o.onnx");
  // No teacher, no data.
  EXPECT_EQ(runCli("finetune " + fixture() + out + kTrain).exit_code, 2);
  EXPECT_EQ(runCli("finetune " + fixture() + out + " --teacher " + fixture()).exit_code, 2);
  EXPECT_EQ(runCli("finetune " + fixture() + out + " --teacher " + fixture() + kTrain +
                   "--optimizer adam")
                .exit_code,
            2);
  EXPECT_EQ(
      runCli("finetune " + fixture() + out + " --teacher " + fixture() + kTrain + "--epochs 0")
          .exit_code,
      2);
  EXPECT_EQ(runCli("finetune " + fixture() + out + " --teacher " + fixture() + kTrain +
                   "--grad-precision fp16")
                .exit_code,
            2);
  // taylor and --finetune need data; --qat needs --finetune.
  EXPECT_EQ(runCli("prune " + fixture() + out + " --method taylor --ratio 0.3").exit_code, 2);
  EXPECT_EQ(runCli("prune " + fixture() + out + " --ratio 0.3 --finetune 1").exit_code, 2);
  auto qat = runCli("compress " + fixture() + out + " --data " + kData +
                    "t10k-images-idx3-ubyte.gz --max-accuracy-drop 1 --target-size 4x --qat");
  EXPECT_EQ(qat.exit_code, 2) << qat.err;
  EXPECT_NE(qat.err.find("--qat needs --finetune"), std::string::npos) << qat.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "o.onnx"));
}

// The distillation temperature's default is 2 (measured: tools/finetune_variants.sh), for finetune
// and for what prune/compress --finetune use (finetuneOptionsFrom).
TEST(FinetuneCliTest, DefaultTemperatureIsTwo) {
  auto help = runCli("finetune --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--temperature FLOAT=2 "), std::string::npos) << help.out;
}

// --grad-precision fp32 turns the bf16 Conv gradients off, and the JSON says so.
TEST(FinetuneCliTest, GradPrecisionFp32) {
  TempDir dir;
  auto r = runCli("finetune " + fixture() + " -o " + quote(dir / "t.onnx") + " --teacher " +
                  fixture() + kTrain + "--data-range 0:64 --batch 32 --grad-precision fp32 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["finetune"]["grad_precision"], "fp32");
  EXPECT_NE(r.err.find("fp32 Conv gradients"), std::string::npos) << r.err;
}

TEST(FinetuneCliTest, LossChoiceIsReportedAndChecked) {
  TempDir dir;
  const std::string args = " --teacher " + fixture() + kTrain + "--data-range 0:64 --batch 32 ";
  const std::string base = "finetune " + fixture() + " -o " + quote(dir / "t.onnx") + args;
  auto r = runCli(base + "--json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["finetune"]["loss"], "kl");  // auto, a classifier
  r = runCli(base + "--loss mse --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out)["finetune"];
  EXPECT_EQ(j["loss"], "mse");
  EXPECT_GT(j["epochs"][0]["train_loss"].get<double>(), 0);
  // A cross-entropy on labels only goes with KL: refused before any training.
  const std::string refused = "finetune " + fixture() + " -o " + quote(dir / "no.onnx") + args;
  r = runCli(refused + "--loss mse --teacher-label-weight 0.5");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("needs the KL loss"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "no.onnx"));
  EXPECT_EQ(runCli(base + "--loss ce").exit_code, 2);
  // Labels with mse: refused while they would add a cross-entropy, ignored at weight 0.
  const std::string labels = "--labels " + kData + "train-labels-idx1-ubyte.gz ";
  r = runCli(refused + labels + "--loss mse");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--label-weight 0"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "no.onnx"));
  r = runCli(base + labels + "--loss mse --label-weight 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["finetune"]["loss"], "mse");
  EXPECT_EQ(runCli(base + labels + "--label-weight -1").exit_code, 2);
}

}  // namespace
}  // namespace nnc
