#include "nncompress/onnx_io/model_io.h"

#include <fcntl.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "nncompress/ir/option_error.h"
#include "nncompress/ir/shape_fold.h"
#include "nncompress/ir/subgraph.h"
#include "nncompress/onnx_io/file_util.h"
#include "proto_convert.h"

namespace nnc {

using namespace onnx_io_internal;

namespace {

// Tensors up to this size keep their data in the proto handed to shape inference: shape
// constants, axes and the like, which data propagation needs. Larger ones (weights) go in with
// dims only, which is all inference reads from them.
constexpr int64_t kShapeInferenceDataLimit = 4096;

Status finishLoad(onnx::ModelProto& proto, const std::filesystem::path& base_dir,
                  const LoadOptions& options, LoadedModelInfo* info, Model* out) {
  // The checker reads the proto before the IR takes its bytes.
  std::string finding, note;
  if (options.strict != StrictLoad::kOff) finding = checkProtoOnLoad(proto).message();
  int64_t external = 0;
  auto model = modelFromProto(proto, base_dir, &external);
  if (!model.isOk()) return model.status();
  proto.Clear();
  if (info) info->external_data_bytes = external;
  NNC_RETURN_IF_ERROR(checkOpsetsKnown(model.value()));
  // Declared shapes are checked before inference replaces them with what it derives.
  if (options.strict != StrictLoad::kOff && finding.empty())
    finding = inferStrictlyOnIr(model.value(), &note).message();
  if (options.infer_shapes) {
    Status s = inferShapes(model.value());
    if (info) {
      info->shape_inference_ran = s.isOk();
      if (!s.isOk()) info->shape_inference_note = s.message();
    }
  }
  if (options.strict != StrictLoad::kOff && finding.empty())
    finding = checkWeightChannels(model.value()).message();
  if (options.strict != StrictLoad::kOff && finding.empty())
    finding = checkShapeInputs(model.value()).message();
  if (!finding.empty() && options.strict == StrictLoad::kRefuse) return invalidModel(finding);
  if (info) {
    info->strict_finding = finding;
    info->validation_note = note;
  }
  setSubgraphParser(&subgraphModelFromProto);  // executors may need to run its bodies
  *out = std::move(model).value();
  return Status::ok();
}

Status writeProto(const onnx::ModelProto& proto, const std::filesystem::path& path) {
  if (proto.ByteSizeLong() > static_cast<size_t>(INT32_MAX))
    return invalidOption("external_data_threshold",
                         "the model is over 2 GiB: save it with external data");
  return writeFileAtomically(path, [&](int fd) -> Status {
    google::protobuf::io::FileOutputStream stream(fd);
    const bool ok = proto.SerializeToZeroCopyStream(&stream) && stream.Flush();
    if (!ok) return ioError(std::string("write failed: ") + std::strerror(stream.GetErrno()));
    return Status::ok();
  });
}

// Moves large initializers into <path>.data. Offsets are aligned so runtimes may mmap them.
std::filesystem::path externalDataPath(const std::filesystem::path& path) {
  const std::string data_name = path.filename().string() + ".data";
  return path.parent_path().empty() ? std::filesystem::path(data_name)
                                    : path.parent_path() / data_name;
}

Status writeExternalData(onnx::ModelProto& proto, const std::filesystem::path& path,
                         int64_t threshold, bool* wrote) {
  const std::string data_name = path.filename().string() + ".data";
  const std::filesystem::path data_path = externalDataPath(path);
  std::vector<onnx::TensorProto*> moved;
  for (auto& t : *proto.mutable_graph()->mutable_initializer())
    if (t.has_raw_data() && static_cast<int64_t>(t.raw_data().size()) >= threshold)
      moved.push_back(&t);
  if (moved.empty()) return Status::ok();
  *wrote = true;
  return writeFileAtomically(data_path, [&](int fd) -> Status {
    int64_t offset = 0;
    for (onnx::TensorProto* t : moved) {
      const int64_t padded = (offset + 63) / 64 * 64;
      const std::string pad(static_cast<size_t>(padded - offset), '\0');
      for (const std::string* chunk : {&pad, &t->raw_data()}) {
        size_t done = 0;
        while (done < chunk->size()) {
          const ssize_t n = ::write(fd, chunk->data() + done, chunk->size() - done);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0)
            return ioError("write failed on '" + data_path.string() + "': " + std::strerror(errno));
          done += static_cast<size_t>(n);
        }
      }
      const int64_t length = static_cast<int64_t>(t->raw_data().size());
      t->clear_raw_data();
      t->set_data_location(onnx::TensorProto::EXTERNAL);
      auto add = [&](const char* k, const std::string& v) {
        auto* e = t->add_external_data();
        e->set_key(k);
        e->set_value(v);
      };
      add("location", data_name);
      add("offset", std::to_string(padded));
      add("length", std::to_string(length));
      offset = padded + length;
    }
    return Status::ok();
  });
}

Status saveImpl(Model& model, bool release, const std::filesystem::path& path,
                const SaveOptions& options) {
  onnx::ModelProto proto;
  modelToProto(model, release, &proto);
  if (options.validate) {
    const auto start = std::chrono::steady_clock::now();
    Status valid = validateProto(proto, options.validation_notes);
    if (options.validation_seconds)
      *options.validation_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!valid.isOk()) return internalError(valid.message());
  }
  int64_t threshold = options.external_data_threshold;
  if (threshold <= 0 && proto.ByteSizeLong() > static_cast<size_t>(INT32_MAX)) threshold = 1024;
  bool wrote_data = false;
  if (threshold > 0) NNC_RETURN_IF_ERROR(writeExternalData(proto, path, threshold, &wrote_data));
  Status written = writeProto(proto, path);
  if (!written.isOk() && wrote_data) std::filesystem::remove(externalDataPath(path));
  return written;
}

}  // namespace

