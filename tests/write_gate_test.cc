// Issue 12: invalid input refused on load (exit 3), any opset in (conversion), and the
// validation gate before every write (exit 5, nothing on disk). Tiny models come from ONNX's
// text parser; the CLI cases drive the binary as scripts do.

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "nncompress/cli/commands.h"
#include "nncompress/data/npy.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/pipeline/write_gate.h"
#include "ort_util.h"
#include "test_util.h"

namespace nnc {
namespace {

using testing::quote;
using testing::runCli;
using testing::TempDir;

// Float tensors written with fewer values than their shape holds are completed with
// deterministic values, so the texts below stay short.
void completeTensor(onnx::TensorProto& t) {
  if (t.data_type() != onnx::TensorProto::FLOAT) return;
  int64_t numel = 1;
  for (int64_t d : t.dims()) numel *= d;
  for (int64_t i = t.float_data_size(); i < numel; ++i)
    t.add_float_data(0.5f * std::sin(0.7f * float(i) + 0.3f));
}

onnx::ModelProto parseProto(const char* text) {
  onnx::ModelProto proto;
  onnx::OnnxParser parser(text);
  const auto status = parser.Parse(proto);
  EXPECT_TRUE(status.IsOK()) << status.ErrorMessage();
  for (auto& t : *proto.mutable_graph()->mutable_initializer()) completeTensor(t);
  for (auto& n : *proto.mutable_graph()->mutable_node())
    for (auto& a : *n.mutable_attribute())
      if (a.has_t()) completeTensor(*a.mutable_t());
  return proto;
}

std::filesystem::path writeModel(const TempDir& dir, const std::string& name, const char* text) {
  const onnx::ModelProto proto = parseProto(text);
  const auto path = dir / name;
  testing::writeText(path, proto.SerializeAsString());
  return path;
}

int lineCount(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

// Error lines on stderr (info logs aside; exit 5 adds its fixed "please report" line).
int errorLines(const std::string& err) {
  int n = 0;
  std::istringstream in(err);
  for (std::string line; std::getline(in, line);)
    n += line.find(": error: ") != std::string::npos &&
         line.find("this is a bug in nncompress") == std::string::npos;
  return n;
}

// Only the input (and whatever the test put there itself) is in the folder: no output, no
// temp file, no .data file.
std::vector<std::string> filesIn(const TempDir& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// A Conv whose weight reads 5 channels from a 3-channel input.
const char* kConvReadsFiveOfThree = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  net (float[1, 3, 8, 8] x) => (float[1, 4, 8, 8] y) {
    w = Constant <value = float[4, 5, 3, 3] {0.5}> ()
    y = Conv <pads = [1, 1, 1, 1]> (x, w)
  }
)";

// Two convs; prunable channels between them.
const char* kTwoConvs = R"(
  <ir_version: 7, opset_import: ["" : 13]>
  net (float[1, 3, 8, 8] x) => (float[1, 4, 8, 8] y)
  <float[8, 3, 3, 3] w1 = {0.1}, float[8] b1 = {0.1}, float[4, 8, 1, 1] w2 = {0.2}>
  {
    c = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    r = Relu (c)
    y = Conv (r, w2)
  }
)";

const char* kOpset30 = R"(
  <ir_version: 8, opset_import: ["" : 30]>
  net (float[1, 2] x) => (float[1, 2] y) {
    y = Relu (x)
  }
)";

// A custom-domain op between two convs, carried through unchanged.
const char* kCustomOp = R"(
  <ir_version: 8, opset_import: ["" : 13, "com.example" : 1]>
  net (float[1, 3, 8, 8] x) => (float[1, 4, 8, 8] y)
  <float[8, 3, 3, 3] w1 = {0.1}, float[8] b1 = {0.1}, float[4, 8, 1, 1] w2 = {0.2}>
  {
    c = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    r = Relu (c)
    s = com.example.Swish (r)
    y = Conv (s, w2)
  }
)";

// Opset 9: Unsqueeze axes and Softmax's 2-D coercion both change by opset 13.
const char* kOpset9 = R"(
  <ir_version: 4, opset_import: ["" : 9]>
  net (float[1, 3, 8, 8] x) => (float[1, 1, 16] y)
  <float[4, 3, 3, 3] w = {0.1}, float[4] b = {0.1, 0.2, -0.1, 0},
   float[4] scale = {1.0, 0.5, 2.0, 1.5}, float[4] bias = {0.0, 0.1, -0.1, 0.2},
   float[4] mean = {0.05, 0.0, 0.1, -0.05}, float[4] var = {1.0, 0.5, 2.0, 0.8},
   int64[2] flat = {1, -1}>
  {
    c = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (x, w, b)
    n = BatchNormalization (c, scale, bias, mean, var)
    r = Relu (n)
    p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r)
    f = Reshape (p, flat)
    s = Softmax <axis = 1> (f)
    y = Unsqueeze <axes = [0]> (s)
  }
)";

