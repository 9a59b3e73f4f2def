// The command line as scripts see it: exit codes, one clear stderr line naming the file, JSON on
// stdout, and no output file left behind when anything goes wrong.

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include <nlohmann/json.hpp>

#include "nncompress/data/npy.h"
#include "test_util.h"

namespace nnc {
namespace {

using testing::CommandResult;
using testing::quote;
using testing::runCli;
using testing::TempDir;

const char* kModel = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  net (float[1, 2, 4, 4] x) => (float[1, 2, 4, 4] y)
  <float[2, 2, 1, 1] w = {1.0, 0.0, 0.0, 1.0}, float[2] b = {0.5, -0.5}>
  {
    c = Conv (x, w, b)
    y = Relu (c)
  }
)";

onnx::ModelProto goodProto() {
  onnx::ModelProto proto;
  onnx::OnnxParser parser(kModel);
  EXPECT_TRUE(parser.Parse(proto).IsOK());
  return proto;
}

int lineCount(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

struct BadInput {
  const char* name;
  // Creates the input inside `dir` and returns its path.
  std::filesystem::path (*make)(const TempDir& dir);
  int exit_code;
  const char* message;
};

std::filesystem::path writeProto(const TempDir& dir, const onnx::ModelProto& p) {
  const auto path = dir / "in.onnx";
  testing::writeText(path, p.SerializeAsString());
  return path;
}

const BadInput kBadInputs[] = {
    {"missing_path", [](const TempDir& d) { return d / "does_not_exist.onnx"; }, 4, "cannot open"},
    {"directory",
     [](const TempDir& d) {
       std::filesystem::create_directory(d / "adir");
       return d / "adir";
     },
     4, "is a directory"},
    {"empty_file",
     [](const TempDir& d) {
       testing::writeText(d / "in.onnx", "");
       return d / "in.onnx";
     },
     3, "file is empty"},
    {"random_bytes",
     [](const TempDir& d) {
       std::string bytes(2000, '\0');
       uint32_t s = 7;
       for (char& c : bytes) c = static_cast<char>((s = s * 1103515245u + 12345u) >> 23);
       testing::writeText(d / "in.onnx", bytes);
       return d / "in.onnx";
     },
     3, "not a valid ONNX model"},
    {"truncated_model",
     [](const TempDir& d) {
       const std::string full = goodProto().SerializeAsString();
       testing::writeText(d / "in.onnx", full.substr(0, full.size() / 2));
       return d / "in.onnx";
     },
     3, "in.onnx"},
    {"short_initializer",
     [](const TempDir& d) {
       auto p = goodProto();
       p.mutable_graph()->mutable_initializer(0)->mutable_float_data()->RemoveLast();
       return writeProto(d, p);
     },
     3, "initializer 'w'"},
    {"undefined_input",
     [](const TempDir& d) {
       auto p = goodProto();
       p.mutable_graph()->mutable_node(1)->set_input(0, "ghost");
       return writeProto(d, p);
     },
     3, "input 'ghost' is not defined"},
    {"graph_cycle",
     [](const TempDir& d) {
       auto p = goodProto();
       p.mutable_graph()->mutable_node(0)->set_input(0, "y");
       return writeProto(d, p);
     },
     3, "cycle"},
    {"unknown_dtype",
     [](const TempDir& d) {
       auto p = goodProto();
       p.mutable_graph()->mutable_initializer(1)->set_data_type(77);
       return writeProto(d, p);
     },
     3, "unknown data type 77"},
};

void PrintTo(const BadInput& c, std::ostream* os) { *os << c.name; }

class CliBadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(CliBadInputTest, ReportAndConvertFailCleanly) {
  const BadInput& c = GetParam();
  TempDir dir;
  const auto input = c.make(dir);
  const bool input_existed = std::filesystem::is_regular_file(input);
  const std::string input_before = input_existed ? testing::readText(input) : "";
  const size_t files_before = dir.fileCount();

  CommandResult report = runCli("report " + quote(input));
  EXPECT_EQ(report.exit_code, c.exit_code) << report.err;
  EXPECT_EQ(lineCount(report.err), 1) << report.err;
  EXPECT_NE(report.err.find(input.string()), std::string::npos) << report.err;
  EXPECT_NE(report.err.find(c.message), std::string::npos) << report.err;
  EXPECT_TRUE(report.out.empty()) << report.out;

  CommandResult convert = runCli("convert " + quote(input) + " -o " + quote(dir / "out.onnx"));
  EXPECT_EQ(convert.exit_code, c.exit_code) << convert.err;
  EXPECT_EQ(lineCount(convert.err), 1) << convert.err;
  EXPECT_NE(convert.err.find(c.message), std::string::npos) << convert.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "out.onnx"));
  EXPECT_EQ(dir.fileCount(), files_before) << "a temp or output file was left behind";
  if (input_existed) {
    EXPECT_EQ(testing::readText(input), input_before) << "input was modified";
  }
}

