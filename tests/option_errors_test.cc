// Library errors name what is wrong in library terms ("<option>: ...", ir/option_error.h), never
// a command-line flag; the CLI names the flag of the command that ran, when it has one.
#include <gtest/gtest.h>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/prune/allocation.h"
#include "nncompress/prune/criteria.h"
#include "test_util.h"

namespace nnc {
namespace {

TEST(OptionErrors, LibraryNamesItsOptionNotAFlag) {
  auto model = loadModel(testing::sourcePath("models/resnet.onnx"));
  ASSERT_TRUE(model.isOk()) << model.status().message();
  const ChannelAnalysis analysis = analyzeChannels(*model);
  auto criterion = makeCriterion("l1");
  ASSERT_TRUE(criterion.isOk());
  UniformPlanOptions uniform;
  uniform.round_to = 0;
  const Status s = planUniformPruning(analysis, **criterion, uniform).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("round_to: ", 0), 0u) << s.message();
  EXPECT_EQ(s.message().find("--"), std::string::npos) << s.message();

  AllocationOptions allocation;
  allocation.ratio = 0.5;
  allocation.floor = 1.5;
  const Status f = allocateChannels(*model, analysis, **criterion, allocation).status();
  EXPECT_EQ(f.message().rfind("floor: ", 0), 0u) << f.message();
  EXPECT_EQ(parseAllocationMode("bogus").status().message().find("--"), std::string::npos);
}

TEST(OptionErrors, TheCliNamesTheFlagOfTheCommandThatRan) {
  testing::TempDir dir;
  const std::string model = testing::quote(testing::sourcePath("models/resnet.onnx"));
  auto r = testing::runCli("prune " + model + " -o " + testing::quote(dir / "p.onnx") +
                           " --ratio 0.5 --allocation bogus");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--allocation: unknown allocation mode 'bogus'"), std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "p.onnx"));
}

}  // namespace
}  // namespace nnc