// Produces NaN on the gate's sample input (values in [0, 1)).
const char* kNanOnSample = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  net (float[1, 4] x) => (float[1, 4] y) <float[1] two = {2.0}> {
    d = Sub (x, two)
    y = Log (d)
  }
)";

// A masked mean over tokens (a text model's pooling): finite unless the mask is all zero.
const char* kMaskedMean = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  net (float[1, 4] x, int64[1, 4] mask) => (float[1, 1] y) <int64[1] ax = {1}> {
    m = Cast <to = 1> (mask)
    xm = Mul (x, m)
    s = ReduceSum (xm, ax)
    n = ReduceSum (m, ax)
    y = Div (s, n)
  }
)";

// A Reshape whose constant target cannot hold its input (12 elements into 5 x 3).
const char* kBadReshape = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  net (float[1, 12] x) => (float[5, 3] y) <int64[2] target = {5, 3}> {
    y = Reshape (x, target)
  }
)";

Model parse(const char* text) {
  const onnx::ModelProto proto = parseProto(text);
  auto model = parseModel(proto.SerializeAsString());
  EXPECT_TRUE(model.isOk()) << model.status().toString();
  return std::move(model).value();
}

// ---- library: load, convert, gate ----

TEST(StrictLoad, ConvReadingMoreChannelsThanItsInputHasIsRefused) {
  const onnx::ModelProto proto = parseProto(kConvReadsFiveOfThree);
  LoadOptions strict;
  strict.strict = StrictLoad::kRefuse;
  auto refused = parseModel(proto.SerializeAsString(), {}, strict);
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidModel);
  EXPECT_NE(refused.status().message().find("reads 5 input channels"), std::string::npos)
      << refused.status().message();
  LoadOptions warn;
  warn.strict = StrictLoad::kWarn;
  LoadedModelInfo info;
  auto relaxed = parseModel(proto.SerializeAsString(), {}, warn, &info);
  ASSERT_TRUE(relaxed.isOk());
  EXPECT_NE(info.strict_finding.find("Conv"), std::string::npos);
}

TEST(StrictLoad, DeclaredOutputShapeThatInferenceContradictsIsRefused) {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 13]>
    net (float[2, 3] a, float[3, 4] b) => (float[2, 5] y) {
      y = MatMul (a, b)
    }
  )";
  const onnx::ModelProto proto = parseProto(text);
  LoadOptions strict;
  strict.strict = StrictLoad::kRefuse;
  auto refused = parseModel(proto.SerializeAsString(), {}, strict);
  ASSERT_FALSE(refused.isOk());
  EXPECT_NE(refused.status().message().find("MatMul"), std::string::npos)
      << refused.status().message();
  EXPECT_EQ(lineCount(refused.status().message()), 0);
}

// Pad-18 `axes` and Resize-18 `axes` list the axes pads/scales/sizes cover: 2 pads for one axis
// of a rank-4 input is valid.
TEST(StrictLoad, PadsAndScalesCoverTheListedAxesNotTheRank) {
  const char* valid[] = {
      R"(<ir_version: 8, opset_import: ["" : 18]>
         net (float[1, 3, 8, 8] x) => (float[1, 3, 8, 10] y)
         <int64[2] pads = {1, 1}, int64[1] axes = {3}> {
           y = Pad (x, pads, , axes)
         })",
      R"(<ir_version: 8, opset_import: ["" : 18]>
         net (float[1, 3, 8, 8] x) => (float[1, 3, 16, 16] y) <float[2] sc = {2.0, 2.0}> {
           y = Resize <axes = [2, 3]> (x, , sc)
         })",
      R"(<ir_version: 8, opset_import: ["" : 19]>
         net (float[1, 3, 8, 8] x) => (float[1, 3, 4, 4] y) <int64[2] sz = {4, 4}> {
           y = Resize <axes = [2, 3]> (x, , , sz)
         })",
  };
  LoadOptions strict;
  strict.strict = StrictLoad::kRefuse;
  for (const char* text : valid) {
    SCOPED_TRACE(text);
    auto m = parseModel(parseProto(text).SerializeAsString(), {}, strict);
    EXPECT_TRUE(m.isOk()) << m.status().toString();
  }
  // A length that disagrees with `axes` is still refused.
  const char* wrong = R"(<ir_version: 8, opset_import: ["" : 18]>
     net (float[1, 3, 8, 8] x) => (float[1, 3, 8, 10] y)
     <int64[4] pads = {1, 1, 1, 1}, int64[1] axes = {3}> {
       y = Pad (x, pads, , axes)
     })";
  auto refused = parseModel(parseProto(wrong).SerializeAsString(), {}, strict);
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidModel);
  EXPECT_NE(refused.status().message().find("pads has 4 values for 1 listed axes"),
            std::string::npos)
      << refused.status().message();
}