INSTANTIATE_TEST_SUITE_P(BadInputs, CliBadInputTest, ::testing::ValuesIn(kBadInputs),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(CliTest, ReportJsonHasTheContractFields) {
  TempDir dir;
  const auto input = writeProto(dir, goodProto());
  CommandResult r = runCli("report --json " + quote(input));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["params"], 6);
  EXPECT_EQ(j["macs"], 2 * 4 * 4 * 2);
  EXPECT_EQ(j["file_bytes"], static_cast<int64_t>(std::filesystem::file_size(input)));
  ASSERT_EQ(j["layers"].size(), 1u);
  EXPECT_EQ(j["layers"][0]["op"], "Conv");
  EXPECT_EQ(j["layers"][0]["params"], 6);
  EXPECT_EQ(j["layers"][0]["macs"], 64);
  EXPECT_EQ(j["inputs"][0]["shape"], nlohmann::json({1, 2, 4, 4}));
  EXPECT_EQ(j["op_histogram"]["Relu"], 1);
  EXPECT_EQ(j["opsets"][0]["version"], 13);
}

TEST(CliTest, ReportTextIsATable) {
  TempDir dir;
  const auto input = writeProto(dir, goodProto());
  CommandResult r = runCli("report " + quote(input));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Input      x: float32[1,2,4,4]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("params        6 (6)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("MACs          64 (64) per sample"), std::string::npos) << r.out;
}

TEST(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(runCli("").exit_code, 2);
  EXPECT_EQ(runCli("frobnicate").exit_code, 2);
  EXPECT_EQ(runCli("report").exit_code, 2);
  EXPECT_EQ(runCli("report --no-such-flag x.onnx").exit_code, 2);
}

TEST(CliTest, HelpAndVersion) {
  CommandResult help = runCli("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("report"), std::string::npos);
  EXPECT_NE(help.out.find("Exit codes"), std::string::npos);
  CommandResult sub = runCli("report --help");
  EXPECT_EQ(sub.exit_code, 0);
  EXPECT_NE(sub.out.find("--json"), std::string::npos);
  CommandResult version = runCli("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.out.find("nncompress "), std::string::npos);
}

TEST(CliTest, PruneSaysWhyAModelHasNothingPrunable) {
  // The Conv's channels are the graph output's. A MAC or parameter target is unmet (exit 1,
  // nothing written); a ratio of no channels is met, with a warning that says why.
  TempDir dir;
  const auto input = writeProto(dir, goodProto());
  const auto out = dir / "out.onnx";
  const char* why =
      "nothing can be pruned: none of its 1 channel groups is prunable; the first: "
      "graph output 'y'";
  for (const char* target : {"--target-macs 0.5", "--target-params 0.9"}) {
    CommandResult r = runCli("prune " + quote(input) + " -o " + quote(out) + " " + target);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(lineCount(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(why), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(out));
  }
  CommandResult r = runCli("prune " + quote(input) + " -o " + quote(out) + " --ratio 0.5");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(why), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(out));
}

TEST(CliTest, ReportCountsMacsAtTheInputShapeGiven) {
  // A 3x3 Conv 2 -> 2 on [N, 2, H, W]: 18 MACs per output element, H and W symbolic.
  TempDir dir;
  onnx::ModelProto proto;
  onnx::OnnxParser parser(R"(<ir_version: 8, opset_import: ["" : 13]>
    net (float[N, 2, H, W] x) => (float[N, 2, H, W] y)
    <float[2, 2, 3, 3] w = {1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0,
      0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0,
      1.0, 0.0, 0.0, 1.0}>
    { y = Conv <pads = [1, 1, 1, 1]> (x, w) })");
  ASSERT_TRUE(parser.Parse(proto).IsOK());
  const auto input = writeProto(dir, proto);
  auto macsOf = [&](const std::string& flags) {
    CommandResult r = runCli("report " + quote(input) + " --json" + flags);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  };
  const auto at1 = macsOf("");
  EXPECT_EQ(at1["macs"], 2 * 18);
  EXPECT_EQ(at1["macs_symbolic_input_dims"], "x: H, W");
  const auto at8x6 = macsOf(" --input-shape 1x2x8x6");
  EXPECT_EQ(at8x6["macs"], 8 * 6 * 2 * 18);
  EXPECT_FALSE(at8x6.contains("macs_symbolic_input_dims"));
  EXPECT_EQ(macsOf(" --input-shape x=4x2x8x6")["macs"], 8 * 6 * 2 * 18) << "per sample";
  CommandResult text = runCli("report " + quote(input));
  EXPECT_NE(text.out.find("symbolic input dims counted as 1: x: H, W"), std::string::npos);
  for (const char* bad :
       {"1x3x8x8", "1x2x8", "y=1x2x8x8", "1x2x0x8", "1x2xax8", "1x2x99999999999x8"}) {
    CommandResult r = runCli("report " + quote(input) + " --input-shape " + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_EQ(lineCount(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("--input-shape '"), std::string::npos) << r.err;
  }
}

// Weights 0.1, 0.2, ... 0.9, 0.1, ... (no two channels alike).
std::string cycleWeights(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(0.1 * (i * 7 % 9 + 1));
  return s;
}

TEST(CliTest, PruneCountsMacsAtTheInputSizeAndKeepsItSymbolic) {
  // A full-resolution 3x3 Conv, then a stride-4 one: at 1x1 both count alike, at 16x12 the first
  // holds most MACs. Only running the model shows the second's output is [N, 4, H/4, W/4].
  TempDir dir;
  onnx::ModelProto proto;
  onnx::OnnxParser parser((R"(<ir_version: 8, opset_import: ["" : 13]>
    net (float[N, 2, H, W] x) => (float[N, 2, ?, ?] y)
    <float[4, 2, 3, 3] w1 = {)" +
                           cycleWeights(72) + R"(}, float[4, 4, 3, 3] w2 = {)" + cycleWeights(144) +
                           R"(}, float[2, 4, 1, 1] w3 = {)" + cycleWeights(8) + R"(}> {
      c1 = Conv<pads = [1, 1, 1, 1]>(x, w1)
      r1 = Relu(c1)
      c2 = Conv<pads = [1, 1, 1, 1], strides = [4, 4]>(r1, w2)
      r2 = Relu(c2)
      y = Conv(r2, w3)
    })")
                              .c_str());
  ASSERT_TRUE(parser.Parse(proto).IsOK());
  const auto input = writeProto(dir, proto);
  auto reportMacs = [&](const std::filesystem::path& model) {
    CommandResult r = runCli("report " + quote(model) + " --json --input-shape 1x2x16x12");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false)["macs"];
  };
  const auto out = dir / "pruned.onnx";
  const std::string prune = "prune " + quote(input) + " -o " + quote(out) +
                            " --target-macs 0.5 --allocation global --json";
  CommandResult r = runCli(prune + " --input-shape 1x2x16x12");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("MACs are counted at x: H=16, W=12 (--input-shape)"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("warn"), std::string::npos) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_EQ(j["macs_counted_at"], "x: H=16, W=12");
  EXPECT_EQ(j["before"]["macs"], reportMacs(input));
  EXPECT_EQ(j["after"]["macs"], reportMacs(out));
  EXPECT_LE(j["after"]["macs"].get<double>(), 0.5 * j["before"]["macs"].get<double>());
  CommandResult types = runCli("report " + quote(out) + " --json");
  EXPECT_EQ(nlohmann::json::parse(types.out, nullptr, false)["inputs"][0]["shape"],
            nlohmann::json::parse(R"(["N", 2, "H", "W"])"))
      << types.out;

  // The data's sample size is the default; without either, a MAC target warns.
  const auto samples = dir / "x.npy";
  Tensor t(DType::kFloat32, {3, 2, 16, 12});
  for (float& v : t.mutableData<float>()) v = 0.5f;
  ASSERT_TRUE(data::writeNpy(samples.string(), t).isOk());
  CommandResult d = runCli(prune + " --method contribution --data " + quote(samples));
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_NE(d.err.find("x: H=16, W=12 (the data's sample size)"), std::string::npos) << d.err;
  EXPECT_EQ(nlohmann::json::parse(d.out, nullptr, false)["before"]["macs"], reportMacs(input));
  CommandResult at1 = runCli(prune);
  ASSERT_EQ(at1.exit_code, 0) << at1.err;
  EXPECT_NE(at1.err.find("symbolic input dims at 1 (x: H, W)"), std::string::npos) << at1.err;
  EXPECT_FALSE(nlohmann::json::parse(at1.out, nullptr, false).contains("macs_counted_at"));
}

TEST(CliTest, ConvertNeverOverwritesItsInput) {
  TempDir dir;
  const auto input = writeProto(dir, goodProto());
  const std::string before = testing::readText(input);
  CommandResult r = runCli("convert " + quote(input) + " -o " + quote(input));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("never overwrites its input"), std::string::npos) << r.err;
  EXPECT_EQ(testing::readText(input), before);
}

TEST(CliTest, ConvertToExternalDataAndBack) {
  TempDir dir;
  const auto input = writeProto(dir, goodProto());
  CommandResult ext =
      runCli("convert --json --external-data 8 " + quote(input) + " -o " + quote(dir / "ext.onnx"));
  ASSERT_EQ(ext.exit_code, 0) << ext.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "ext.onnx.data"));
  EXPECT_EQ(nlohmann::json::parse(ext.out)["output"], (dir / "ext.onnx").string());
  CommandResult back =
      runCli("convert " + quote(dir / "ext.onnx") + " -o " + quote(dir / "back.onnx"));
  ASSERT_EQ(back.exit_code, 0) << back.err;
  // The same bytes as a direct re-export (typed fields in the input become raw_data).
  ASSERT_EQ(runCli("convert " + quote(input) + " -o " + quote(dir / "direct.onnx")).exit_code, 0);
  EXPECT_EQ(testing::readText(dir / "back.onnx"), testing::readText(dir / "direct.onnx"));
}