StatusOr<Model> loadModel(const std::filesystem::path& path, const LoadOptions& options,
                          LoadedModelInfo* info) {
  NNC_RETURN_IF_ERROR(checkReadableFile(path));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ioError(std::string("cannot open: ") + std::strerror(errno));
  onnx::ModelProto proto;
  bool parsed;
  {
    google::protobuf::io::FileInputStream stream(fd);
    parsed = proto.ParseFromZeroCopyStream(&stream);
  }
  const off_t size = ::lseek(fd, 0, SEEK_END);
  ::close(fd);
  if (!parsed)
    return invalidModel(
        "not a valid ONNX model: protobuf parsing failed (truncated or not an .onnx file?)");
  if (info) info->file_bytes = size;
  Model model;
  NNC_RETURN_IF_ERROR(finishLoad(proto, path.parent_path(), options, info, &model));
  return model;
}

StatusOr<Model> parseModel(const std::string& bytes, const std::filesystem::path& base_dir,
                           const LoadOptions& options, LoadedModelInfo* info) {
  onnx::ModelProto proto;
  if (bytes.empty()) return invalidModel("file is empty");
  if (!proto.ParseFromString(bytes))
    return invalidModel("not a valid ONNX model: protobuf parsing failed");
  if (info) info->file_bytes = static_cast<int64_t>(bytes.size());
  Model model;
  NNC_RETURN_IF_ERROR(finishLoad(proto, base_dir, options, info, &model));
  return model;
}

Status saveModel(const Model& model, const std::filesystem::path& path,
                 const SaveOptions& options) {
  // Without `release` the model is only read; the cast lets both paths share one converter.
  return saveImpl(const_cast<Model&>(model), /*release=*/false, path, options);
}

Status saveModelConsuming(Model& model, const std::filesystem::path& path,
                          const SaveOptions& options) {
  return saveImpl(model, /*release=*/true, path, options);
}