// A node without outputs (which --no-strict lets through) is named without reading an output.
TEST(StrictLoad, NodeWithoutOutputsIsNamedByItsOpType) {
  Model m = parse(R"(<ir_version: 8, opset_import: ["" : 13]>
    net (float[1, 12] x) => (float[1, 12] y) <int64[2] target = {5, 3}> {
      y = Relu (x)
    })");
  Graph& g = *m.graph;
  g.addNode("Reshape", {g.findValue("x"), g.findValue("target")}, {});
  const Status st = checkShapeInputs(m);
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("(Reshape)"), std::string::npos) << st.message();
}

TEST(StrictLoad, OpsetNewerThanAnyKnownIsUnsupported) {
  const onnx::ModelProto proto = parseProto(kOpset30);
  auto refused = parseModel(proto.SerializeAsString());  // whatever the strictness
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(refused.status().message().find("opset 30"), std::string::npos);
}

TEST(OpsetConversion, Opset9To13RaisesTheIrVersionAndRewritesChangedOps) {
  Model model = parse(kOpset9);
  ASSERT_EQ(model.opsetVersion(""), 9);
  ASSERT_TRUE(convertOpset(model, 13).isOk());
  EXPECT_EQ(model.opsetVersion(""), 13);
  EXPECT_GE(model.ir_version, 7);
  bool unsqueeze_takes_axes_input = false;
  for (const auto& n : model.graph->nodes())
    if (n->isOp("Unsqueeze")) unsqueeze_takes_axes_input = n->numInputs() == 2;
  EXPECT_TRUE(unsqueeze_takes_axes_input);
  EXPECT_EQ(irVersionForOpset(9), 4);
  EXPECT_EQ(irVersionForOpset(21), 10);
}

TEST(OpsetConversion, BeyondWhatLibonnxKnowsIsUnsupported) {
  Model model = parse(kOpset9);
  Status s = convertOpset(model, newestKnownOpset() + 1);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_EQ(model.opsetVersion(""), 9);  // untouched
}

TEST(WriteGate, AcceptsAValidModelAndRunsTheSample) {
  TempDir dir;
  Model model = parse(kTwoConvs);
  WriteGateReport report;
  ASSERT_TRUE(
      writeValidatedModel(model, dir / "ok.onnx", onnxModelFormat(), {}, {}, &report).isOk());
  EXPECT_TRUE(report.sample_run);
  EXPECT_TRUE(std::filesystem::exists(dir / "ok.onnx"));
  EXPECT_TRUE(checkModelFile(dir / "ok.onnx").isOk());
}

// Corruptions the gate must catch, each after a model that passed the loader.
struct Corruption {
  const char* name;
  const char* model;
  void (*corrupt)(Model&);
  const char* expected;  // in the one-line message
};

const Corruption kCorruptions[] = {
    {"weight_sliced_without_its_consumer", kTwoConvs,
     [](Model& m) {  // what a surgery bug looks like: w2 still reads 8 channels, w1 makes 6
       Value* w1 = m.graph->findValue("w1");
       std::vector<int64_t> keep = {0, 1, 2, 3, 4, 5};
       *w1->mutableInitializer() = w1->initializer()->gather(0, keep).value();
       Value* b1 = m.graph->findValue("b1");
       *b1->mutableInitializer() = b1->initializer()->gather(0, keep).value();
       ValueType t = m.graph->findValue("c")->type();
       (*t.shape)[1] = Dim::known(6);
       m.graph->findValue("c")->setType(t);
       m.graph->findValue("r")->setType(t);
     },
     "node"},
    {"reshape_target_that_cannot_hold_its_input", kTwoConvs,
     [](Model& m) {
       Value* y = m.graph->outputs()[0];
       Value* target =
           m.graph->addInitializer("bad_target", Tensor::fromVector<int64_t>({2}, {7, -1}));
       Node* reshape = m.graph->addNode("Reshape", {y, target}, {"flat"});
       ValueType t{DType::kFloat32, std::vector<Dim>{Dim::known(7), Dim::known(-1)}};
       reshape->output(0)->setType(t);
       m.graph->setOutput(0, reshape->output(0));
     },
     "Reshape"},
    {"declared_output_shape_the_run_contradicts", kTwoConvs,
     [](Model& m) {
       ValueType t = m.graph->outputs()[0]->type();
       (*t.shape)[2] = Dim::known(5);  // spatial: only the sample run sees it
       m.graph->outputs()[0]->setType(t);
     },
     "output 'y'"},
    {"output_of_an_unnamed_node_whose_first_output_is_omitted", kTwoConvs,
     [](Model& m) {  // the finding names the node by "?": it has neither name nor output 0
       Node* split = m.graph->addNode("Split", {m.graph->outputs()[0]}, {"", "half"});
       split->setAttribute(Attribute::makeInt("axis", 1));
       ValueType t{DType::kFloat32,
                   std::vector<Dim>{Dim::known(1), Dim::known(3), Dim::known(8), Dim::known(8)}};
       split->output(1)->setType(t);
       m.graph->setOutput(0, split->output(1));
     },
     "output 'half' of node '?' (Split)"},
    {"weight_turned_nan", kTwoConvs,
     [](Model& m) {
       m.graph->findValue("w2")->mutableInitializer()->mutableData<float>()[0] = std::nanf("");
     },
     "non-finite"},
    {"node_breaking_its_schema", kTwoConvs,
     [](Model& m) {  // passes our IR checks, the ONNX checker refuses it
       Node* relu = m.graph->findValue("r")->producer();
       relu->setAttribute(Attribute::makeInt("alpha", 1));
     },
     "ONNX checker"},
};