TEST(CliTest, UnwritableOutputIsAnIoErrorWithNothingWritten) {
  TempDir dir;
  const auto input = writeProto(dir, goodProto());
  CommandResult r =
      runCli("convert " + quote(input) + " -o " + quote(dir / "missing_dir" / "o.onnx"));
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(lineCount(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  EXPECT_EQ(dir.fileCount(), 1u);
}

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {

TEST(RunCliTest, WritesOneNpyPerOutputAndBatch) {
  testing::TempDir dir;
  const auto out = dir / "outputs";
  auto r = testing::runCli(
      "run " + testing::quote(testing::sourcePath("models/flatten_head.onnx")) +
      " --data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --mean 0.2860 --std "
      "0.3530 --limit 40 --batch 32 --output-dir " +
      testing::quote(out) + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["samples"], 40);
  ASSERT_EQ(j["files"].size(), 2u);  // batches of 32 and 8
  for (const auto& f : j["files"]) {
    ASSERT_TRUE(std::filesystem::exists(f.get<std::string>())) << f;
    EXPECT_GT(std::filesystem::file_size(f.get<std::string>()), 128u);
  }
  // The second batch holds 8 samples x 10 logits: a 128-byte-aligned header plus 320 bytes.
  EXPECT_EQ(std::filesystem::file_size(j["files"][1].get<std::string>()), 128u + 8 * 10 * 4);
}

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {

const std::string kFashionTest =
    " --data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --labels "
    "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz --mean 0.2860 --std 0.3530";

// --data-range slices the data and its labels alike: the last 100 test images are scored
// against their own labels (misaligned labels would give about 10%).
TEST(DataRangeCliTest, EvalOnASliceUsesTheSliceOfTheLabels) {
  const std::string model = quote(testing::sourcePath("models/flatten_head.onnx"));
  auto tail = runCli("eval " + model + kFashionTest + " --data-range 9900:10000 --json");
  ASSERT_EQ(tail.exit_code, 0) << tail.err;
  const auto j = nlohmann::json::parse(tail.out);
  EXPECT_EQ(j["count"], 100);
  EXPECT_GT(j["top1"].get<double>(), 0.8);
  // 0:100 is --limit 100.
  auto head = runCli("eval " + model + kFashionTest + " --data-range :100 --json");
  auto limit = runCli("eval " + model + kFashionTest + " --limit 100 --json");
  ASSERT_EQ(head.exit_code, 0) << head.err;
  ASSERT_EQ(limit.exit_code, 0) << limit.err;
  EXPECT_EQ(nlohmann::json::parse(head.out)["top1"], nlohmann::json::parse(limit.out)["top1"]);
  EXPECT_EQ(nlohmann::json::parse(head.out)["count"], 100);
}

TEST(DataRangeCliTest, BadRangesAreUsageErrorsOnOneLine) {
  testing::TempDir dir;
  const std::string model = quote(testing::sourcePath("models/flatten_head.onnx"));
  const struct {
    std::string args;
    const char* message;
  } cases[] = {
      {"eval " + model + kFashionTest + " --data-range 5:3", "--data-range: '5:3' is not a range"},
      {"eval " + model + kFashionTest + " --data-range 10", "--data-range: '10' is not a range"},
      {"eval " + model + kFashionTest + " --data-range 0:20000",
       "t10k-images-idx3-ubyte.gz: range 0:20000 does not fit the 10000 samples"},
      {"quantize " + model + " -o " + quote(dir / "q.onnx") +
           " --calib /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --calib-range "
           "9000:12000",
       "range 9000:12000 does not fit the 10000 samples"},
      {"quantize " + model + " -o " + quote(dir / "q.onnx") +
           " --calib /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --calib-range x:",
       "--calib-range: 'x:' is not a range"},
      {"compress " + model + " -o " + quote(dir / "c.onnx") + kFashionTest +
           " --calib-range 0:0 --max-accuracy-drop 1 --target-size 2x",
       "--calib-range: '0:0' is not a range"},
      {"prune " + model + " -o " + quote(dir / "p.onnx") +
           " --ratio 0.5 --method activation --data "
           "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --data-range 10000:",
       "range 10000: does not fit the 10000 samples"},
  };
  for (const auto& c : cases) {
    CommandResult r = runCli(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.err;
    EXPECT_EQ(lineCount(r.err), 1) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
  }
  EXPECT_EQ(dir.fileCount(), 0u);
}

TEST(DataRangeCliTest, ADataErrorNamesItsPathOnce) {
  testing::TempDir dir;
  for (const char* image : {"camera.png", "chelsea.png"})  // 512x512 and 300x451
    std::filesystem::copy_file(std::string("/usr/lib/python3/dist-packages/skimage/data/") + image,
                               dir / image);
  CommandResult r = runCli("eval " + quote(testing::sourcePath("models/flatten_head.onnx")) +
                           " --data " + quote(dir.path()));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(lineCount(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(dir.path().string() + ": images differ in size"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find(dir.path().string() + ": " + dir.path().string()), std::string::npos)
      << r.err;
}

TEST(DataRangeCliTest, DataFlagTyposAreUsageErrorsBeforeTheModelIsRead) {
  // The model path does not exist: the flag is reported, not the model, and nothing runs.
  const std::string missing = quote(std::string(NNC_SOURCE_DIR) + "/models/no_such_model.onnx");
  const struct {
    std::string args;
    const char* message;
  } cases[] = {
      {"eval " + missing + " --data x --size 64,64", "--size: '64,64': expected HxW"},
      {"compress " + missing +
           " -o out.onnx --data x --mean 0.5,a --max-accuracy-drop 1 "
           "--target-size 2x",
       "--mean: '0.5,a'"},
      {"quantize " + missing + " -o out.onnx --calib x --channels rbg", "--channels: 'rbg'"},
      {"finetune " + missing + " -o out.onnx --teacher t.onnx --data x --val x --val-range 3",
       "--val-range: '3' is not a range"},
  };
  for (const auto& c : cases) {
    CommandResult r = runCli(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.err;
    EXPECT_EQ(lineCount(r.err), 1) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(r.err.find("no_such_model"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace nnc
