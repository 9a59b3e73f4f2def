// --auto-exclude (quant/auto_exclude.h): the fewest layers kept float for an output SQNR target.

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "nncompress/data/dataset.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/quant/auto_exclude.h"
#include "nncompress/quant/bn_fold.h"
#include "nncompress/quant/calibration.h"
#include "nncompress/quant/quantize.h"
#include "test_util.h"

namespace nnc {
namespace {

struct Calibrated {
  Model model;
  std::unique_ptr<data::SampleReader> reader;
  std::vector<quant::QuantTarget> targets;
  std::map<std::string, quant::Range> ranges;
};

// vgg_bn with folded BNs and minmax ranges on 32 training images.
Calibrated calibrateVgg() {
  Calibrated c;
  auto m = loadModel(testing::sourcePath("models/vgg_bn.onnx"));
  EXPECT_TRUE(m.isOk());
  c.model = std::move(m).value();
  EXPECT_TRUE(quant::foldBatchNorms(*c.model.graph).isOk());
  data::Preprocess p;
  EXPECT_TRUE(data::setPreprocessOption(p, "mean", "0.2860").isOk());
  EXPECT_TRUE(data::setPreprocessOption(p, "std", "0.3530").isOk());
  auto r = data::openData("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", p);
  EXPECT_TRUE(r.isOk());
  c.reader = std::move(r).value();
  auto t = quant::selectTargets(*c.model.graph, {});
  EXPECT_TRUE(t.isOk());
  c.targets = *t;
  quant::CalibrationOptions co;
  co.calib_size = 32;
  auto hist = quant::collectHistograms(c.model, *c.reader, quant::valuesToCalibrate(*t, {}), co);
  EXPECT_TRUE(hist.isOk());
  for (const auto& [name, h] : *hist)
    c.ranges[name] = h.range(quant::CalibMethod::kMinMax, false, 8);
  return c;
}

// A well-calibrated model meets the target: nothing is kept float.
TEST(AutoExclude, NothingExcludedWhenTheTargetHolds) {
  Calibrated c = calibrateVgg();
  quant::AutoExcludeOptions ao;
  ao.samples = 16;
  ao.min_sqnr_db = 20;
  auto r = quant::chooseFloatLayers(c.model, {}, c.ranges, *c.reader, ao);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_TRUE(r->target_met);
  EXPECT_TRUE(r->excluded.empty());
  EXPECT_GT(r->sqnr_all_db, 20);
}

// One activation tensor deliberately broken (its range 1000x too wide, so int8 rounds it to a few
// levels): the layers that quantize it, and only those, are kept in float. With
// --qdq-placement tensorrt only the reader (targets[2]) has a Q/DQ on it. With ort (the default)
// the same Q/DQ pair is also the output Q/DQ of its producer (targets[1] -> Relu -> targets[2] in
// vgg_bn), which makes the producer a QLinearConv: keeping only the reader float leaves the broken
// pair in place, so both are kept float.
struct BrokenCase {
  quant::QdqPlacement placement;
  std::vector<size_t> kept_float;  // indices into the targets
};

class AutoExcludeBroken : public ::testing::TestWithParam<BrokenCase> {};

TEST_P(AutoExcludeBroken, KeepsFloatTheLayersThatQuantizeTheBrokenTensor) {
  Calibrated c = calibrateVgg();
  ASSERT_GE(c.targets.size(), 4u);
  const quant::QuantTarget& broken = c.targets[2];
  ASSERT_EQ(broken.activation_inputs.size(), 1u);
  ASSERT_EQ(c.targets[1].node->output(0)->uses().size(), 1u);
  ASSERT_EQ(c.targets[1].node->output(0)->uses()[0].node->output(0)->name(),
            broken.activation_inputs[0])
      << "vgg_bn: targets[1] -> Relu -> targets[2]";
  quant::Range& range = c.ranges[broken.activation_inputs[0]];
  range.lo *= 1000, range.hi *= 1000;
  quant::QuantizeOptions qo;
  qo.placement = GetParam().placement;
  quant::AutoExcludeOptions ao;
  ao.samples = 16;
  ao.min_sqnr_db = 20;
  auto r = quant::chooseFloatLayers(c.model, qo, c.ranges, *c.reader, ao);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_LT(r->sqnr_all_db, 10);
  std::set<std::string> want, got;
  for (size_t i : GetParam().kept_float) want.insert(c.targets[i].name);
  for (const auto& e : r->excluded) {
    got.insert(e.name);
    EXPECT_LT(e.solo_sqnr_db, 10) << e.name;
    EXPECT_FALSE(e.reason.empty());
    // The broken tensor is an activation: a float input is enough, the weights stay int8.
    EXPECT_TRUE(e.weights_quantized) << e.name;
  }
  EXPECT_EQ(got, want);
  EXPECT_TRUE(r->target_met);
  EXPECT_GE(r->sqnr_final_db, 20);
  // The float model is left as it was: no layer quantized in it.
  for (const auto& n : c.model.graph->nodes()) EXPECT_FALSE(n->isOp("DequantizeLinear"));
}

INSTANTIATE_TEST_SUITE_P(Placements, AutoExcludeBroken,
                         ::testing::Values(BrokenCase{quant::QdqPlacement::kTensorRt, {2}},
                                           BrokenCase{quant::QdqPlacement::kOrt, {1, 2}}),
                         [](const ::testing::TestParamInfo<BrokenCase>& info) {
                           return std::string(quant::qdqPlacementName(info.param.placement));
                         });

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {

// A target the whole model misses by several dB: every layer kept float is needed (quantizing
// any one of them again misses the target), which the prefix of the harm order alone does not
// guarantee.
TEST(AutoExclude, EveryLayerKeptFloatIsNeeded) {
  Calibrated c = calibrateVgg();
  quant::AutoExcludeOptions ao;
  ao.samples = 16;
  ao.min_sqnr_db = 200;
  auto all = quant::chooseFloatLayers(c.model, {}, c.ranges, *c.reader, ao);
  ASSERT_TRUE(all.isOk()) << all.status().message();
  ao.min_sqnr_db = all->sqnr_all_db + 6;
  auto r = quant::chooseFloatLayers(c.model, {}, c.ranges, *c.reader, ao);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  ASSERT_TRUE(r->target_met);
  ASSERT_GE(r->excluded.size(), 2u);
  ASSERT_LT(r->excluded.size(), c.targets.size());
  for (const auto& e : r->excluded) {
    quant::QuantizeOptions qo;
    for (const auto& other : r->excluded)
      if (other.name != e.name)
        (other.weights_quantized ? qo.float_activations : qo.exclude).push_back(other.name);
    auto without = quant::chooseFloatLayers(c.model, qo, c.ranges, *c.reader, ao);
    ASSERT_TRUE(without.isOk());
    EXPECT_LT(without->sqnr_all_db, ao.min_sqnr_db) << e.name << " need not be float";
  }
}

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {

// A target that int8 weights alone miss (every input float): some whole layers are kept float,
// only those the weights need, and the target is met.
TEST(AutoExclude, WholeLayersKeptFloatWhenFloatInputsAreNotEnough) {
  Calibrated c = calibrateVgg();
  quant::AutoExcludeOptions ao;
  ao.samples = 16;
  ao.min_sqnr_db = 200;
  quant::QuantizeOptions weights_only;
  for (const auto& t : c.targets) weights_only.float_activations.push_back(t.name);
  auto w = quant::chooseFloatLayers(c.model, weights_only, c.ranges, *c.reader, ao);
  ASSERT_TRUE(w.isOk()) << w.status().message();
  ao.min_sqnr_db = w->sqnr_all_db + 3;
  auto r = quant::chooseFloatLayers(c.model, {}, c.ranges, *c.reader, ao);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_TRUE(r->target_met);
  EXPECT_GE(r->sqnr_final_db, ao.min_sqnr_db);
  int whole = 0;
  for (const auto& e : r->excluded) whole += e.weights_quantized ? 0 : 1;
  EXPECT_GE(whole, 1);
  // Every whole float layer is needed: with the others whole and every input float, quantizing
  // its weights again misses the target.
  for (const auto& e : r->excluded) {
    if (e.weights_quantized) continue;
    quant::QuantizeOptions qo = weights_only;
    for (const auto& other : r->excluded)
      if (other.name != e.name && !other.weights_quantized) qo.exclude.push_back(other.name);
    auto without = quant::chooseFloatLayers(c.model, qo, c.ranges, *c.reader, ao);
    ASSERT_TRUE(without.isOk());
    EXPECT_LT(without->sqnr_all_db, ao.min_sqnr_db) << e.name << " need not be float";
  }
}

// Harm that does not add up: A and B together cost 20 dB, C and D nothing once A and B are
// float. The prefix {A, B, C, D} shrinks to {A, B}; trials ask for the kept set each time.
TEST(AutoExclude, QuantizesAgainTheFloatLayersTheTargetDoesNotNeed) {
  std::vector<quant::ExcludedLayer> kept = {
      {"A", "Conv", 10, ""}, {"B", "Conv", 12, ""}, {"C", "Conv", 31, ""}, {"D", "Conv", 33, ""}};
  int trials = 0;
  auto trial = [&](const std::vector<std::string>& names) -> StatusOr<double> {
    ++trials;
    double s = 40;
    for (const char* harmful : {"A", "B"})
      if (std::find(names.begin(), names.end(), harmful) == names.end()) s -= 10;
    return s;
  };
  double sqnr = 40;
  ASSERT_TRUE(quant::quantizeUnneededFloatLayers(kept, sqnr, trial, 35).isOk());
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].name, "A");
  EXPECT_EQ(kept[1].name, "B");
  EXPECT_EQ(sqnr, 40);
  EXPECT_EQ(trials, 4);
}

}  // namespace
}  // namespace nnc