void PrintTo(const Corruption& c, std::ostream* os) { *os << c.name; }

class GateRejects : public ::testing::TestWithParam<Corruption> {};

TEST_P(GateRejects, WithAnInternalErrorAndNothingOnDisk) {
  const Corruption& c = GetParam();
  TempDir dir;
  Model model = parse(c.model);
  c.corrupt(model);
  SaveOptions save;
  save.external_data_threshold = 16;  // a .data file must not survive either
  Status s = writeValidatedModel(model, dir / "out.onnx", onnxModelFormat(), save);
  ASSERT_FALSE(s.isOk());
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.toString();
  EXPECT_NE(s.message().find(c.expected), std::string::npos) << s.message();
  EXPECT_EQ(lineCount(s.message()), 0) << s.message();
  EXPECT_TRUE(filesIn(dir).empty()) << filesIn(dir).front();
}

INSTANTIATE_TEST_SUITE_P(Cases, GateRejects, ::testing::ValuesIn(kCorruptions),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- the command line ----

struct WritingCommand {
  const char* name;
  const char* args;  // after MODEL -o OUT
};
const WritingCommand kWritingCommands[] = {
    {"convert", ""},
    {"prune", "--ratio 0.5"},
    {"quantize", "--format weights-only"},
};

std::string commandLine(const WritingCommand& c, const std::filesystem::path& in,
                        const std::filesystem::path& out) {
  return std::string(c.name) + " " + quote(in) + " -o " + quote(out) + " " + c.args;
}

TEST(CliStrictLoad, ConvReadingFiveOfThreeChannelsExits3NamingTheNode) {
  for (const WritingCommand& c : kWritingCommands) {
    TempDir dir;
    const auto in = writeModel(dir, "in.onnx", kConvReadsFiveOfThree);
    const auto r = runCli(commandLine(c, in, dir / "out.onnx"));
    EXPECT_EQ(r.exit_code, 3) << c.name << ": " << r.err;
    EXPECT_EQ(lineCount(r.err), 1) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find("in.onnx"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("(Conv)"), std::string::npos) << r.err;
    EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"}) << c.name;
  }
}

TEST(CliStrictLoad, NoStrictLoadsWithAWarningButTheGateStillWritesNothing) {
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kConvReadsFiveOfThree);
  const auto r = runCli("convert " + quote(in) + " -o " + quote(dir / "out.onnx") + " --no-strict");
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_EQ(r.exit_code, 3) << r.err;  // the input is invalid: not our bug
  EXPECT_NE(r.err.find("validation gate"), std::string::npos) << r.err;
  EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"});
}

TEST(CliStrictLoad, EvalAndRunRefuseTheInvalidModelAndReportWarns) {
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kConvReadsFiveOfThree);
  const auto data = dir / "x.npy";
  ASSERT_TRUE(data::writeNpy(data.string(), Tensor(DType::kFloat32, {2, 3, 8, 8})).isOk());
  for (const std::string& cmd :
       {"eval " + quote(in) + " --data " + quote(data),
        "run " + quote(in) + " --data " + quote(data) + " --output-dir " + quote(dir / "outs")}) {
    const auto r = runCli(cmd);
    EXPECT_EQ(r.exit_code, 3) << cmd << ": " << r.err;
    EXPECT_EQ(lineCount(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("(Conv)"), std::string::npos) << r.err;
  }
  const auto report = runCli("report " + quote(in));
  EXPECT_EQ(report.exit_code, 0) << report.err;
  EXPECT_NE(report.err.find("warning"), std::string::npos) << report.err;
  EXPECT_NE(report.err.find("(Conv)"), std::string::npos) << report.err;
}

