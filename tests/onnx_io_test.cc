#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>
#include <sys/stat.h>

#include "nncompress/ir/printer.h"
#include "nncompress/ir/shape_fold.h"
#include "nncompress/ir/verify.h"
#include "nncompress/onnx_io/file_util.h"
#include "nncompress/onnx_io/model_io.h"
#include "test_util.h"

namespace nnc {
namespace {

using testing::TempDir;

onnx::ModelProto parseText(const char* text) {
  onnx::ModelProto proto;
  onnx::OnnxParser parser(text);
  auto status = parser.Parse(proto);
  EXPECT_TRUE(status.IsOK()) << status.ErrorMessage();
  return proto;
}

const char* kConvModel = R"(
  <ir_version: 8, opset_import: ["" : 13, "custom.domain" : 1], producer_name: "unit-test">
  convnet (float[N, 2, 5, 5] x) => (float[N, 3, 5, 5] y)
  <float[3, 2, 3, 3] w = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, float[3] b = {1.0, 2.0, 3.0}>
  {
    c = Conv <pads = [1, 1, 1, 1], kernel_shape = [3, 3]> (x, w, b)
    s = Constant <value = float[3, 1, 1] {1.0, 2.0, 3.0}> ()
    m = Mul (c, s)
    u = custom.domain.MyOp <alpha = 0.25> (m)
    y = Relu (u)
  }
)";

StatusOr<Model> loadText(const char* text, const LoadOptions& options = {}) {
  return parseModel(parseText(text).SerializeAsString(), {}, options);
}

TEST(OnnxIoTest, LoadsGraphWithLinksAndShapes) {
  auto model = loadText(kConvModel);
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  const Graph& g = *model->graph;
  EXPECT_TRUE(verifyModel(*model).isOk());
  EXPECT_EQ(g.numNodes(), 5u);
  EXPECT_EQ(model->producer_name, "unit-test");
  EXPECT_EQ(model->opsetVersion("custom.domain"), 1);
  Value* c = g.findValue("c");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->producer()->opType(), "Conv");
  ASSERT_EQ(c->uses().size(), 1u);
  EXPECT_EQ(c->uses()[0].node->opType(), "Mul");
  // ONNX shape inference gave the Conv output a shape with the symbolic batch kept.
  ASSERT_TRUE(c->type().shape.has_value());
  EXPECT_EQ(c->type().toString(), "float32[N,3,5,5]");
  // Constant-held weights are weights.
  ASSERT_NE(g.findValue("s")->constantData(), nullptr);
  EXPECT_EQ(g.findValue("s")->constantData()->shape(), (Shape{3, 1, 1}));
}

TEST(OnnxIoTest, RoundTripKeepsEverythingAndPassesChecker) {
  onnx::ModelProto proto = parseText(kConvModel);
  auto* meta = proto.add_metadata_props();
  meta->set_key("author");
  meta->set_value("me");
  proto.set_doc_string("model doc");
  proto.mutable_graph()->mutable_node(0)->set_doc_string("conv doc");
  auto* vi = proto.mutable_graph()->add_value_info();
  vi->set_name("m");
  vi->mutable_type()->mutable_tensor_type()->set_elem_type(1);
  auto* fn = proto.add_functions();
  fn->set_name("MyOp");
  fn->set_domain("custom.domain");
  TempDir dir;
  auto model = parseModel(proto.SerializeAsString());
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  ASSERT_TRUE(saveModel(*model, dir / "out.onnx").isOk());
  auto again = loadModel(dir / "out.onnx");
  ASSERT_TRUE(again.isOk()) << again.status().toString();
  EXPECT_EQ(printModel(*model), printModel(*again));
  EXPECT_EQ(again->metadata_props, model->metadata_props);
  EXPECT_EQ(again->doc_string, "model doc");
  EXPECT_EQ(again->graph->nodes()[0]->docString(), "conv doc");
  EXPECT_EQ(again->functions.size(), 1u);
  EXPECT_TRUE(again->graph->findValue("m")->listedInValueInfo());
  EXPECT_FALSE(again->graph->findValue("c")->listedInValueInfo());
  // The custom op is kept as it was.
  const Node* custom = again->graph->findValue("u")->producer();
  EXPECT_EQ(custom->domain(), "custom.domain");
  EXPECT_FLOAT_EQ(custom->floatAttr("alpha", 0), 0.25f);
  // No temp files left beside the output.
  EXPECT_EQ(dir.fileCount(), 1u);
}