StatusOr<std::string> serializeModel(const Model& model) {
  onnx::ModelProto proto;
  modelToProto(const_cast<Model&>(model), /*release=*/false, &proto);
  std::string out;
  if (!proto.SerializeToString(&out)) return internalError("protobuf serialization failed");
  return out;
}

StatusOr<Model> cloneModel(const Model& model) { return model.clone(); }

Status checkModelFile(const std::filesystem::path& path) {
  try {
    onnx::checker::check_model(path.string());
  } catch (const std::exception& e) {
    return invalidModel(std::string("ONNX checker: ") + e.what());
  }
  return Status::ok();
}

namespace {

// Shape-only copy of the model for ONNX shape inference: no large tensor data (weights go in
// with dims only), no value_info (so every type is re-derived), and values we folded ourselves
// turned into initializers in place of the nodes that compute them.
onnx::ModelProto shapeInferenceProto(Model& model, const ShapeFoldResult& fold) {
  const auto& folded = fold.values;
  onnx::ModelProto proto;
  std::vector<std::pair<Tensor*, std::string>> parked;
  for (const auto& v : model.graph->values()) {
    Tensor* t = v->mutableInitializer();
    if (t && static_cast<int64_t>(t->byteSize()) > kShapeInferenceDataLimit)
      parked.emplace_back(t, t->releaseBytes());
  }
  modelToProto(model, /*release=*/false, &proto);
  for (auto& [t, bytes] : parked) t->mutableBytes() = std::move(bytes);
  onnx::GraphProto* g = proto.mutable_graph();
  for (auto& t : *g->mutable_initializer())
    if (t.has_raw_data() && t.raw_data().empty()) t.clear_raw_data();
  g->clear_value_info();
  // Types we derived ourselves go in as value_info: ONNX keeps them and builds on them.
  for (const auto& [v, type] : fold.refined_types) {
    auto* vi = g->add_value_info();
    vi->set_name(v->name());
    valueTypeToProto(type, vi->mutable_type());
  }
  if (folded.empty()) return proto;
  std::unordered_map<std::string, const Tensor*> by_name;
  for (const auto& [v, t] : folded) by_name[v->name()] = &t;
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  for (auto& n : *g->mutable_node()) {
    const bool replaced = n.output_size() == 1 && by_name.count(n.output(0));
    if (!replaced) kept.Add()->Swap(&n);
  }
  g->mutable_node()->Swap(&kept);
  for (const auto& [name, t] : by_name) {
    auto* init = g->add_initializer();
    init->set_name(name);
    Tensor copy = *t;
    tensorToProto(copy, /*release=*/true, init);
  }
  if (proto.ir_version() < 4) proto.set_ir_version(4);  // initializers need not be inputs
  return proto;
}

// Robustness guards (found by fuzz/ and a schema-driven probe): some libonnx 1.12 inference and
// data propagation functions index shape dims or vectors without checking ranks or attribute
// ranges, so a malformed model (e.g. LayerNormalization on a scalar) crashes the process inside
// libonnx, even for nodes that pass OpSchema::Verify. Each guard wraps the registered function
// of every version of one op and runs first: input that breaks the op's spec throws an
// InferenceError, which ONNX (non-strict mode) records and then skips the node, as for any
// inference error; input that is merely unknown where the function needs it makes the wrapper
// return without inferring. Installed once, before the first inference.
// Guard: true = run the original function, false = infer nothing for this node.
using InferenceGuard = bool (*)(onnx::InferenceContext&);

int64_t inputRank(onnx::InferenceContext& ctx, size_t i) {  // -1: absent or unknown
  const onnx::TypeProto* t = i < ctx.getNumInputs() ? ctx.getInputType(i) : nullptr;
  if (!t || !t->has_tensor_type() || !t->tensor_type().has_shape()) return -1;
  return t->tensor_type().shape().dim_size();
}

bool guardLayerNormalization(onnx::InferenceContext& ctx) {  // indexes dim(axis) unchecked
  const int64_t rank = inputRank(ctx, 0), axis = onnx::getAttribute(ctx, "axis", -1);
  if (rank >= 0 && (axis < -rank || axis >= rank))
    fail_shape_inference("LayerNormalization axis ", axis, " is out of range for rank ", rank);
  return true;
}
bool guardGatherND(onnx::InferenceContext& ctx) {  // negative batch_dims indexes dim(<0)
  if (onnx::getAttribute(ctx, "batch_dims", 0) < 0)
    fail_shape_inference("GatherND batch_dims must not be negative");
  return true;
}
bool guardConvTranspose(onnx::InferenceContext& ctx) {  // reads W dims by X's rank
  const int64_t x = inputRank(ctx, 0), w = inputRank(ctx, 1);
  if (x >= 0 && w >= 0 && x != w)
    fail_shape_inference("ConvTranspose weight rank ", w, " differs from input rank ", x);
  return true;
}
bool guardMaxUnpool(onnx::InferenceContext& ctx) {  // without output_shape reads I's dim(1)
  if (ctx.getNumInputs() >= 3) return true;
  const int64_t i = inputRank(ctx, 1);
  if (i >= 0 && i < 2) fail_shape_inference("MaxUnpool indices need rank >= 2, not ", i);
  return i >= 2;
}
bool guardSTFT(onnx::InferenceContext& ctx) {  // reads signal dim(1)
  const int64_t rank = inputRank(ctx, 0);
  if (rank >= 0 && rank < 2) fail_shape_inference("STFT signal needs rank 3, not ", rank);
  return true;
}
bool guardSplitToSequence(onnx::InferenceContext& ctx) {  // divides by a scalar split
  const onnx::TensorProto* t = ctx.getNumInputs() > 1 ? ctx.getInputData(1) : nullptr;
  if (!t || t->dims_size() != 0) return true;
  int64_t split = 1;
  if (t->data_type() == onnx::TensorProto::INT64 && t->int64_data_size() == 1) {
    split = t->int64_data(0);
  } else if (t->data_type() == onnx::TensorProto::INT32 && t->int32_data_size() == 1) {
    split = t->int32_data(0);
  } else if (t->data_type() == onnx::TensorProto::INT64 && t->raw_data().size() == 8) {
    std::memcpy(&split, t->raw_data().data(), 8);
  } else if (t->data_type() == onnx::TensorProto::INT32 && t->raw_data().size() == 4) {
    int32_t v;
    std::memcpy(&v, t->raw_data().data(), 4);
    split = v;
  }
  if (split <= 0) fail_shape_inference("SplitToSequence scalar split must be positive");
  return true;
}

// Data propagation (the values of shape tensors) of Add/Sub/Mul/Div reads dim(0) of an empty
// operand when the other has one element, and Slice's crashes on an empty input (a reversed
// Slice of int64[0]): propagate nothing then.
bool guardMathDataPropagation(onnx::DataPropagationContext& ctx) {
  for (size_t i = 0; i < std::min<size_t>(ctx.getNumInputs(), 2); ++i) {
    const onnx::TensorShapeProto* data = ctx.getInputData(i);
    if (data && data->dim_size() == 0) return false;
  }
  return true;
}

// Calls fn on every registered version of an ONNX-domain op. The registry owns non-const
// schemas but only hands out const pointers.
template <typename Fn>
void forEachSchemaVersion(const char* op, Fn fn) {
  const int max_version =
      onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map().at(onnx::ONNX_DOMAIN).second;
  std::unordered_set<const onnx::OpSchema*> done;
  for (int v = 1; v <= max_version; ++v) {
    auto* schema = const_cast<onnx::OpSchema*>(onnx::OpSchemaRegistry::Schema(op, v));
    if (schema && done.insert(schema).second) fn(*schema);
  }
}

void installInferenceGuards() {
  static std::once_flag once;
  std::call_once(once, [] {
    const std::pair<const char*, InferenceGuard> guards[] = {
        {"LayerNormalization", guardLayerNormalization},
        {"GatherND", guardGatherND},
        {"ConvTranspose", guardConvTranspose},
        {"MaxUnpool", guardMaxUnpool},
        {"STFT", guardSTFT},
        {"SplitToSequence", guardSplitToSequence}};
    for (const auto& entry : guards) {
      const InferenceGuard guard = entry.second;  // a plain variable: lambdas capture it
      forEachSchemaVersion(entry.first, [guard](onnx::OpSchema& schema) {
        onnx::InferenceFunction original = schema.GetTypeAndShapeInferenceFunction();
        if (!original) return;
        schema.TypeAndShapeInferenceFunction([original, guard](onnx::InferenceContext& ctx) {
          if (guard(ctx)) original(ctx);
        });
      });
    }
    for (const char* op : {"Add", "Sub", "Mul", "Div", "Slice"}) {
      forEachSchemaVersion(op, [](onnx::OpSchema& schema) {
        onnx::DataPropagationFunction original = schema.GetDataPropagationFunction();
        if (!original || !schema.has_data_propagation_function()) return;
        schema.PartialDataPropagationFunction([original](onnx::DataPropagationContext& ctx) {
          if (guardMathDataPropagation(ctx)) original(ctx);
        });
      });
    }
  });
}

// Robustness guard (found by fuzz/loader_fuzzer.cc): libonnx's shape inference functions assume
// the ONNX checker has already validated each node against its schema (required attributes
// present, attribute types right, input/output counts in range) and crash (null dereference,
// out-of-range access) on nodes that break those rules, e.g. a Scan without num_scan_inputs.
// We do not run the full checker (it rejects unknown ops we carry through), so every node with
// a registered schema, in the main graph and in subgraphs, is checked with OpSchema::Verify
// first; a node that fails means inference is skipped, with the reason as its note.
using OpsetMap = std::unordered_map<std::string, int64_t>;

Status verifyNodesForInference(const onnx::GraphProto& g, const OpsetMap& opsets) {
  for (const auto& n : g.node()) {
    const std::string domain = n.domain() == "ai.onnx" ? "" : n.domain();
    auto it = opsets.find(domain);
    if (it != opsets.end() && it->second > 0) {
      const int version = static_cast<int>(std::min<int64_t>(it->second, INT32_MAX));
      if (const onnx::OpSchema* schema =
              onnx::OpSchemaRegistry::Schema(n.op_type(), version, domain)) {
        try {
          schema->Verify(n);
        } catch (const std::exception& e) {
          const std::string label = n.name().empty() ? "" : "'" + n.name() + "' ";
          return invalidModel("ONNX shape inference skipped: node " + label + "(" + n.op_type() +
                              ") does not match its schema: " + e.what());
        }
      }
    }
    for (const auto& a : n.attribute()) {
      if (a.has_g()) NNC_RETURN_IF_ERROR(verifyNodesForInference(a.g(), opsets));
      for (const auto& sub : a.graphs()) NNC_RETURN_IF_ERROR(verifyNodesForInference(sub, opsets));
    }
  }
  return Status::ok();
}

Status verifyNodesForInference(const onnx::ModelProto& proto) {
  auto opsetMap = [](const auto& imports) {
    OpsetMap opsets;
    for (const auto& op : imports)
      opsets[op.domain() == "ai.onnx" ? "" : op.domain()] = op.version();
    return opsets;
  };
  NNC_RETURN_IF_ERROR(verifyNodesForInference(proto.graph(), opsetMap(proto.opset_import())));
  // Model-local function bodies are inferred too (when called), with their own opset imports.
  for (const auto& f : proto.functions()) {
    onnx::GraphProto body;
    *body.mutable_node() = f.node();
    Status s = verifyNodesForInference(body, opsetMap(f.opset_import()));
    if (!s.isOk()) return s.withContext("function '" + f.name() + "'");
  }
  return Status::ok();
}

}  // namespace