// The sample is ours, shape tensors included (a Reshape target of zeros, Pad pads, Expand
// shapes): what goes wrong on it is not a finding when the input model shows the same. Found by
// tools/write_sweep.py: these node tests exited 5 from prune and convert.
TEST(CliGate, ShapeTensorInputsOnTheSampleAreNotFindings) {
  for (const char* name : {"test_reshape_negative_dim", "test_constant_pad",
                           "test_expand_dim_changed", "test_reduce_sum_keepdims_example"}) {
    const auto in = std::filesystem::path(NNC_TESTDATA_DIR) / "node" / name / "model.onnx";
    ASSERT_TRUE(std::filesystem::exists(in)) << in;
    for (const std::string& args : {std::string("convert"), std::string("prune --ratio 0.5")}) {
      TempDir dir;
      const auto out = dir / "out.onnx";
      const auto r =
          runCli(args.substr(0, args.find(' ')) + " " + quote(in) + " -o " + quote(out) +
                 (args.find(' ') == std::string::npos ? "" : args.substr(args.find(' '))));
      EXPECT_EQ(r.exit_code, 0) << name << " " << args << ": " << r.err;
      EXPECT_TRUE(std::filesystem::exists(out)) << name << " " << args;
    }
  }
}

TEST(CliStrictLoad, Opset30Exits3) {
  for (const WritingCommand& c : kWritingCommands) {
    TempDir dir;
    const auto in = writeModel(dir, "in.onnx", kOpset30);
    const auto r = runCli(commandLine(c, in, dir / "out.onnx"));
    EXPECT_EQ(r.exit_code, 3) << c.name << ": " << r.err;
    EXPECT_EQ(lineCount(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("opset 30"), std::string::npos) << r.err;
    EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"}) << c.name;
  }
}

TEST(CliGate, CustomDomainOpNeverExits5AndLeavesNoFileOnFailure) {
  for (const WritingCommand& c : kWritingCommands) {
    TempDir dir;
    const auto in = writeModel(dir, "in.onnx", kCustomOp);
    const auto r = runCli(commandLine(c, in, dir / "out.onnx"));
    EXPECT_NE(r.exit_code, 5) << c.name << ": " << r.err;
    if (r.exit_code == 0) {
      EXPECT_TRUE(checkModelFile(dir / "out.onnx").isOk()) << c.name;
      auto out = loadModel(dir / "out.onnx");
      ASSERT_TRUE(out.isOk()) << out.status().toString();
      EXPECT_EQ(out->opsetVersion("com.example"), 1);
    } else {
      EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"}) << c.name << ": " << r.err;
    }
  }
}

TEST(CliGate, CustomDomainOpThroughQdqQuantizeRefusesCleanlyOrWrites) {
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kCustomOp);
  Tensor calib(DType::kFloat32, {4, 3, 8, 8});
  ASSERT_TRUE(data::writeNpy((dir / "calib.npy").string(), calib).isOk());
  const auto r = runCli("quantize " + quote(in) + " -o " + quote(dir / "out.onnx") + " --calib " +
                        quote(dir / "calib.npy"));
  EXPECT_NE(r.exit_code, 5) << r.err;
  if (r.exit_code != 0) {
    EXPECT_EQ(errorLines(r.err), 1) << r.err;
    EXPECT_EQ(filesIn(dir), (std::vector<std::string>{"calib.npy", "in.onnx"})) << r.err;
  }
}

// Non-finite outputs on the gate's sample are a finding only when the model the output was made
// from gives finite ones: here the input itself gives NaN, so the gate notes it and writes.
TEST(CliGate, NonFiniteOutputTheInputModelAlsoGivesIsANoteNotAFinding) {
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kNanOnSample);
  const auto r = runCli("convert " + quote(in) + " -o " + quote(dir / "out.onnx"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("as the input model's is"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "out.onnx"));
}

// Integer inputs of the sample are 1 (ids and masks): an all-zero mask would make the masked
// mean 0 / 0, and a NaN output proves nothing about the written model.
TEST(CliGate, IntegerMaskInputsAreOnesSoTheSampleOutputIsFinite) {
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kMaskedMean);
  const auto r = runCli("convert " + quote(in) + " -o " + quote(dir / "out.onnx"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("non-finite"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "out.onnx"));
}

// The ONNX checker runs on load too (strict), so an input it refuses is exit 3, not a gate
// failure later.
TEST(CliStrictLoad, InputTheCheckerRefusesExits3) {
  TempDir dir;
  onnx::ModelProto proto = parseProto(kTwoConvs);
  proto.mutable_graph()->clear_name();  // the checker requires a graph name
  testing::writeText(dir / "in.onnx", proto.SerializeAsString());
  const auto r =
      runCli("prune " + quote(dir / "in.onnx") + " -o " + quote(dir / "out.onnx") + " --ratio 0.5");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("ONNX checker"), std::string::npos) << r.err;
  EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"});
}