TEST(OnnxIoTest, ExternalDataSaveAndLoad) {
  TempDir dir;
  auto model = loadText(kConvModel);
  ASSERT_TRUE(model.isOk());
  SaveOptions opts;
  opts.external_data_threshold = 16;  // w (216 bytes) goes out, b (12 bytes) stays
  ASSERT_TRUE(saveModel(*model, dir / "ext.onnx", opts).isOk());
  ASSERT_TRUE(std::filesystem::exists(dir / "ext.onnx.data"));
  EXPECT_EQ(std::filesystem::file_size(dir / "ext.onnx.data"), 216u);
  onnx::ModelProto raw;
  ASSERT_TRUE(raw.ParseFromString(testing::readText(dir / "ext.onnx")));
  EXPECT_EQ(raw.graph().initializer(0).data_location(), onnx::TensorProto::EXTERNAL);
  EXPECT_EQ(raw.graph().initializer(1).data_location(), onnx::TensorProto::DEFAULT);
  LoadedModelInfo info;
  auto again = loadModel(dir / "ext.onnx", {}, &info);
  ASSERT_TRUE(again.isOk()) << again.status().toString();
  EXPECT_EQ(info.external_data_bytes, 216);
  EXPECT_EQ(printModel(*model), printModel(*again));
  EXPECT_TRUE(checkModelFile(dir / "ext.onnx").isOk())
      << checkModelFile(dir / "ext.onnx").toString();
  // A missing data file is an I/O error naming it.
  std::filesystem::remove(dir / "ext.onnx.data");
  auto missing = loadModel(dir / "ext.onnx");
  ASSERT_FALSE(missing.isOk());
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
  EXPECT_NE(missing.status().message().find("ext.onnx.data"), std::string::npos);
}

TEST(OnnxIoTest, ExternalDataLocationMayNotEscapeTheFolder) {
  onnx::ModelProto proto = parseText(kConvModel);
  auto* init = proto.mutable_graph()->mutable_initializer(0);
  init->clear_float_data();
  init->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* e = init->add_external_data();
  e->set_key("location");
  e->set_value("../../etc/passwd");
  auto model = parseModel(proto.SerializeAsString(), "/tmp");
  ASSERT_FALSE(model.isOk());
  EXPECT_NE(model.status().message().find("leaves the model's folder"), std::string::npos);
}

TEST(OnnxIoTest, SubgraphOuterReferencesBecomeImplicitInputs) {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (bool cond, float[2] a) => (float[2] out)
    {
      k = Neg (a)
      out = If (cond) <
        then_branch = then_g () => (float[2] t) { t = Identity (k) },
        else_branch = else_g () => (float[2] e) { e = Abs (a) }>
    }
  )";
  auto model = loadText(text);
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  const Node* if_node = model->graph->findValue("out")->producer();
  ASSERT_EQ(if_node->implicitInputs().size(), 2u);
  EXPECT_EQ(if_node->implicitInputs()[0]->name(), "k");
  // The If must stay after Neg, and Neg cannot be removed as dead.
  EXPECT_EQ(model->graph->removeDeadNodes(), 0u);
  TempDir dir;
  ASSERT_TRUE(saveModel(*model, dir / "if.onnx").isOk());
  EXPECT_TRUE(checkModelFile(dir / "if.onnx").isOk()) << checkModelFile(dir / "if.onnx").toString();
  auto again = loadModel(dir / "if.onnx");
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(printModel(*model), printModel(*again));
}

TEST(OnnxIoTest, NodesOutOfOrderAreSorted) {
  onnx::ModelProto proto = parseText(kConvModel);
  auto* nodes = proto.mutable_graph()->mutable_node();
  nodes->SwapElements(0, 4);  // Relu first, Conv last
  auto model = parseModel(proto.SerializeAsString());
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  EXPECT_EQ(model->graph->nodes().front()->opType(), "Constant");
  EXPECT_EQ(model->graph->nodes().back()->opType(), "Relu");
}

// ---- malformed models: each is a clear error, never a crash ----