namespace onnx_io_internal {
Status verifyNodesAgainstSchemas(const onnx::ModelProto& proto) {
  return verifyNodesForInference(proto);
}
void installShapeInferenceGuards() { installInferenceGuards(); }
}  // namespace onnx_io_internal

Status inferShapes(Model& model) {
  Graph& graph = *model.graph;
  auto apply = [&](const onnx::ValueInfoProto& vi) {
    Value* v = graph.findValue(vi.name());
    if (!v || v->isInitializer() || v->isGraphInput()) return;
    ValueType inferred = valueTypeFromProto(vi.type());
    if (!inferred.isTensor() || inferred.dtype == DType::kUndefined) return;
    ValueType current = v->type();
    // Keep what the file said where inference knows less (e.g. unknown ops).
    if (current.isTensor() && current.shape && !inferred.shape) inferred.shape = current.shape;
    if (!current.denotation.empty()) inferred.denotation = current.denotation;
    v->setType(std::move(inferred));
  };
  // Round 1 is plain ONNX inference. Each later round folds the shape subgraphs whose inputs
  // became static and infers again, until nothing new folds. A chain of blocks that each pad
  // to a size computed from their input's shape (Swin's windows) takes a round per block.
  ShapeFoldResult folded;
  constexpr int kMaxRounds = 64;
  for (int round = 0; round < kMaxRounds; ++round) {
    onnx::ModelProto proto = shapeInferenceProto(model, folded);
    if (round == 0) {  // robustness guards, see above
      NNC_RETURN_IF_ERROR(verifyNodesForInference(proto));
      installInferenceGuards();
    }
    try {
      onnx::ShapeInferenceOptions opts(/*check_type=*/false, /*strict_mode=*/0, /*data_prop=*/true);
      onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(), opts);
    } catch (const std::exception& e) {
      if (round == 0) return invalidModel(std::string("ONNX shape inference failed: ") + e.what());
      break;  // keep what earlier rounds found
    }
    for (const auto& vi : proto.graph().value_info()) apply(vi);
    for (const auto& vi : proto.graph().output()) apply(vi);
    ShapeFoldResult next = foldShapeComputations(graph, model.opsetVersion(""));
    for (const auto& [v, type] : next.refined_types) graph.findValue(v->name())->setType(type);
    // A folded value goes into the next round as an initializer, which inference gives no
    // type: it has the folded tensor's.
    for (const auto& [v, t] : next.values) {
      ValueType type = v->type();
      type.dtype = t.dtype();
      type.shape = std::vector<Dim>();
      for (int64_t d : t.shape()) type.shape->push_back(Dim::known(d));
      graph.findValue(v->name())->setType(std::move(type));
    }
    if (next.values.size() <= folded.values.size() && next.refined_types.empty()) break;
    // Refinements are now in the IR types; keep them as hints for the next round too.
    for (auto& [v, type] : folded.refined_types) next.refined_types.try_emplace(v, type);
    folded = std::move(next);
  }
  return Status::ok();
}

const ShapeInference& onnxShapeInference() {
  class OnnxShapeInference : public ShapeInference {
   public:
    Status infer(Model& model) const override { return inferShapes(model); }
  };
  static const OnnxShapeInference inference;
  return inference;
}

const ModelFormat& onnxModelFormat() {
  class OnnxModelFormat : public ModelFormat {
   public:
    Status checkShapeInputs(const Model& model) const override {
      return nnc::checkShapeInputs(model);
    }
    Status checkWeightChannels(const Model& model) const override {
      return nnc::checkWeightChannels(model);
    }
    int64_t irVersionForOpset(int64_t opset) const override {
      return nnc::irVersionForOpset(opset);
    }
    Status save(Model& model, const std::filesystem::path& path, const SaveOptions& options,
                bool consume) const override {
      return consume ? saveModelConsuming(model, path, options) : saveModel(model, path, options);
    }
    Status convertOpset(Model& model, int64_t target) const override {
      return nnc::convertOpset(model, target);
    }
  };
  static const OnnxModelFormat format;
  return format;
}

}  // namespace nnc