TEST(CliStrictLoad, ReshapeTargetThatCannotHoldItsInputExits3) {
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kBadReshape);
  const auto r = runCli("convert " + quote(in) + " -o " + quote(dir / "out.onnx"));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("(Reshape)"), std::string::npos) << r.err;
  EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"});
}

TEST(CliOpset, ConvertToOpset13RunsInOrtWithTheSameOutputs) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kOpset9);
  const auto out = dir / "out.onnx";
  const auto r = runCli("convert " + quote(in) + " -o " + quote(out) + " --opset 13 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["opset"], 13);
  EXPECT_EQ(j["converted_from_opset"], 9);
  auto converted = loadModel(out);
  ASSERT_TRUE(converted.isOk()) << converted.status().toString();
  EXPECT_EQ(converted->opsetVersion(""), 13);
  EXPECT_GE(converted->ir_version, 7);
  EXPECT_TRUE(checkModelFile(out).isOk());
  Tensor x(DType::kFloat32, {1, 3, 8, 8});
  auto xs = x.mutableData<float>();
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = std::sin(0.37f * float(i));
  auto before = testing::runOrt(in, {{"x", x}}, dir);
  auto after = testing::runOrt(out, {{"x", x}}, dir);
  ASSERT_TRUE(before.isOk()) << before.status().message();
  ASSERT_TRUE(after.isOk()) << after.status().message();
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].shape(), (Shape{1, 1, 16}));
  EXPECT_LE(testing::relativeMaxError((*after)[0], (*before)[0]), 1e-6);
}

TEST(CliOpset, QuantizeConvertsAnOldOpsetAndSaysFromWhich) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kOpset9);
  Tensor calib(DType::kFloat32, {8, 3, 8, 8});
  auto cs = calib.mutableData<float>();
  for (size_t i = 0; i < cs.size(); ++i) cs[i] = std::cos(0.11f * float(i));
  ASSERT_TRUE(data::writeNpy((dir / "calib.npy").string(), calib).isOk());
  const auto out = dir / "out.onnx";
  const auto r = runCli("quantize " + quote(in) + " -o " + quote(out) + " --calib " +
                        quote(dir / "calib.npy") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["converted_from_opset"], 9);
  EXPECT_GE(j["opset"].get<int>(), 13);
  EXPECT_NE(r.err.find("converted the model from opset 9 to 13"), std::string::npos) << r.err;
  Tensor x(DType::kFloat32, {1, 3, 8, 8});
  auto ort = testing::runOrt(out, {{"x", x}}, dir);
  ASSERT_TRUE(ort.isOk()) << ort.status().message();
  EXPECT_EQ((*ort)[0].shape(), (Shape{1, 1, 16}));
}

// int4 weights need opset 21 / IR 10, which libonnx 1.12 cannot check: the gate says so, runs
// what it can, and ONNX Runtime is the validator.
TEST(CliOpset, Int4FromOpset9GoesTo21WithIr10AndRunsInOrt) {
  ASSERT_TRUE(testing::ortAvailable()) << "onnxruntime-node missing (npm ci)";
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kOpset9);
  const auto out = dir / "out.onnx";
  const auto r = runCli("quantize " + quote(in) + " -o " + quote(out) +
                        " --format weights-only --weight-bits 4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["converted_from_opset"], 9);
  EXPECT_EQ(j["opset"], 21);
  EXPECT_NE(r.err.find("cannot check this opset-21 model"), std::string::npos) << r.err;
  auto written = loadModel(out);
  ASSERT_TRUE(written.isOk()) << written.status().toString();
  EXPECT_EQ(written->opsetVersion(""), 21);
  EXPECT_EQ(written->ir_version, 10);
  Tensor x(DType::kFloat32, {1, 3, 8, 8});
  auto ort = testing::runOrt(out, {{"x", x}}, dir);
  ASSERT_TRUE(ort.isOk()) << ort.status().message();
  EXPECT_EQ((*ort)[0].shape(), (Shape{1, 1, 16}));
}

// A Conv with a 5-entry bias on 4 output channels: loading refuses it (the gate did, exit 5).
const char* kBiasLongerThanChannels = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  net (float[1, 3, 8, 8] x) => (float[1, 4, 8, 8] y)
  <float[4, 3, 3, 3] w = {0.1}, float[5] b = {0.1}>
  {
    y = Conv <pads = [1, 1, 1, 1]> (x, w, b)
  }
)";

