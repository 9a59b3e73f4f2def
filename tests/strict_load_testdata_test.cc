// Strict loading must not refuse valid models: every model of the ONNX backend test suite
// (Debian libonnx-testdata) loads in strict mode except the few below, each a real defect.

#include <gtest/gtest.h>

#include <map>

#include "nncompress/onnx_io/model_io.h"
#include "test_util.h"

namespace nnc {
namespace {

// Test folder -> what strict mode finds. Each is a spec violation of the file's own opset.
const std::map<std::string, std::string> kRealDefects = {
    // Opset 6: Constant-1 outputs float16/float/double only; these PyTorch 0.x exports (IR 3)
    // hold int64 shape constants in Constant nodes (allowed from Constant-9).
    {"test_PixelShuffle", "(op_type:Constant): output has unsupported type tensor(int64)"},
    {"test_operator_repeat", "(op_type:Constant): output has unsupported type tensor(int64)"},
    {"test_operator_repeat_dim_overflow",
     "(op_type:Constant): output has unsupported type tensor(int64)"},
};

TEST(StrictLoadTestdata, RefusesOnlyRealDefects) {
  std::vector<std::filesystem::path> models;
  for (const char* suite : {"node", "pytorch-converted", "pytorch-operator", "simple"}) {
    const auto dir = std::filesystem::path(NNC_TESTDATA_DIR) / suite;
    if (!std::filesystem::is_directory(dir)) continue;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
      if (e.path().extension() == ".onnx") models.push_back(e.path());
  }
  ASSERT_GT(models.size(), 1000u)
      << "libonnx-testdata is missing: apt-get install libonnx-testdata";
  LoadOptions strict;
  strict.strict = StrictLoad::kRefuse;
  std::map<std::string, std::string> refused;
  for (const auto& path : models) {
    auto model = loadModel(path, strict);
    if (!model.isOk()) refused[path.parent_path().filename().string()] = model.status().message();
  }
  for (const auto& [name, message] : refused) {
    auto it = kRealDefects.find(name);
    if (it == kRealDefects.end()) {
      ADD_FAILURE() << name << " refused in strict mode: " << message;
      continue;
    }
    EXPECT_NE(message.find(it->second), std::string::npos) << name << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << name << ": one line: " << message;
  }
  for (const auto& [name, why] : kRealDefects)
    EXPECT_TRUE(refused.count(name)) << name << " is no longer refused (" << why << ")";
  std::printf("strict load: %zu models, %zu refused\n", models.size(), refused.size());
}

}  // namespace
}  // namespace nnc
