// Surgery updates the shapes of the values it shrinks itself (no libonnx): on every fixture, for
// every prunable group alone and for all groups together, each value's type after surgery equals
// what onnx_io's full re-inference derives. More models (e.g. torchvision exports) can be named
// in NNC_SURGERY_SHAPE_MODELS, separated by ':'.

#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>

#include "nncompress/onnx_io/model_io.h"
#include "nncompress/prune/surgery.h"
#include "test_util.h"

namespace nnc {
namespace {

void expectSelfUpdatedShapesMatchInference(const Model& model, const std::string& label) {
  const ChannelAnalysis analysis = analyzeChannels(model);
  std::vector<std::vector<GroupKeep>> plans;
  std::vector<GroupKeep> all;
  for (const ChannelGroup& g : analysis.groups) {
    if (!g.prunable || g.channels < 2) continue;
    std::vector<int64_t> keep;
    for (int64_t c = 1; c < g.channels; c += 2) keep.push_back(c);
    plans.push_back({{g.id, keep}});
    all.push_back({g.id, keep});
  }
  plans.push_back(all);
  for (size_t i = 0; i < plans.size(); ++i) {
    Model self = model.clone(), inferred = model.clone();
    ASSERT_TRUE(applyChannelPruning(self, analyzeChannels(self), plans[i]).isOk());
    ASSERT_TRUE(
        applyChannelPruning(inferred, analyzeChannels(inferred), plans[i], &onnxShapeInference())
            .isOk());
    ASSERT_EQ(self.graph->values().size(), inferred.graph->values().size());
    for (const auto& v : inferred.graph->values()) {
      const Value* s = self.graph->findValue(v->name());
      ASSERT_NE(s, nullptr) << v->name();
      EXPECT_EQ(s->type(), v->type()) << label << " plan " << i << " value " << v->name() << ": "
                                      << s->type().toString() << " vs " << v->type().toString();
    }
  }
}

TEST(SurgeryShapesTest, SelfUpdatedShapesEqualReinferredOnEveryFixture) {
  for (const char* name : {"resnet", "vgg_bn", "densenet", "mobilenetv2", "flatten_head"}) {
    auto m = loadModel(testing::sourcePath(std::string("models/") + name + ".onnx"));
    ASSERT_TRUE(m.isOk()) << m.status().toString();
    expectSelfUpdatedShapesMatchInference(*m, name);
  }
  if (const char* more = std::getenv("NNC_SURGERY_SHAPE_MODELS")) {
    std::stringstream list(more);
    std::string path;
    while (std::getline(list, path, ':')) {
      auto m = loadModel(path);
      ASSERT_TRUE(m.isOk()) << m.status().toString();
      expectSelfUpdatedShapesMatchInference(*m, path);
    }
  }
}

}  // namespace
}  // namespace nnc