struct BadCase {
  const char* name;
  void (*mutate)(onnx::ModelProto&);
  StatusCode code;
  const char* message;
};

const BadCase kBadCases[] = {
    {"short_initializer",
     [](onnx::ModelProto& p) {
       p.mutable_graph()->mutable_initializer(1)->mutable_float_data()->RemoveLast();
     },
     StatusCode::kInvalidModel, "initializer 'b'"},
    {"short_raw_initializer",
     [](onnx::ModelProto& p) {
       auto* t = p.mutable_graph()->mutable_initializer(1);
       t->clear_float_data();
       t->set_raw_data(std::string(8, '\0'));
     },
     StatusCode::kInvalidModel, "has 8 bytes of data but its shape needs 12"},
    {"undefined_input",
     [](onnx::ModelProto& p) { p.mutable_graph()->mutable_node(2)->set_input(0, "nowhere"); },
     StatusCode::kInvalidModel, "input 'nowhere' is not defined"},
    {"cycle", [](onnx::ModelProto& p) { p.mutable_graph()->mutable_node(0)->set_input(0, "y"); },
     StatusCode::kInvalidModel, "cycle"},
    {"unknown_dtype",
     [](onnx::ModelProto& p) { p.mutable_graph()->mutable_initializer(0)->set_data_type(99); },
     StatusCode::kInvalidModel, "unknown data type 99"},
    {"duplicate_output",
     [](onnx::ModelProto& p) { p.mutable_graph()->mutable_node(2)->set_output(0, "c"); },
     StatusCode::kInvalidModel, "already defined"},
    {"no_graph", [](onnx::ModelProto& p) { p.clear_graph(); }, StatusCode::kInvalidModel,
     "no graph"},
    {"negative_dim",
     [](onnx::ModelProto& p) { p.mutable_graph()->mutable_initializer(1)->set_dims(0, -3); },
     StatusCode::kInvalidModel, "invalid dims"},
    {"missing_graph_output",
     [](onnx::ModelProto& p) { p.mutable_graph()->mutable_output(0)->set_name("zzz"); },
     StatusCode::kInvalidModel, "graph output 'zzz'"},
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class BadModelTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadModelTest, IsRejectedWithClearMessage) {
  const BadCase& c = GetParam();
  onnx::ModelProto proto = parseText(kConvModel);
  c.mutate(proto);
  auto model = parseModel(proto.SerializeAsString());
  ASSERT_FALSE(model.isOk()) << c.name;
  EXPECT_EQ(model.status().code(), c.code) << model.status().toString();
  EXPECT_NE(model.status().message().find(c.message), std::string::npos)
      << model.status().message();
}

