// Pruning in steps (prune/iterative.h, `prune --steps`): the step plans compose into one plan in
// the original's channel indices (without recovery, the stepped model IS the original pruned by
// that plan), the per-group floor holds against the original widths, one step is the one-shot
// allocation, recovery after each step (against the original or the previous step) brings the
// logits closer to the original's than no recovery, and the CLI exports a model ORT runs.

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "nncompress/analysis/model_stats.h"
#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/prune/iterative.h"
#include "ort_util.h"

namespace nnc {
namespace {

using testing::quote;
using testing::runCli;
using testing::sourcePath;
using testing::TempDir;

const char* kTrain = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

Model loadFixture(const std::string& name) {
  auto m = loadModel(sourcePath("models/" + name + ".onnx"));
  EXPECT_TRUE(m.isOk()) << m.status().toString();
  return std::move(m).value();
}

Tensor runModel(const Model& model, const Tensor& x) {
  auto ex = exec::Executor::create(model, {1});
  EXPECT_TRUE(ex.isOk()) << ex.status().toString();
  auto out = (*ex)->run({x});
  EXPECT_TRUE(out.isOk()) << out.status().toString();
  return std::move((*out)[0]);
}

std::unique_ptr<data::SampleReader> fashionTrain() {
  data::Preprocess pre;
  pre.mean = {0.2860f};
  pre.std = {0.3530f};
  auto reader = data::openData(kTrain, pre);
  EXPECT_TRUE(reader.isOk()) << reader.status().toString();
  return std::move(reader).value();
}

// Mean squared difference relative to the mean square of `want`.
double relativeError(const Tensor& got, const Tensor& want) {
  const auto g = got.data<float>();
  const auto w = want.data<float>();
  double num = 0, den = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    num += (g[i] - w[i]) * double(g[i] - w[i]);
    den += w[i] * double(w[i]);
  }
  return num / den;
}

TEST(IterativePruneTest, StepsComposeIntoOnePlanOnTheOriginal) {
  Model original = loadFixture("resnet");
  const ChannelAnalysis analysis = analyzeChannels(original);
  IterativePruneOptions o;
  o.steps = 3;
  o.step.criterion = "l1";
  o.step.allocation.mode = AllocationMode::kGlobal;
  o.step.allocation.target_macs = 0.5;
  o.step.allocation.floor = 0.3;
  auto r = pruneIteratively(original, analysis, o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(r->allocation.target_met);
  ASSERT_EQ(r->steps.size(), 3u);
  // Each step reaches its share of the way: 1 - 0.5 * i / 3 of the original MACs.
  for (const StepRecord& s : r->steps) {
    const double kept = double(s.macs_after) / r->allocation.macs_before;
    EXPECT_LE(kept, 1.0 - 0.5 * s.step / 3 + 1e-9) << "step " << s.step;
    EXPECT_GT(kept, 1.0 - 0.5 * s.step / 3 - 0.05) << "step " << s.step;
  }
  EXPECT_EQ(r->allocation.macs_after, computeModelStats(*r->pruned.graph).macs);
  EXPECT_LE(r->allocation.macs_after, 0.5 * r->allocation.macs_before);
  ASSERT_FALSE(r->allocation.plan.empty());
  for (const GroupKeep& k : r->allocation.plan) {
    const ChannelGroup& g = analysis.groups[k.group_id];
    // The floor is a share of the ORIGINAL width, not of the width after the step before.
    EXPECT_GE(static_cast<int64_t>(k.keep.size()), std::ceil(0.3 * g.channels - 1e-9))
        << "group " << k.group_id;
    for (size_t i = 0; i < k.keep.size(); ++i) {
      EXPECT_GE(k.keep[i], 0);
      EXPECT_LT(k.keep[i], g.channels);
      if (i > 0) {
        EXPECT_LT(k.keep[i - 1], k.keep[i]) << "group " << k.group_id;
      }
    }
  }
  // Surgery only gathers: the stepped model equals the original pruned once by the composed plan.
  Model once = loadFixture("resnet");
  ASSERT_TRUE(applyChannelPruning(once, analyzeChannels(once), r->allocation.plan).isOk());
  std::vector<float> pixels(3 * 784);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::sin(0.37 * i);
  const Tensor x = Tensor::fromVector<float>({3, 1, 28, 28}, pixels);
  const Tensor a = runModel(r->pruned, x), b = runModel(once, x);
  ASSERT_EQ(a.shape(), b.shape());
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_NEAR(a.data<float>()[i], b.data<float>()[i], 1e-4) << "logit " << i;
}

TEST(IterativePruneTest, OneStepIsTheOneShotAllocation) {
  Model original = loadFixture("vgg_bn");
  const ChannelAnalysis analysis = analyzeChannels(original);
  IterativePruneOptions o;
  o.step.criterion = "l2";
  o.step.allocation.target_params = 0.6;
  auto r = pruneIteratively(original, analysis, o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  auto l2 = makeCriterion("l2");
  ASSERT_TRUE(l2.isOk());
  auto direct = allocateChannels(original, analysis, **l2, o.step.allocation);
  ASSERT_TRUE(direct.isOk());
  ASSERT_EQ(r->allocation.plan.size(), direct->plan.size());
  for (size_t i = 0; i < direct->plan.size(); ++i) {
    EXPECT_EQ(r->allocation.plan[i].group_id, direct->plan[i].group_id);
    EXPECT_EQ(r->allocation.plan[i].keep, direct->plan[i].keep);
  }
  EXPECT_FALSE(r->allocation.scores.empty());
}

TEST(IterativePruneTest, RecoveryAfterEachStepAgainstEitherReference) {
  Model original = loadFixture("resnet");
  const ChannelAnalysis analysis = analyzeChannels(original);
  auto train = fashionTrain();
  const CalibrationSource calibration{train.get(), 64, 32, 1};
  // Held-out images (beyond the calibration ones) to compare the logits on.
  auto held_out = train->readBatch(1000, 64);
  ASSERT_TRUE(held_out.isOk());
  const Tensor want = runModel(original, *held_out);

  auto errorWith = [&](const std::string& recovery, RecoveryReference reference) {
    IterativePruneOptions o;
    o.steps = 2;
    o.recovery = recovery;
    o.reference = reference;
    o.step.criterion = "l1";
    o.step.allocation.mode = AllocationMode::kGlobal;
    o.step.allocation.target_macs = 0.5;
    o.step.calibration = &calibration;
    auto r = pruneIteratively(original, analysis, o);
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    if (!r.isOk()) return 1e9;
    EXPECT_LE(r->allocation.macs_after, 0.5 * r->allocation.macs_before);
    if (recovery == "lsq") {
      EXPECT_FALSE(r->layers.empty());
    }
    return relativeError(runModel(r->pruned, *held_out), want);
  };
  const double none = errorWith("none", RecoveryReference::kOriginal);
  const double to_original = errorWith("lsq", RecoveryReference::kOriginal);
  const double to_previous = errorWith("lsq", RecoveryReference::kPrevious);
  const double bn_then_lsq = errorWith("bn+lsq", RecoveryReference::kOriginal);
  std::printf(
      "[ steps    ] resnet 50%% MACs, 2 steps, relative logit error: none %.3f, lsq vs "
      "original %.3f, vs previous %.3f, bn+lsq %.3f\n",
      none, to_original, to_previous, bn_then_lsq);
  EXPECT_LT(to_original, 0.5 * none);
  EXPECT_LT(to_previous, 0.5 * none);
  EXPECT_LT(bn_then_lsq, 0.5 * none);
}

TEST(IterativePruneTest, RejectsBadOptions) {
  Model original = loadFixture("vgg_bn");
  const ChannelAnalysis analysis = analyzeChannels(original);
  IterativePruneOptions o;
  o.step.allocation.target_macs = 0.5;
  o.steps = 0;
  EXPECT_EQ(pruneIteratively(original, analysis, o).status().code(), StatusCode::kInvalidArgument);
  o.steps = 2;
  o.recovery = "lsq";  // no calibration data
  EXPECT_EQ(pruneIteratively(original, analysis, o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(checkRecoveryMode("bn+ls").isOk());
  EXPECT_TRUE(checkRecoveryMode("lsq+bn").isOk());
  EXPECT_FALSE(parseRecoveryReference("first").isOk());
}

TEST(PruneStepsCliTest, StepsWithRecoveryRunInOrt) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing: run tools/bootstrap.sh";
  TempDir dir;
  const auto out = dir / "pruned.onnx";
  const std::string common = " --method l1 --allocation global --target-macs 0.6 --data " +
                             std::string(kTrain) + " --mean 0.2860 --std 0.3530 --calib-size 64";
  auto r = runCli("prune " + quote(sourcePath("models/vgg_bn.onnx")) + " -o " + quote(out) +
                  common + " --steps 3 --recover lsq --recover-reference previous --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_LE(j["after"]["macs"].get<double>(), 0.6 * j["before"]["macs"].get<double>());
  ASSERT_EQ(j["recovery"]["steps"].size(), 3u);
  EXPECT_EQ(j["recovery"]["reference"], "previous");
  EXPECT_FALSE(j["recovery"]["layers"].empty());
  for (const auto& g : j["groups"])
    EXPECT_EQ(g["channels_before"].get<int64_t>() - g["channels_after"].get<int64_t>(),
              static_cast<int64_t>(g["removed"].size()));
  ASSERT_TRUE(checkModelFile(out).isOk());
  Tensor input = Tensor::fromVector<float>({2, 1, 28, 28}, std::vector<float>(2 * 784, 0.5f));
  auto outputs = testing::runOrt(out, {{"input", input}}, dir);
  ASSERT_TRUE(outputs.isOk()) << outputs.status().toString();
  EXPECT_EQ((*outputs)[0].shape(), (Shape{2, 10}));

  auto merge =
      runCli("prune " + quote(sourcePath("models/vgg_bn.onnx")) + " -o " + quote(dir / "m.onnx") +
             common + " --steps 2 --method similarity-chain --merge");
  EXPECT_EQ(merge.exit_code, 2) << merge.err;
  auto reference = runCli("prune " + quote(sourcePath("models/vgg_bn.onnx")) + " -o " +
                          quote(dir / "m.onnx") + common + " --recover-reference first");
  EXPECT_EQ(reference.exit_code, 2) << reference.err;
}

}  // namespace
}  // namespace nnc
