// Pruning is exact where it should be: for every fixture and every prunable channel group,
// zeroing in the original the weight slices through which the group's consumers read the
// channels to be removed (Conv input channels, Gemm/MatMul input features, flattened blocks
// included) gives the same outputs as physically removing those channels. Both models run in
// ONNX Runtime on real Fashion-MNIST images. (Zeroing producers would not be a valid oracle: a
// BatchNormalization or bias after them turns zeros into constants.)

#include <gtest/gtest.h>

#include "nncompress/data/dataset.h"
#include "nncompress/ir/verify.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/prune/criteria.h"
#include "ort_util.h"
#include "prune_oracle.h"

namespace nnc {
namespace {

using testing::TempDir;
using testing::zeroConsumerSlices;

const char* kFixtures[] = {"vgg_bn", "resnet", "mobilenetv2", "densenet", "flatten_head"};
const char* kImages = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";

Tensor fashionBatch(int64_t count) {
  data::Preprocess pre;
  pre.mean = {0.2860f};
  pre.std = {0.3530f};
  auto reader = data::openData(kImages, pre);
  EXPECT_TRUE(reader.isOk()) << reader.status().toString();
  auto batch = (*reader)->readBatch(0, count);
  EXPECT_TRUE(batch.isOk());
  return std::move(batch).value();
}

TEST(PruneEquivalenceTest, EveryPrunableGroupOfEveryFixture) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing: run tools/bootstrap.sh";
  const Tensor images = fashionBatch(32);
  TempDir dir;
  int checked = 0;
  for (const char* name : kFixtures) {
    const auto path = testing::sourcePath(std::string("models/") + name + ".onnx");
    auto original = loadModel(path);
    ASSERT_TRUE(original.isOk()) << original.status().toString();
    const ChannelAnalysis analysis = analyzeChannels(*original);
    auto criterion = makeCriterion("l1");
    ASSERT_TRUE(criterion.isOk());
    for (const ChannelGroup& group : analysis.groups) {
      if (!group.prunable || group.channels < 2) continue;
      SCOPED_TRACE(std::string(name) + " group " + std::to_string(group.id));
      auto scores = (*criterion)->score(group);
      ASSERT_TRUE(scores.isOk());
      const std::vector<int64_t> keep = topChannels(*scores, group.channels / 2);
      std::vector<int64_t> dropped;
      for (int64_t c = 0; c < group.channels; ++c)
        if (!std::binary_search(keep.begin(), keep.end(), c)) dropped.push_back(c);

      // Zeroed original and pruned model, each from a fresh load (analysis is per model).
      auto zeroed = loadModel(path);
      ASSERT_TRUE(zeroed.isOk());
      const ChannelAnalysis zeroed_analysis = analyzeChannels(*zeroed);
      zeroConsumerSlices(*zeroed->graph, zeroed_analysis.groups[group.id], dropped);
      ASSERT_TRUE(verifyModel(*zeroed).isOk());
      auto pruned = loadModel(path);
      ASSERT_TRUE(pruned.isOk());
      const ChannelAnalysis pruned_analysis = analyzeChannels(*pruned);
      Status st = applyChannelPruning(*pruned, pruned_analysis, {{group.id, keep}});
      ASSERT_TRUE(st.isOk()) << st.toString();

      const auto zeroed_path = dir / "zeroed.onnx", pruned_path = dir / "pruned.onnx";
      ASSERT_TRUE(saveModel(*zeroed, zeroed_path).isOk());
      ASSERT_TRUE(saveModel(*pruned, pruned_path).isOk());
      ASSERT_TRUE(checkModelFile(pruned_path).isOk()) << checkModelFile(pruned_path).toString();
      auto want = testing::runOrt(zeroed_path, {{"input", images}}, dir);
      auto got = testing::runOrt(pruned_path, {{"input", images}}, dir);
      ASSERT_TRUE(want.isOk()) << want.status().toString();
      ASSERT_TRUE(got.isOk()) << got.status().toString();
      ASSERT_EQ(got->size(), 1u);
      EXPECT_EQ((*got)[0].shape(), (Shape{32, 10}));
      const double err = testing::relativeMaxError((*got)[0], (*want)[0]);
      EXPECT_LE(err, 1e-5) << "pruned outputs differ from the zeroed original";
      ++checked;
    }
  }
  std::printf("[ equivalence ] %d channel groups checked in ONNX Runtime\n", checked);
  EXPECT_GE(checked, 15);
}

}  // namespace
}  // namespace nnc