INSTANTIATE_TEST_SUITE_P(Malformed, BadModelTest, ::testing::ValuesIn(kBadCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(OnnxIoTest, GarbageAndTruncatedBytes) {
  const std::string good = parseText(kConvModel).SerializeAsString();
  EXPECT_FALSE(parseModel("").isOk());
  std::string garbage(4096, '\0');
  uint32_t state = 12345;
  for (char& ch : garbage) ch = static_cast<char>((state = state * 1664525u + 1013904223u) >> 24);
  EXPECT_EQ(parseModel(garbage).status().code(), StatusCode::kInvalidModel);
  // Every truncation is rejected or loads into a graph that verifies: never a crash.
  for (size_t len = 1; len < good.size(); len += 7) {
    auto m = parseModel(good.substr(0, len));
    if (m.isOk()) {
      EXPECT_TRUE(verifyModel(*m).isOk()) << "truncated at " << len;
    }
  }
}

TEST(OnnxIoTest, SaveFailureLeavesNothingBehind) {
  auto model = loadText(kConvModel);
  ASSERT_TRUE(model.isOk());
  TempDir dir;
  Status missing_dir = saveModel(*model, dir / "no_such_dir" / "m.onnx");
  EXPECT_EQ(missing_dir.code(), StatusCode::kIoError);
  std::filesystem::create_directory(dir / "sub");
  Status is_dir = saveModel(*model, dir / "sub");
  EXPECT_EQ(is_dir.code(), StatusCode::kIoError);
  if (::geteuid() != 0) {  // root ignores permissions
    ::chmod((dir / "sub").c_str(), 0500);
    EXPECT_EQ(saveModel(*model, dir / "sub" / "m.onnx").code(), StatusCode::kIoError);
  }
  EXPECT_EQ(dir.fileCount(), 1u);  // just "sub"
}

TEST(OnnxIoTest, AtomicWriteKeepsOldFileOnFailure) {
  TempDir dir;
  const auto path = dir / "keep.txt";
  testing::writeText(path, "old");
  Status s = writeFileAtomically(path, [](int) { return ioError("simulated failure"); });
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(testing::readText(path), "old");
  EXPECT_EQ(dir.fileCount(), 1u);
  ASSERT_TRUE(writeStringAtomically(path, "new").isOk());
  EXPECT_EQ(testing::readText(path), "new");
}

TEST(OnnxIoTest, TypedDataFieldsLoadLikeRaw) {
  onnx::ModelProto proto = parseText(kConvModel);  // the parser writes float_data
  auto model = parseModel(proto.SerializeAsString());
  ASSERT_TRUE(model.isOk());
  const Tensor* b = model->graph->findValue("b")->initializer();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->data<float>()[2], 3.f);
}

TEST(OnnxIoTest, ConsumingSaveWritesTheSameFile) {
  auto a = loadText(kConvModel);
  auto b = loadText(kConvModel);
  ASSERT_TRUE(a.isOk() && b.isOk());
  TempDir dir;
  ASSERT_TRUE(saveModel(*a, dir / "a.onnx").isOk());
  ASSERT_TRUE(saveModelConsuming(*b, dir / "b.onnx").isOk());
  EXPECT_EQ(testing::readText(dir / "a.onnx"), testing::readText(dir / "b.onnx"));
}

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {

// The channel split torch exports for x.chunk(2, dim=1): the slice end is computed at run time
// from Shape. ONNX 1.12's data propagation does not carry it through Div; our folding does.
const char* kChunkModel = R"(
  <ir_version: 8, opset_import: ["" : 13]>
  split (float[N, 4, 3, 3] x) => (y)
  {
    s = Shape (x)
    idx = Constant <value = int64[1] {1}> ()
    c = Gather <axis = 0> (s, idx)
    two = Constant <value = int64[1] {2}> ()
    half = Div (c, two)
    zero = Constant <value = int64[1] {0}> ()
    axis = Constant <value = int64[1] {1}> ()
    y = Slice (x, zero, half, axis)
  }
)";

TEST(ShapeFoldTest, ChannelSplitSliceGetsAStaticChannelCount) {
  auto model = loadText(kChunkModel);
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  const Graph& g = *model->graph;
  EXPECT_EQ(g.findValue("y")->type().toString(), "float32[N,2,3,3]");
  auto folded = foldShapeComputations(g, model->opsetVersion("")).values;
  // Shape of x is not static (N), so `s` is not folded, but Gather picks the static channel.
  EXPECT_EQ(folded.count(g.findValue("s")), 0u);
  ASSERT_EQ(folded.count(g.findValue("half")), 1u);
  EXPECT_EQ(folded.at(g.findValue("half")).toInt64Vector(), (std::vector<int64_t>{2}));
  // The model itself is unchanged: the folded nodes are still there.
  EXPECT_EQ(g.numNodes(), 8u);
}

TEST(ShapeFoldTest, FoldsReshapeTargetsAndLeavesFloatMathAlone) {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 13]>
    r (float[2, 3, 4] x) => (y, f)
    {
      s = Shape (x)
      i0 = Constant <value = int64[1] {0}> ()
      n = Gather <axis = 0> (s, i0)
      m1 = Constant <value = int64[1] {-1}> ()
      target = Concat <axis = 0> (n, m1)
      y = Reshape (x, target)
      f = Add (x, x)
    }
  )";
  auto model = loadText(text);
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  const Graph& g = *model->graph;
  auto folded = foldShapeComputations(g, model->opsetVersion("")).values;
  ASSERT_EQ(folded.count(g.findValue("target")), 1u);
  EXPECT_EQ(folded.at(g.findValue("target")).toInt64Vector(), (std::vector<int64_t>{2, -1}));
  EXPECT_EQ(folded.count(g.findValue("f")), 0u);
  EXPECT_EQ(g.findValue("y")->type().toString(), "float32[2,12]");
}

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {

// torch's x.view(x.size(0), -1) with a symbolic batch: the target [N, -1] resolves to [N, 64],
// and the Gemm after it gets a static feature count (so its MACs are known).
TEST(ShapeFoldTest, SymbolicBatchReshapeResolves) {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 13]>
    v (float[N, 64, 1, 1] x, float[10, 64] w) => (y)
    {
      s = Shape (x)
      i0 = Constant <value = int64[1] {0}> ()
      n = Gather <axis = 0> (s, i0)
      m1 = Constant <value = int64[1] {-1}> ()
      target = Concat <axis = 0> (n, m1)
      flat = Reshape (x, target)
      y = Gemm <transB = 1> (flat, w)
    }
  )";
  auto model = loadText(text);
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  EXPECT_EQ(model->graph->findValue("flat")->type().toString(), "float32[N,64]");
  EXPECT_EQ(model->graph->findValue("y")->type().toString(), "float32[N,10]");
}

}  // namespace
}  // namespace nnc

