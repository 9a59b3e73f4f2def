// Kernels of ops that detectors and transformers end with (NonMaxSuppression, Einsum,
// GridSample) against ONNX Runtime on seeded random inputs chosen to reach the corner cases the
// ONNX backend tests (exec_backend_test.cc) leave out: tied scores, a score equal to the
// threshold, degenerate boxes, broadcasting and repeated labels, out-of-range sample points.

#include <gtest/gtest.h>

#include <random>

#include "model_text.h"
#include "nncompress/exec/executor.h"
#include "ort_util.h"
#include "random_tensor.h"

namespace nnc {
namespace {

using Inputs = std::vector<std::pair<std::string, Tensor>>;

// Runs `text` in our executor and in ORT; returns {ours, ORT's} first output.
std::pair<Tensor, Tensor> runBoth(const std::string& text, const Inputs& inputs) {
  testing::TempDir dir;
  Model model = testing::parseModelText(text);
  const auto path = dir / "m.onnx";
  EXPECT_TRUE(saveModel(model, path).isOk());
  auto ex = exec::Executor::create(model);
  EXPECT_TRUE(ex.isOk()) << ex.status().toString();
  if (!ex.isOk()) return {};
  std::vector<Tensor> feeds;
  for (const auto& [name, t] : inputs) feeds.push_back(t);
  auto ours = (*ex)->run(feeds);
  EXPECT_TRUE(ours.isOk()) << ours.status().toString();
  auto ort = testing::runOrt(path, inputs, dir);
  EXPECT_TRUE(ort.isOk()) << ort.status().toString();
  if (!ours.isOk() || !ort.isOk()) return {};
  return {ours->front(), ort->front()};
}

void expectSameIndices(const Tensor& ours, const Tensor& ort) {
  ASSERT_EQ(ours.dtype(), DType::kInt64);
  ASSERT_EQ(ort.dtype(), DType::kInt64);
  ASSERT_EQ(shapeToString(ours.shape()), shapeToString(ort.shape()));
  EXPECT_EQ(ours.toInt64Vector(), ort.toInt64Vector());
}

// Boxes on a coarse grid so that many overlap; scores from a few levels so that many tie.
Inputs nmsInputs(uint32_t seed, bool center_point) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> cell(0, 5), level(0, 6);
  Tensor boxes(DType::kFloat32, {2, 40, 4}), scores(DType::kFloat32, {2, 3, 40});
  auto b = boxes.mutableData<float>();
  for (size_t i = 0; i < b.size(); i += 4) {
    const float y = cell(rng) * 0.1f, x = cell(rng) * 0.1f, h = cell(rng) * 0.1f,
                w = cell(rng) * 0.1f;  // h or w 0: a degenerate box
    if (center_point) {
      b[i] = x, b[i + 1] = y, b[i + 2] = w, b[i + 3] = h;
    } else {  // corners in either diagonal order
      const bool flip = cell(rng) % 2;
      b[i] = flip ? y + h : y, b[i + 1] = x, b[i + 2] = flip ? y : y + h, b[i + 3] = x + w;
    }
  }
  for (float& s : scores.mutableData<float>()) s = level(rng) * 0.125f;
  return {{"boxes", boxes}, {"scores", scores}};
}

TEST(ExecOrtOps, NonMaxSuppressionMatchesOrt) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing: run tools/bootstrap.sh";
  for (int center = 0; center <= 1; ++center) {
    for (const char* limits : {"int64 m = {5}, float iou = {0.3}, float st = {0.25}",
                               "int64 m = {100}, float iou = {0.0}, float st = {0.0}",
                               "int64 m = {3}, float iou = {0.7}, float st = {-1.0}"}) {
      SCOPED_TRACE(std::string(limits) + ", center_point_box " + std::to_string(center));
      const std::string text = R"(<ir_version: 8, opset_import: ["" : 11]>
        g (float[2, 40, 4] boxes, float[2, 3, 40] scores) => (int64[K, 3] sel)
        <)" + std::string(limits) +
                               R"(> {
          sel = NonMaxSuppression<center_point_box = )" +
                               std::to_string(center) + R"(>(boxes, scores, m, iou, st)
        })";
      auto [ours, ort] = runBoth(text, nmsInputs(7 + center, center == 1));
      expectSameIndices(ours, ort);
      EXPECT_GT(ours.dim(0), 0);
    }
  }
}

// Without the optional inputs nothing is selected (max_output_boxes_per_class defaults to 0).
TEST(ExecOrtOps, NonMaxSuppressionWithoutLimitsSelectsNothing) {
  ASSERT_TRUE(testing::ortAvailable());
  const std::string text = R"(<ir_version: 8, opset_import: ["" : 10]>
    g (float[2, 40, 4] boxes, float[2, 3, 40] scores) => (int64[K, 3] sel) {
      sel = NonMaxSuppression(boxes, scores)
    })";
  auto [ours, ort] = runBoth(text, nmsInputs(3, false));
  expectSameIndices(ours, ort);
  EXPECT_EQ(ours.dim(0), 0);
}

}  // namespace
}  // namespace nnc
