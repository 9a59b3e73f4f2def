// Allocation: MACs/params targets met exactly as measured after surgery (within one channel's
// worth for global ranking), --round-to, --exclude and the per-group floor; and the prune CLI:
// data-driven methods without data are usage errors, exported models pass the checker and run in
// ONNX Runtime.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "nncompress/analysis/model_stats.h"
#include "nncompress/analysis/plan_cost.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/prune/allocation.h"
#include "nncompress/prune/surgery.h"
#include "ort_util.h"

namespace nnc {
namespace {

using testing::quote;
using testing::runCli;
using testing::sourcePath;
using testing::TempDir;

Model loadFixture(const std::string& name) {
  auto m = loadModel(sourcePath("models/" + name + ".onnx"));
  EXPECT_TRUE(m.isOk()) << m.status().toString();
  return std::move(m).value();
}

// planCost (no surgery) against what surgery + computeModelStats give: every prunable group
// alone at half its channels, then all of them at random widths. More models (e.g. torchvision
// exports) can be named in NNC_PLAN_COST_MODELS, separated by ':'.
void expectPlanCostMatchesSurgery(const Model& model, const std::string& label) {
  const ChannelAnalysis analysis = analyzeChannels(model);
  std::vector<std::vector<GroupKeep>> plans = {{}};
  std::mt19937 rng(7);
  std::vector<GroupKeep> random_plan;
  for (const ChannelGroup& g : analysis.groups) {
    if (!g.prunable || g.channels < 2) continue;
    std::vector<int64_t> half;
    for (int64_t c = 0; c < g.channels; c += 2) half.push_back(c);
    plans.push_back({{g.id, half}});
    std::vector<int64_t> keep;
    for (int64_t c = 0; c < g.channels; ++c)
      if (rng() % 3 != 0) keep.push_back(c);
    if (keep.empty()) keep.push_back(g.channels - 1);
    random_plan.push_back({g.id, keep});
  }
  plans.push_back(random_plan);
  for (size_t i = 0; i < plans.size(); ++i) {
    Model copy = model.clone();
    const ChannelAnalysis copy_analysis = analyzeChannels(copy);
    ASSERT_TRUE(applyChannelPruning(copy, copy_analysis, plans[i]).isOk())
        << label << " plan " << i;
    const ModelStats after = computeModelStats(*copy.graph);
    const PlanCost cost = planCost(model, analysis, plans[i]);
    int64_t bytes = 0;
    for (const auto& [dtype, b] : after.weight_bytes_by_dtype) bytes += b;
    EXPECT_EQ(cost.macs, after.macs) << label << " plan " << i;
    EXPECT_EQ(cost.params, after.params) << label << " plan " << i;
    EXPECT_EQ(cost.weight_bytes, bytes) << label << " plan " << i;
  }
}

TEST(PlanCostTest, MatchesSurgeryOnEveryFixture) {
  for (const char* name : {"resnet", "vgg_bn", "densenet", "mobilenetv2", "flatten_head"})
    expectPlanCostMatchesSurgery(loadFixture(name), name);
  if (const char* more = std::getenv("NNC_PLAN_COST_MODELS")) {
    std::stringstream list(more);
    std::string path;
    while (std::getline(list, path, ':')) {
      auto m = loadModel(path);
      ASSERT_TRUE(m.isOk()) << m.status().toString();
      expectPlanCostMatchesSurgery(*m, path);
    }
  }
}

int64_t keptOf(const AllocationResult& r, const ChannelGroup& g) {
  for (const GroupKeep& k : r.plan)
    if (k.group_id == g.id) return static_cast<int64_t>(k.keep.size());
  return g.channels;
}

TEST(AllocationTest, GlobalTargetMacsMetWithinOneChannel) {
  Model m = loadFixture("resnet");
  const ChannelAnalysis a = analyzeChannels(m);
  auto l1 = makeCriterion("l1");
  AllocationOptions o;
  o.mode = AllocationMode::kGlobal;
  o.target_macs = 0.5;
  auto r = allocateChannels(m, a, **l1, o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_TRUE(r->target_met);
  const double target = 0.5 * r->macs_before;
  EXPECT_LE(r->macs_after, target);
  // One channel's worth: the most MACs a single channel of any group carries.
  int64_t one_channel = 0;
  for (const ChannelGroup& g : a.groups)
    if (g.prunable) one_channel = std::max(one_channel, g.macs / g.channels);
  EXPECT_GE(r->macs_after, target - one_channel);
  // Exactly what surgery gives.
  Model copy = loadFixture("resnet");
  ASSERT_TRUE(applyChannelPruning(copy, analyzeChannels(copy), r->plan).isOk());
  EXPECT_EQ(computeModelStats(*copy.graph).macs, r->macs_after);
}

TEST(AllocationTest, UniformTargetParamsRoundToAndExclude) {
  Model m = loadFixture("vgg_bn");
  const ChannelAnalysis a = analyzeChannels(m);
  const ChannelGroup* first = nullptr;
  for (const ChannelGroup& g : a.groups)
    if (g.prunable && !first) first = &g;
  ASSERT_NE(first, nullptr);
  auto l2 = makeCriterion("l2");
  AllocationOptions o;
  o.target_params = 0.6;
  o.round_to = 4;
  o.exclude = {first->sources.front()->name()};
  auto r = allocateChannels(m, a, **l2, o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_LE(r->params_after, 0.6 * r->params_before);
  EXPECT_GT(r->params_after, 0.4 * r->params_before);
  EXPECT_EQ(keptOf(*r, *first), first->channels);  // excluded
  for (const GroupKeep& k : r->plan) {
    EXPECT_NE(k.group_id, first->id);
    EXPECT_EQ(k.keep.size() % 4, 0u) << "group " << k.group_id;
  }
  EXPECT_FALSE(r->plan.empty());
}

TEST(AllocationTest, FloorHoldsAndImpossibleTargetIsReported) {
  Model m = loadFixture("resnet");
  const ChannelAnalysis a = analyzeChannels(m);
  auto l1 = makeCriterion("l1");
  AllocationOptions o;
  o.mode = AllocationMode::kGlobal;
  o.target_macs = 0.2;
  o.floor = 0.25;
  auto r = allocateChannels(m, a, **l1, o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  for (const ChannelGroup& g : a.groups) {
    if (g.prunable) {
      EXPECT_GE(keptOf(*r, g), std::ceil(0.25 * g.channels)) << "group " << g.id;
    }
  }
  o.target_macs = 0.01;  // below what the floor allows
  auto impossible = allocateChannels(m, a, **l1, o);
  ASSERT_TRUE(impossible.isOk());
  EXPECT_FALSE(impossible->target_met);
}

TEST(AllocationTest, RoundKeep) {
  EXPECT_EQ(roundKeep(13, 32, 8), 16);
  EXPECT_EQ(roundKeep(11, 32, 8), 8);
  EXPECT_EQ(roundKeep(2, 32, 8), 8);
  EXPECT_EQ(roundKeep(30, 32, 8), 32);
  EXPECT_EQ(roundKeep(3, 5, 8), 5);
}

const char* kTrain = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

TEST(PruneCliTest, DataDrivenWithoutDataIsAUsageError) {
  TempDir dir;
  const std::string model = quote(sourcePath("models/resnet.onnx"));
  for (const std::string extra : {"--method contribution", "--method activation",
                                  "--allocation sensitivity", "--recover lsq", "--recover bn"}) {
    auto r =
        runCli("prune " + model + " -o " + quote(dir / "o.onnx") + " --target-macs 0.5 " + extra);
    EXPECT_EQ(r.exit_code, 2) << extra << ": " << r.err;
    EXPECT_NE(r.err.find("--data"), std::string::npos) << r.err;
  }
  auto both =
      runCli("prune " + model + " -o " + quote(dir / "o.onnx") + " --ratio 0.5 --target-macs 0.5");
  EXPECT_EQ(both.exit_code, 2);
}

// Data-driven criterion + sensitivity-free global allocation + merge-free: JSON fields, target,
// checker and ORT on the exported model.
TEST(PruneCliTest, ContributionGlobalTargetRunsInOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  TempDir dir;
  const auto out = dir / "pruned.onnx";
  auto r = runCli("prune " + quote(sourcePath("models/densenet.onnx")) + " -o " + quote(out) +
                  " --method contribution --allocation global --target-macs 0.6 --data " + kTrain +
                  " --mean 0.2860 --std 0.3530 --calib-size 64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["output"], out.string());
  EXPECT_LE(j["after"]["macs"].get<double>(), 0.6 * j["before"]["macs"].get<double>());
  EXPECT_GT(j["after"]["macs"].get<double>(), 0.5 * j["before"]["macs"].get<double>());
  bool some_removed = false;
  for (const auto& g : j["groups"])
    if (!g["removed"].empty()) {
      some_removed = true;
      EXPECT_TRUE(g.contains("scores"));
      EXPECT_EQ(g["channels_before"].get<int64_t>() - g["channels_after"].get<int64_t>(),
                static_cast<int64_t>(g["removed"].size()));
    }
  EXPECT_TRUE(some_removed);
  ASSERT_TRUE(checkModelFile(out).isOk());
  Tensor input = Tensor::fromVector<float>({2, 1, 28, 28}, std::vector<float>(2 * 784, 0.5f));
  auto outputs = testing::runOrt(out, {{"input", input}}, dir);
  ASSERT_TRUE(outputs.isOk()) << outputs.status().toString();
  EXPECT_EQ((*outputs)[0].shape(), (Shape{2, 10}));
}

TEST(PruneCliTest, ActivationAndMergedChainRunInOrt) {
  ASSERT_TRUE(testing::ortAvailable());
  TempDir dir;
  for (const std::string method :
       {"activation --alpha 0.5", "similarity-chain --merge", "fpgm --round-to 4"}) {
    const auto out = dir / "pruned.onnx";
    auto r = runCli("prune " + quote(sourcePath("models/mobilenetv2.onnx")) + " -o " + quote(out) +
                    " --method " + method + " --target-macs 0.7 --data " + kTrain +
                    " --mean 0.2860 --std 0.3530 --calib-size 32 --json");
    ASSERT_EQ(r.exit_code, 0) << method << ": " << r.err;
    ASSERT_TRUE(checkModelFile(out).isOk()) << method;
    Tensor input = Tensor::fromVector<float>({1, 1, 28, 28}, std::vector<float>(784, 0.1f));
    auto outputs = testing::runOrt(out, {{"input", input}}, dir);
    ASSERT_TRUE(outputs.isOk()) << method << ": " << outputs.status().toString();
  }
}

}  // namespace
}  // namespace nnc
