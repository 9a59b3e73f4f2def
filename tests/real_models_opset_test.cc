// Issue 12 on the real pretrained models of ../shared/real-models (all opset 9, two with every
// weight in Constant nodes): `convert --opset 13` keeps their outputs in ONNX Runtime, and
// `quantize` (int8 QDQ, per channel) converts them itself and writes a model ONNX Runtime runs.

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <ostream>

#include "nncompress/data/npy.h"
#include "nncompress/onnx_io/model_io.h"
#include "ort_util.h"
#include "test_util.h"

namespace nnc {
namespace {

using testing::quote;
using testing::runCli;
using testing::TempDir;

struct RealModel {
  const char* file;
  Shape input;  // one sample, dynamic dims as the README suggests
};

const RealModel kModels[] = {
    {"fr_landmark", {1, 1, 64, 64}},
    {"fr_liveness", {1, 3, 128, 128}},
    {"fr_pose", {1, 3, 224, 224}},
    {"fr_eye", {1, 1, 24, 24}},
    {"fr_age", {1, 3, 64, 64}},
    {"fr_gender", {1, 3, 64, 64}},
    {"ch_ppocr_mobile_v2.0_cls_infer", {1, 3, 48, 192}},
    {"ch_PP-OCRv4_rec_infer", {1, 3, 48, 320}},
};

void PrintTo(const RealModel& m, std::ostream* os) { *os << m.file; }

std::filesystem::path modelPath(const RealModel& m) {
  return std::filesystem::path(NNC_SHARED_DIR) / "real-models" / (std::string(m.file) + ".onnx");
}

// Smooth image-like values in [0, 1).
Tensor sampleInput(Shape shape, float phase) {
  Tensor t(DType::kFloat32, std::move(shape));
  auto v = t.mutableData<float>();
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = 0.5f + 0.49f * std::sin(0.013f * float(i) + phase) * std::cos(0.0007f * float(i));
  return t;
}

std::string inputName(const std::filesystem::path& path) {
  auto model = loadModel(path);
  EXPECT_TRUE(model.isOk()) << model.status().toString();
  for (const Value* v : model->graph->inputs())
    if (!v->isInitializer()) return v->name();
  return {};
}

bool allFinite(const Tensor& t) {
  for (float x : t.data<float>())
    if (!std::isfinite(x)) return false;
  return true;
}

class RealModelOpset : public ::testing::TestWithParam<RealModel> {};

TEST_P(RealModelOpset, ConvertTo13KeepsTheOutputsInOrt) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  const RealModel& m = GetParam();
  TempDir dir;
  const auto out = dir / "converted.onnx";
  const auto r = runCli("convert " + quote(modelPath(m)) + " -o " + quote(out) + " --opset 13");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto converted = loadModel(out);
  ASSERT_TRUE(converted.isOk()) << converted.status().toString();
  EXPECT_EQ(converted->opsetVersion(""), 13);
  EXPECT_GE(converted->ir_version, 7);
  const std::string name = inputName(modelPath(m));
  const Tensor x = sampleInput(m.input, 0.3f);
  auto before = testing::runOrt(modelPath(m), {{name, x}}, dir);
  auto after = testing::runOrt(out, {{name, x}}, dir);
  ASSERT_TRUE(before.isOk()) << before.status().message();
  ASSERT_TRUE(after.isOk()) << after.status().message();
  ASSERT_EQ(after->size(), before->size());
  for (size_t i = 0; i < before->size(); ++i)
    EXPECT_LE(testing::relativeMaxError((*after)[i], (*before)[i]), 1e-5) << "output " << i;
}

TEST_P(RealModelOpset, QuantizeConvertsItselfAndOrtRunsTheResult) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  const RealModel& m = GetParam();
  TempDir dir;
  Shape calib_shape = m.input;
  calib_shape[0] = 8;
  ASSERT_TRUE(data::writeNpy((dir / "calib.npy").string(), sampleInput(calib_shape, 1.1f)).isOk());
  const auto out = dir / "q.onnx";
  const auto r = runCli("quantize " + quote(modelPath(m)) + " -o " + quote(out) + " --calib " +
                        quote(dir / "calib.npy") + " --calib-size 8 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["converted_from_opset"], 9);
  EXPECT_GE(j["opset"].get<int>(), 13);
  const std::string name = inputName(modelPath(m));
  const Tensor x = sampleInput(m.input, 0.3f);
  auto reference = testing::runOrt(modelPath(m), {{name, x}}, dir);
  auto quantized = testing::runOrt(out, {{name, x}}, dir);
  ASSERT_TRUE(reference.isOk()) << reference.status().message();
  ASSERT_TRUE(quantized.isOk()) << quantized.status().message();
  ASSERT_EQ(quantized->size(), reference->size());
  for (size_t i = 0; i < reference->size(); ++i) {
    EXPECT_EQ((*quantized)[i].shape(), (*reference)[i].shape()) << "output " << i;
    EXPECT_TRUE(allFinite((*quantized)[i])) << "output " << i;
  }
  std::printf("%-32s int8 QDQ in ORT: output 0 relative error %.4f\n", m.file,
              testing::relativeMaxError((*quantized)[0], (*reference)[0]));
}

INSTANTIATE_TEST_SUITE_P(Shared, RealModelOpset, ::testing::ValuesIn(kModels),
                         [](const auto& info) {
                           std::string name = info.param.file;
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

}  // namespace
}  // namespace nnc
