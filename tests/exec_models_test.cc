// The executor on whole models, against ONNX Runtime and against the accuracy recorded when the
// fixtures were trained.

#include <gtest/gtest.h>

#include "nncompress/data/dataset.h"
#include "nncompress/exec/executor.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/pipeline/evaluate.h"
#include "ort_util.h"

namespace nnc {
namespace {

const char* kImages = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
const char* kLabels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";

nlohmann::json fixtures() {
  return nlohmann::json::parse(testing::readText(testing::sourcePath("models/fixtures.json")));
}

std::unique_ptr<data::SampleReader> fashion() {
  data::Preprocess pre;
  pre.mean = {0.2860f};
  pre.std = {0.3530f};
  auto reader = data::openData(kImages, pre);
  EXPECT_TRUE(reader.isOk()) << reader.status().toString();
  return std::move(reader).value();
}

// Outputs match ONNX Runtime within 1e-4 relative max error on real images, on 1 and 2 threads.
TEST(ExecModelsTest, FixturesMatchOnnxRuntime) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing: run tools/bootstrap.sh";
  auto reader = fashion();
  auto batch = reader->readBatch(0, 64);
  ASSERT_TRUE(batch.isOk());
  testing::TempDir dir;
  for (const auto& f : fixtures()) {
    const auto path = testing::sourcePath("models/" + f["file"].get<std::string>());
    SCOPED_TRACE(path.string());
    auto model = loadModel(path);
    ASSERT_TRUE(model.isOk());
    auto want = testing::runOrt(path, {{"input", *batch}}, dir);
    ASSERT_TRUE(want.isOk()) << want.status().toString();
    for (int threads : {1, 2}) {
      auto ex = exec::Executor::create(*model, {threads});
      ASSERT_TRUE(ex.isOk()) << ex.status().toString();
      auto got = (*ex)->run({*batch});
      ASSERT_TRUE(got.isOk()) << got.status().toString();
      EXPECT_LE(testing::relativeMaxError((*got)[0], (*want)[0]), 1e-4) << threads << " threads";
    }
  }
}

// Observers see every intermediate exactly once, and freeing after last use does not change
// results across repeated runs of one plan.
TEST(ExecModelsTest, ObserversSeeEveryIntermediateAndPlansAreReusable) {
  auto model = loadModel(testing::sourcePath("models/resnet.onnx"));
  ASSERT_TRUE(model.isOk());
  auto ex = exec::Executor::create(*model, {1});
  ASSERT_TRUE(ex.isOk());
  auto batch = fashion()->readBatch(0, 8);
  ASSERT_TRUE(batch.isOk());
  std::map<std::string, int> seen;
  auto first = (*ex)->run({*batch}, [&](const Value& v, const Tensor& t) {
    ++seen[v.name()];
    // Batch-major intermediates carry the 8 samples (weights passed through Identity do not).
    const auto& shape = v.type().shape;
    if (shape && !shape->empty() && (*shape)[0].param == "N") {
      EXPECT_EQ(t.dim(0), 8) << v.name();
    }
  });
  ASSERT_TRUE(first.isOk());
  int node_outputs = 0;
  for (const auto& n : model->graph->nodes())
    if (!n->isOp("Constant")) node_outputs += static_cast<int>(n->numOutputs());
  EXPECT_EQ(static_cast<int>(seen.size()), node_outputs);
  for (const auto& [name, count] : seen) EXPECT_EQ(count, 1) << name;
  // Without an observer the fused plan runs (BatchNormalization folded: rounding differs).
  auto second = (*ex)->run({*batch});
  ASSERT_TRUE(second.isOk());
  EXPECT_LE(testing::relativeMaxError((*second)[0], (*first)[0]), 1e-5);
  auto third = (*ex)->run({*batch});
  ASSERT_TRUE(third.isOk());
  EXPECT_EQ((*second)[0].bytes(), (*third)[0].bytes());
  auto observed_again = (*ex)->run({*batch}, [](const Value&, const Tensor&) {});
  ASSERT_TRUE(observed_again.isOk());
  EXPECT_EQ((*first)[0].bytes(), (*observed_again)[0].bytes());
}

TEST(ExecModelsTest, UnsupportedOpIsNamedBeforeAnyWork) {
  Model m;
  m.opset_imports = {{"", 13}, {"my.domain", 1}};
  Value* x = m.graph->createValue("x").value();
  x->setType({DType::kFloat32, std::vector<Dim>{Dim::known(1)}});
  m.graph->addInput(x);
  Node* n = m.graph->addNode("Frobnicate", {x}, {"y"}, "my.domain");
  m.graph->addOutput(n->output());
  auto ex = exec::Executor::create(m);
  ASSERT_FALSE(ex.isOk());
  EXPECT_EQ(ex.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(ex.status().message().find("my.domain.Frobnicate"), std::string::npos)
      << ex.status().message();
}

// evaluate() times each executor run on a full batch; its median is what the benchmark compares
// with ONNX Runtime's. Without a full batch there is no median.
TEST(ExecModelsTest, EvalReportsMedianRunTimeOfFullBatches) {
  auto model = loadModel(testing::sourcePath("models/vgg_bn.onnx"));
  ASSERT_TRUE(model.isOk());
  auto ex = exec::Executor::create(*model, {1});
  ASSERT_TRUE(ex.isOk());
  auto reader = fashion();
  EvalOptions options;
  options.batch = 8;
  options.limit = 20;  // two full batches and a tail of 4
  auto r = evaluate(**ex, *reader, nullptr, nullptr, options);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->count, 20);
  EXPECT_GT(r->batch_ms_median, 0);
  EXPECT_GT(r->images_per_second, 0);
  options.limit = 4;
  r = evaluate(**ex, *reader, nullptr, nullptr, options);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->batch_ms_median, 0);
}

// `nncompress eval` reproduces, over the 10k test images, the accuracy recorded at training time
// within 0.1 points. Labelled full_dataset: it runs in the Release pass of tools/test.sh.
TEST(ExecModelsFullDataset, EvalReproducesTrainingAccuracy) {
  auto labels = data::readLabels(kLabels);
  ASSERT_TRUE(labels.isOk());
  for (const auto& f : fixtures()) {
    const auto path = testing::sourcePath("models/" + f["file"].get<std::string>());
    auto model = loadModel(path);
    ASSERT_TRUE(model.isOk());
    auto ex = exec::Executor::create(*model);
    ASSERT_TRUE(ex.isOk());
    auto reader = fashion();
    EvalOptions options;
    options.batch = 100;
    auto r = evaluate(**ex, *reader, &*labels, nullptr, options);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->count, 10000);
    EXPECT_NEAR(*r->top1, f["top1"].get<double>(), 0.001) << path;
    std::printf("[ eval ] %s top-1 %.4f (recorded %.4f), %.0f images/s\n",
                f["name"].get<std::string>().c_str(), *r->top1, f["top1"].get<double>(),
                r->images_per_second);
  }
}

}  // namespace
}  // namespace nnc
