// `nncompress compress` end to end on a small fixture with few samples (the accuracy targets on
// the full test set are measured by tools/compress_results.sh, not here).

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include <nlohmann/json.hpp>

#include <algorithm>

#include "nncompress/onnx_io/model_io.h"
#include "test_util.h"

namespace nnc {
namespace {

using testing::quote;
using testing::readText;
using testing::runCli;
using testing::sourcePath;
using testing::TempDir;

const std::string kData = "/usr/share/datasets/fashion-mnist/";

std::string dataFlags(int eval_size, int calib_size) {
  return " --data " + kData + "t10k-images-idx3-ubyte.gz --labels " + kData +
         "t10k-labels-idx1-ubyte.gz --calib " + kData +
         "train-images-idx3-ubyte.gz --mean 0.2860 --std 0.3530 --eval-size " +
         std::to_string(eval_size) + " --calib-size " + std::to_string(calib_size) + " --batch 50 ";
}

TEST(CompressCliTest, MeetsReachableTargetsAndReplaysItsRecipe) {
  TempDir dir;
  const auto out = dir / "small.onnx", recipe = dir / "recipe.json", html = dir / "r.html";
  auto r = runCli("compress " + quote(sourcePath("models/flatten_head.onnx")) + " -o " +
                  quote(out) + dataFlags(300, 64) +
                  "--max-accuracy-drop 3 --target-size 4x --step 0.2 --json --save-recipe " +
                  quote(recipe) + " --report " + quote(html));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["met"].get<bool>());
  EXPECT_EQ(j["output"], out.string());
  EXPECT_LE(j["accuracy_drop"].get<double>(), 3.0);
  EXPECT_GE(j["size_ratio"].get<double>(), 4.0);
  const int64_t before = j["before"]["file_bytes"], after = j["after"]["file_bytes"];
  EXPECT_LE(after * 4, before);
  EXPECT_EQ(static_cast<int64_t>(std::filesystem::file_size(out)), after);
  ASSERT_FALSE(j["steps"].empty());
  EXPECT_EQ(j["steps"][0]["kind"], "baseline");
  // The HTML report has the trajectory chart.
  const std::string page = readText(html);
  EXPECT_NE(page.find("<svg class=\"chart line-chart\""), std::string::npos);
  EXPECT_NE(page.find("Accuracy vs size"), std::string::npos);

  // Replaying the recipe gives the same model size without searching.
  const auto replayed = dir / "replayed.onnx";
  auto again =
      runCli("compress " + quote(sourcePath("models/flatten_head.onnx")) + " -o " +
             quote(replayed) + dataFlags(300, 64) + "--recipe " + quote(recipe) + " --json");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto k = nlohmann::json::parse(again.out);
  EXPECT_EQ(k["after"]["file_bytes"], after);