TEST(CliStrictLoad, PerChannelParameterOfTheWrongLengthExits3NamingTheNode) {
  for (const WritingCommand& c : kWritingCommands) {
    TempDir dir;
    const auto in = writeModel(dir, "in.onnx", kBiasLongerThanChannels);
    const auto r = runCli(commandLine(c, in, dir / "out.onnx"));
    EXPECT_EQ(r.exit_code, 3) << c.name << ": " << r.err;
    EXPECT_EQ(lineCount(r.err), 1) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find("in.onnx"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("Conv 'y'"), std::string::npos) << r.err;
    EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"}) << c.name;
  }
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kBiasLongerThanChannels);
  const auto r = runCli("convert " + quote(in) + " -o " + quote(dir / "out.onnx") + " --no-strict");
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Conv 'y'"), std::string::npos) << r.err;
  EXPECT_EQ(r.exit_code, 3) << r.err;  // the gate still refuses it: the input was invalid
  EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"});
}

// Commands with a second output (--report): every path is checked before any work, so a
// report that cannot be written leaves no model behind.
const WritingCommand kReportingCommands[] = {
    {"prune", "--ratio 0.5"},
    {"quantize", "--format weights-only"},
};

TEST(CliOutputs, ReportInAMissingDirectoryExits4AndLeavesNoModel) {
  for (const WritingCommand& c : kReportingCommands) {
    TempDir dir;
    const auto in = writeModel(dir, "in.onnx", kTwoConvs);
    const auto r = runCli(commandLine(c, in, dir / "out.onnx") + " --report " +
                          quote(dir / "missing" / "r.html"));
    EXPECT_EQ(r.exit_code, 4) << c.name << ": " << r.err;
    EXPECT_EQ(lineCount(r.err), 1) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find("r.html"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
    EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"}) << c.name;
  }
}

TEST(CliOutputs, ReportCannotBeTheInputOrTheModel) {
  for (const WritingCommand& c : kReportingCommands) {
    TempDir dir;
    const auto in = writeModel(dir, "in.onnx", kTwoConvs);
    const std::string before = testing::readText(in);
    const auto onto_input = runCli(commandLine(c, in, dir / "out.onnx") + " --report " + quote(in));
    EXPECT_EQ(onto_input.exit_code, 2) << c.name << ": " << onto_input.err;
    EXPECT_EQ(lineCount(onto_input.err), 1) << onto_input.err;
    EXPECT_NE(onto_input.err.find("--report"), std::string::npos) << onto_input.err;
    EXPECT_EQ(testing::readText(in), before) << c.name << ": the input was overwritten";
    const auto onto_model =
        runCli(commandLine(c, in, dir / "out.onnx") + " --report " + quote(dir / "." / "out.onnx"));
    EXPECT_EQ(onto_model.exit_code, 2) << c.name << ": " << onto_model.err;
    EXPECT_EQ(lineCount(onto_model.err), 1) << onto_model.err;
    EXPECT_NE(onto_model.err.find("same file as -o"), std::string::npos) << onto_model.err;
    EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"}) << c.name;
  }
}

TEST(CliOutputs, UnknownExcludeOfQuantizeNamesTheModel) {
  TempDir dir;
  const auto in = writeModel(dir, "in.onnx", kTwoConvs);
  const auto r = runCli(
      commandLine({"quantize", "--format weights-only --exclude nosuch"}, in, dir / "out.onnx"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(lineCount(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("in.onnx: --exclude: excluded layer 'nosuch'"), std::string::npos) << r.err;
  EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"});
}

// compress: --save-recipe is an output like the others, and a recipe of the wrong shape is a
// usage error naming the file and the field (it was an uncaught JSON type error, exit 5).
const std::string kFashion = "/usr/share/datasets/fashion-mnist/";
std::string compressLine(const std::filesystem::path& in, const std::filesystem::path& out,
                         const std::string& extra) {
  return "compress " + quote(in) + " -o " + quote(out) + " --data " + kFashion +
         "t10k-images-idx3-ubyte.gz --labels " + kFashion +
         "t10k-labels-idx1-ubyte.gz --mean 0.2860 --std 0.3530 --eval-size 20 --calib-size 8 " +
         extra;
}

TEST(CliOutputs, CompressChecksItsRecipePaths) {
  TempDir dir;
  const auto in = dir / "in.onnx";
  std::filesystem::copy_file(testing::sourcePath("models/flatten_head.onnx"), in);
  const std::string before = testing::readText(in);
  const std::string targets = "--max-accuracy-drop 1 --target-size 2x ";
  const struct {
    std::string extra;
    int exit_code;
    const char* message;
  } cases[] = {
      {targets + "--save-recipe " + quote(in), 2, "--save-recipe"},
      {targets + "--save-recipe " + quote(dir / "out.onnx"), 2, "same file as -o"},
      {targets + "--report " + quote(dir / "r.html") + " --save-recipe " + quote(dir / "r.html"), 2,
       "same file as --report"},
      {targets + "--save-recipe " + quote(dir / "missing" / "r.json"), 4, "does not exist"},
      {"--recipe " + quote(dir / "nosuch.json"), 4, "nosuch.json"},
  };
  for (const auto& c : cases) {
    const auto r = runCli(compressLine(in, dir / "out.onnx", c.extra));
    EXPECT_EQ(r.exit_code, c.exit_code) << c.extra << "\n" << r.err;
    EXPECT_EQ(errorLines(r.err), 1) << c.extra << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.extra << "\n" << r.err;
    EXPECT_EQ(filesIn(dir), std::vector<std::string>{"in.onnx"}) << c.extra;
  }
  EXPECT_EQ(testing::readText(in), before);
}

TEST(CliOutputs, CompressRecipeOfTheWrongTypesIsAUsageErrorNamingTheField) {
  TempDir dir;
  const auto in = dir / "in.onnx";
  std::filesystem::copy_file(testing::sourcePath("models/flatten_head.onnx"), in);
  const auto recipe = dir / "recipe.json";
  const struct {
    const char* json;
    const char* field;
  } cases[] = {
      {R"({"nncompress_recipe": "1", "steps": []})", "nncompress_recipe"},
      {R"({"nncompress_recipe": 1, "steps": [{"prune": {"fraction": "half"}}]})", "fraction"},
      {R"({"nncompress_recipe": 1, "steps": [{"prune": {"fraction": 0.2, "method": 3}}]})",
       "method"},
      {R"({"nncompress_recipe": 1, "steps": [{"prune": [0.2]}]})", "prune"},
      {R"({"nncompress_recipe": 1, "steps": [{"quantize": {"layer_weight_bits": {"fc": "4"}}}]})",
       "fc"},
      {R"({"nncompress_recipe": 1, "steps": [{"quantize": {"layer_weight_bits": [4]}}]})",
       "layer_weight_bits"},
  };
  for (const auto& c : cases) {
    testing::writeText(recipe, c.json);
    const auto r = runCli(compressLine(in, dir / "out.onnx", "--recipe " + quote(recipe)));
    EXPECT_EQ(r.exit_code, 2) << c.json << "\n" << r.err;
    EXPECT_EQ(errorLines(r.err), 1) << c.json << "\n" << r.err;
    EXPECT_NE(r.err.find("recipe.json"), std::string::npos) << c.json << "\n" << r.err;
    EXPECT_NE(r.err.find(c.field), std::string::npos) << c.json << "\n" << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "out.onnx")) << c.json;
  }
}

// Relative spellings of one file are one file (the working directory is the test's).
TEST(CliOutputs, TwoSpellingsOfOneOutputPathAreRefused) {
  const Status same =
      cli::checkOutputPaths("in.onnx", {{"-o", "q.onnx"}, {"--report", "./q.onnx"}});
  EXPECT_EQ(same.code(), StatusCode::kInvalidArgument) << same.toString();
  EXPECT_NE(same.message().find("same file as -o"), std::string::npos) << same.message();
  const Status input = cli::checkOutputPaths("in.onnx", {{"--report", "./in.onnx"}});
  EXPECT_EQ(input.code(), StatusCode::kInvalidArgument) << input.toString();
  EXPECT_TRUE(cli::checkOutputPaths("in.onnx", {{"-o", "q.onnx"}, {"--report", ""}}).isOk());
}

// What prune/quantize/compress do when a write after the model's fails: the model goes again,
// with the OUT.data it wrote, but not an OUT.data it did not write.
TEST(CliOutputs, WrittenModelIsRemovedUnlessKept) {
  TempDir dir;
  const auto out = dir / "out.onnx";
  SaveOptions external;
  external.external_data_threshold = 8;
  {
    Model model = parse(kTwoConvs);
    cli::WrittenModel written(out.string());
    ASSERT_TRUE(written.write(model, {}, nullptr, external).isOk());
    EXPECT_EQ(filesIn(dir), (std::vector<std::string>{"out.onnx", "out.onnx.data"}));
  }
  EXPECT_TRUE(filesIn(dir).empty());
  {
    Model model = parse(kTwoConvs);
    cli::WrittenModel written(out.string());
    ASSERT_TRUE(written.write(model, {}, nullptr, external).isOk());
    written.keep();
  }
  EXPECT_EQ(filesIn(dir), (std::vector<std::string>{"out.onnx", "out.onnx.data"}));
  EXPECT_TRUE(checkModelFile(out).isOk());
  {
    Model model = parse(kTwoConvs);
    cli::WrittenModel written(out.string());
    ASSERT_TRUE(written.write(model, {}, nullptr).isOk());  // no external data this time
  }
  EXPECT_EQ(filesIn(dir), std::vector<std::string>{"out.onnx.data"});
  {
    Model model = parse(kTwoConvs);
    cli::WrittenModel never_written(out.string());
  }
  EXPECT_EQ(filesIn(dir), std::vector<std::string>{"out.onnx.data"});
}

}  // namespace
}  // namespace nnc
