// --auto-exclude (quant/auto_exclude.h): the fewest layers kept float for an output SQNR target.

#include <gtest/gtest.h>

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

// One layer deliberately broken (its input range 1000x too wide, so int8 rounds its input to a
// few levels) is the one, and the only one, kept in float.
TEST(AutoExclude, PicksTheBrokenLayer) {
  Calibrated c = calibrateVgg();
  ASSERT_GE(c.targets.size(), 4u);
  const quant::QuantTarget& broken = c.targets[2];
  ASSERT_EQ(broken.activation_inputs.size(), 1u);
  quant::Range& range = c.ranges[broken.activation_inputs[0]];
  range.lo *= 1000, range.hi *= 1000;
  quant::AutoExcludeOptions ao;
  ao.samples = 16;
  ao.min_sqnr_db = 20;
  auto r = quant::chooseFloatLayers(c.model, {}, c.ranges, *c.reader, ao);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_LT(r->sqnr_all_db, 10);
  ASSERT_EQ(r->excluded.size(), 1u);
  EXPECT_EQ(r->excluded[0].name, broken.name);
  EXPECT_LT(r->excluded[0].solo_sqnr_db, 10);
  EXPECT_FALSE(r->excluded[0].reason.empty());
  EXPECT_TRUE(r->target_met);
  EXPECT_GE(r->sqnr_final_db, 20);
  // The float model is left as it was: no layer quantized in it.
  for (const auto& n : c.model.graph->nodes()) EXPECT_FALSE(n->isOp("DequantizeLinear"));
}

}  // namespace
}  // namespace nnc