namespace nnc {
namespace {
using testing::sourcePath;

TEST(OnnxIoTest, CloneIsDeepAndKeepsTypes) {
  auto model = loadModel(sourcePath("models/resnet.onnx"));
  ASSERT_TRUE(model.isOk()) << model.status().toString();
  auto copy = cloneModel(*model);
  ASSERT_TRUE(copy.isOk()) << copy.status().toString();
  EXPECT_EQ(printModel(*model), printModel(*copy));
  for (const auto& v : model->graph->values())
    EXPECT_EQ(copy->graph->findValue(v->name())->type(), v->type()) << v->name();
  // Changing the copy leaves the original alone.
  Value* weight = copy->graph->initializers().front();
  const std::string before = model->graph->findValue(weight->name())->initializer()->bytes();
  weight->mutableInitializer()->mutableBytes()[0] ^= 0x55;
  EXPECT_EQ(model->graph->findValue(weight->name())->initializer()->bytes(), before);
}

// Model::clone() stands in for the save + reload round trip that search loops used: the clone of
// a loaded model, and of one changed in place (a node inserted out of order, a new initializer,
// a value listed in value_info), serializes exactly like the reloaded model, and shares every
// tensor's bytes until written.
TEST(OnnxIoTest, CloneEqualsTheRoundTripAndSharesBytes) {
  for (const char* name : {"resnet", "vgg_bn", "densenet", "mobilenetv2", "flatten_head"}) {
    auto model = loadModel(sourcePath(std::string("models/") + name + ".onnx"));
    ASSERT_TRUE(model.isOk()) << model.status().toString();
    Graph& g = *model->graph;
    const Node* first = g.nodes().front().get();
    Value* extra = g.addInitializer("extra_scale", Tensor::fromVector<float>({1}, {2.f}));
    Node* mul = g.insertNodeBefore(first, "Mul", {first->input(0), extra}, {"scaled_input"});
    mul->output()->setListedInValueInfo(true);
    g.addOutput(mul->output());
    auto bytes = serializeModel(*model);
    ASSERT_TRUE(bytes.isOk());
    LoadOptions options;
    options.infer_shapes = false;
    auto reloaded = parseModel(*bytes, {}, options);
    ASSERT_TRUE(reloaded.isOk()) << reloaded.status().toString();
    for (const auto& v : reloaded->graph->values()) v->setType(g.findValue(v->name())->type());
    const Model copy = model->clone();
    auto copy_bytes = serializeModel(copy), reloaded_bytes = serializeModel(*reloaded);
    ASSERT_TRUE(copy_bytes.isOk() && reloaded_bytes.isOk());
    EXPECT_EQ(copy_bytes.value(), reloaded_bytes.value()) << name;
    EXPECT_EQ(printModel(copy), printModel(*reloaded)) << name;
    for (const Value* v : copy.graph->initializers()) {
      const Tensor* original = g.findValue(v->name())->initializer();
      EXPECT_TRUE(v->initializer()->sharesBytes()) << v->name();
      EXPECT_EQ(v->initializer()->bytes().data(), original->bytes().data()) << v->name();
    }
  }
}

}  // namespace
}  // namespace nnc