  // The written file is compacted (short names); --keep-names keeps the exporter's names, so the
  // same recipe writes a larger file, and the reported size is still the file's.
  const auto named = dir / "named.onnx";
  auto with_names =
      runCli("compress " + quote(sourcePath("models/flatten_head.onnx")) + " -o " + quote(named) +
             dataFlags(300, 64) + "--recipe " + quote(recipe) + " --keep-names --json");
  ASSERT_EQ(with_names.exit_code, 0) << with_names.err;
  const int64_t named_bytes = nlohmann::json::parse(with_names.out)["after"]["file_bytes"];
  EXPECT_GT(named_bytes, after);
  EXPECT_EQ(static_cast<int64_t>(std::filesystem::file_size(named)), named_bytes);
}

// The int4 weights of a model as (element count, bytes), smallest first (compaction names them
// by position, so names do not identify a layer across two files).
std::vector<std::pair<int64_t, std::string>> int4Weights(const std::filesystem::path& file) {
  std::vector<std::pair<int64_t, std::string>> out;
  auto m = loadModel(file);
  EXPECT_TRUE(m.isOk()) << m.status().message();
  if (!m.isOk()) return out;
  for (const Value* v : m->graph->initializers())
    if (v->dtype() == DType::kInt4)
      out.emplace_back(v->initializer()->numel(), std::string(v->initializer()->bytes()));
  std::sort(out.begin(), out.end());
  return out;
}

// A size only 4-bit layers reach: compress AdaRounds the chosen 4-bit layers once (JSON and
// recipe say so) and their integers differ from the balanced rounding's, same size.
TEST(CompressCliTest, LowBitLayersAreAdaRounded) {
  TempDir dir;
  const std::string base = "compress " + quote(sourcePath("models/flatten_head.onnx")) +
                           dataFlags(300, 64) +
                           "--max-accuracy-drop 3 --target-size 6x --no-prune --json -o ";
  auto learned = runCli(base + quote(dir / "a.onnx") + " --save-recipe " + quote(dir / "r.json"));
  auto balanced = runCli(base + quote(dir / "b.onnx") + " --rounding balanced");
  ASSERT_EQ(learned.exit_code, 0) << learned.err;
  ASSERT_EQ(balanced.exit_code, 0) << balanced.err;
  const auto a = nlohmann::json::parse(learned.out), b = nlohmann::json::parse(balanced.out);
  EXPECT_EQ(a["rounding"], "adaround");
  EXPECT_GT(a["adaround_layers"].get<int>(), 0);
  EXPECT_EQ(b["rounding"], "balanced");
  EXPECT_EQ(b["adaround_layers"], 0);
  EXPECT_EQ(a["after"]["file_bytes"], b["after"]["file_bytes"]);
  EXPECT_NE(readText(dir / "r.json").find("\"rounding\": \"adaround\""), std::string::npos);
  const auto wa = int4Weights(dir / "a.onnx"), wb = int4Weights(dir / "b.onnx");
  ASSERT_FALSE(wa.empty());
  ASSERT_EQ(wa.size(), wb.size());
  int differ = 0;
  for (size_t i = 0; i < wa.size(); ++i) {
    EXPECT_EQ(wa[i].first, wb[i].first);
    differ += wa[i].second != wb[i].second;
  }
  EXPECT_EQ(differ, a["adaround_layers"].get<int>());
  EXPECT_EQ(runCli(base + quote(dir / "c.onnx") + " --rounding nearest").exit_code, 2);
}

TEST(CompressCliTest, ImpossibleTargetsExitOneAndWriteNothing) {
  TempDir dir;
  const auto out = dir / "small.onnx";
  auto r =
      runCli("compress " + quote(sourcePath("models/flatten_head.onnx")) + " -o " + quote(out) +
             dataFlags(200, 32) + "--max-accuracy-drop 0.5 --target-size 100 --no-prune --json");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(dir.fileCount(), 0u);
  EXPECT_NE(r.err.find("targets not met"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("closest"), std::string::npos) << r.err;
  const auto j = nlohmann::json::parse(r.out);  // the JSON still says how close it got
  EXPECT_FALSE(j["met"].get<bool>());
  EXPECT_TRUE(j["output"].is_null());

  // --keep-best writes the closest model anyway (and still exits 1).
  auto kept = runCli("compress " + quote(sourcePath("models/flatten_head.onnx")) + " -o " +
                     quote(out) + dataFlags(200, 32) +
                     "--max-accuracy-drop 0.5 --target-size 100 --no-prune --keep-best");
  EXPECT_EQ(kept.exit_code, 1) << kept.err;
  EXPECT_TRUE(std::filesystem::exists(out));
}

TEST(CompressCliTest, DryRunWritesNothing) {
  TempDir dir;
  const auto out = dir / "small.onnx";
  auto r = runCli("compress " + quote(sourcePath("models/resnet.onnx")) + " -o " + quote(out) +
                  dataFlags(100, 16) + "--max-accuracy-drop 1 --target-size 0.1 --dry-run --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["before"]["file_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(j["target_bytes"].get<int64_t>(), j["before"]["file_bytes"].get<int64_t>() / 10);
  EXPECT_EQ(dir.fileCount(), 0u);
}

// A regressor (one value per image: Conv, Relu, 1x1 Conv to one channel, the mean; its batch
// fixed at 2, as exporters often fix it) has no
// classes whose top-1 could agree with the original's (its one value always "agrees": compress
// once pruned such a model to nothing). Without labels it is measured by fidelity to the
// original, and the result keeps 99% of it (the demand of --max-accuracy-drop 1).
TEST(CompressCliTest, ModelsWithoutClassScoresAreMeasuredByFidelity) {
  TempDir dir;
  onnx::ModelProto proto;
  const auto parsed = onnx::OnnxParser::Parse(proto, R"(
    <ir_version: 8, opset_import: ["" : 13]>
    net (float[2, 1, 28, 28] x) => (float[2, 1] y)
    <float[8, 1, 3, 3] w = {1, 0, -1, 2, 0, -2, 1, 0, -1,   1, 2, 1, 0, 0, 0, -1, -2, -1,
                            0, 1, 0, 1, -4, 1, 0, 1, 0,     0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1,
                            -1, 0, 1, -2, 0, 2, -1, 0, 1,   -1, -2, -1, 0, 0, 0, 1, 2, 1,
                            0, -1, 0, -1, 4, -1, 0, -1, 0,  0.5, 0, 0, 0, 0.5, 0, 0, 0, 0.5},
     float[1, 8, 1, 1] v = {1, 0.5, 0.25, 2, 0.125, 1, 0.75, 0.05}>
    {
      c = Conv <pads = [1, 1, 1, 1]> (x, w)
      r = Relu (c)
      s = Conv (r, v)
      p = GlobalAveragePool (s)
      y = Flatten (p)
    }
  )");
  ASSERT_TRUE(parsed.IsOK()) << parsed.ErrorMessage();
  const auto model = dir / "regressor.onnx", out = dir / "small.onnx";
  testing::writeText(model, proto.SerializeAsString());
  const std::string data =
      " --data " + kData + "t10k-images-idx3-ubyte.gz --mean 0.2860 --std 0.3530";
  auto r = runCli("compress " + quote(model) + " -o " + quote(out) + data +
                  " --eval-size 200 --calib-size 64 --max-accuracy-drop 1 --target-size 1.2x "
                  "--no-quantize --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("no output holds class scores"), std::string::npos) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["quality"], "fidelity");
  EXPECT_DOUBLE_EQ(j["baseline"].get<double>(), 1.0);
  EXPECT_GE(j["final"].get<double>(), 0.99);
  EXPECT_LE(j["after"]["file_bytes"].get<int64_t>() * 1.2,
            j["before"]["file_bytes"].get<int64_t>());
  // eval measures the same fidelity on the same samples.
  auto e =
      runCli("eval " + quote(out) + " --reference " + quote(model) + data + " --limit 200 --json");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const auto k = nlohmann::json::parse(e.out);
  EXPECT_NEAR(k["fidelity"].get<double>(), j["final"].get<double>(), 1e-6);
  EXPECT_TRUE(k["agreement"].is_null());
  // Asked for agreement, it is refused (exit 3, one line saying why); fidelity with labels too.
  auto agreement =
      runCli("compress " + quote(model) + " -o " + quote(dir / "a.onnx") + data +
             " --eval-size 50 --max-accuracy-drop 1 --target-size 2x --quality agreement");
  EXPECT_EQ(agreement.exit_code, 3) << agreement.err;
  EXPECT_NE(agreement.err.find("regressor.onnx: no output holds class scores ('y' [2x1])"),
            std::string::npos)
      << agreement.err;
  EXPECT_EQ(agreement.err.find("error:"), agreement.err.rfind("error:")) << agreement.err;
  auto labelled = runCli("compress " + quote(model) + " -o " + quote(dir / "a.onnx") + data +
                         " --labels " + kData +
                         "t10k-labels-idx1-ubyte.gz --max-accuracy-drop 1 --target-size 2x "
                         "--quality fidelity");
  EXPECT_EQ(labelled.exit_code, 2) << labelled.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "a.onnx"));
}

TEST(CompressCliTest, UsageErrors) {
  const std::string model = quote(sourcePath("models/flatten_head.onnx"));
  EXPECT_EQ(runCli("compress " + model + " -o /tmp/x.onnx" + dataFlags(10, 10) +
                   "--max-accuracy-drop 1 --target-size 12Q")
                .exit_code,
            2);
  EXPECT_EQ(runCli("compress " + model + " -o /tmp/x.onnx" + dataFlags(10, 10) + "--target-size 4x")
                .exit_code,
            2);  // no --max-accuracy-drop
  auto same = runCli("compress " + model + " -o " + model + dataFlags(10, 10) +
                     "--max-accuracy-drop 1 --target-size 4x");
  EXPECT_EQ(same.exit_code, 2) << same.err;
}

}  // namespace
}  // namespace nnc
