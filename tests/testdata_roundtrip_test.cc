// Load -> save -> load over every model of the ONNX backend test suite (Debian libonnx-testdata):
// the graph must come back equal and the saved file must pass the ONNX checker whenever the
// original does.

#include <gtest/gtest.h>
#include <onnx/checker.h>

#include "nncompress/ir/printer.h"
#include "nncompress/onnx_io/model_io.h"
#include "test_util.h"

namespace nnc {
namespace {

std::vector<std::filesystem::path> testdataModels() {
  std::vector<std::filesystem::path> out;
  for (const char* suite : {"node", "pytorch-converted", "pytorch-operator", "simple"}) {
    const auto dir = std::filesystem::path(NNC_TESTDATA_DIR) / suite;
    if (!std::filesystem::is_directory(dir)) continue;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
      if (e.path().extension() == ".onnx") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string fullText(const Model& m) {
  std::string s = printModel(m);
  s += "doc:" + m.doc_string + "\n";
  for (const auto& [k, v] : m.metadata_props) s += "meta:" + k + "=" + v + "\n";
  s += "functions:" + std::to_string(m.functions.size()) + "\n";
  for (const auto& v : m.graph->values())
    if (v->listedInValueInfo()) s += "value_info:" + v->name() + ":" + v->type().toString() + "\n";
  return s;
}

TEST(TestdataRoundTrip, EveryBackendModel) {
  const auto models = testdataModels();
  ASSERT_GT(models.size(), 500u) << "libonnx-testdata is missing: apt-get install libonnx-testdata";
  testing::TempDir dir;
  int round_tripped = 0, checked = 0, original_fails_checker = 0;
  std::vector<std::string> failures;
  for (const auto& path : models) {
    const std::string label = path.parent_path().filename().string();
    auto first = loadModel(path);
    if (!first.isOk()) {
      failures.push_back(label + ": load: " + first.status().toString());
      continue;
    }
    const std::string before = fullText(*first);
    const auto out = dir / "m.onnx";
    Status saved = saveModel(*first, out);
    if (!saved.isOk()) {
      failures.push_back(label + ": save: " + saved.toString());
      continue;
    }
    auto second = loadModel(out);
    if (!second.isOk()) {
      failures.push_back(label + ": reload: " + second.status().toString());
      continue;
    }
    if (fullText(*second) != before) {
      failures.push_back(label + ": graph differs after round trip");
      continue;
    }
    ++round_tripped;
    // Exclusion, with its reason: a file the checker rejects before we touch it cannot be
    // expected to pass afterwards (the suite has deliberately odd models, e.g. IR 3 files).
    bool original_ok = true;
    try {
      onnx::checker::check_model(path.string());
    } catch (const std::exception&) {
      original_ok = false;
    }
    if (!original_ok) {
      ++original_fails_checker;
      continue;
    }
    Status check = checkModelFile(out);
    if (!check.isOk()) {
      failures.push_back(label + ": saved file fails checker: " + check.message());
      continue;
    }
    ++checked;
  }
  std::printf(
      "[ roundtrip ] %zu models: %d round-tripped equal, %d passed the checker after save, "
      "%d excluded from the checker step (the original already fails it), %zu failures\n",
      models.size(), round_tripped, checked, original_fails_checker, failures.size());
  for (const auto& f : failures) ADD_FAILURE() << f;
}

}  // namespace
}  // namespace nnc
