// Checks a model against the ONNX spec as far as libonnx can tell (checker, strict shape
// inference with data propagation), our own conv-weight check, the opset policy, and opset
// conversion with ONNX's version converter.

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>
#include <onnx/version_converter/convert.h>

#include <algorithm>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "nncompress/ir/shape_fold.h"
#include "nncompress/ir/weight_layout.h"
#include "nncompress/onnx_io/model_io.h"
#include "proto_convert.h"

namespace nnc {

using namespace onnx_io_internal;

namespace {

// Tensors up to this size keep their data for shape inference (shape constants, axes); larger
// ones (weights) go in with dims only, which is all inference reads from them.
constexpr size_t kInferenceDataLimit = 4096;

bool isDefaultDomain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

std::string firstLine(std::string s) {
  const size_t nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// Large tensor bytes moved out of a proto (initializers and Constant-node values) and back, so
// copies of the proto for inference or conversion do not copy weights.
class ParkedWeights {
 public:
  explicit ParkedWeights(onnx::ModelProto& proto) {
    for (auto& t : *proto.mutable_graph()->mutable_initializer()) park(t, "i:" + t.name());
    for (auto& n : *proto.mutable_graph()->mutable_node()) {
      if (n.op_type() != "Constant" || !isDefaultDomain(n.domain()) || n.output_size() != 1)
        continue;
      for (auto& a : *n.mutable_attribute())
        if (a.has_t()) park(*a.mutable_t(), "c:" + n.output(0));
    }
  }
  // Puts the bytes back into `proto` (the same one, or a converted one with the same names).
  void restore(onnx::ModelProto& proto) {
    for (auto& t : *proto.mutable_graph()->mutable_initializer()) unpark(t, "i:" + t.name());
    for (auto& n : *proto.mutable_graph()->mutable_node()) {
      if (n.op_type() != "Constant" || n.output_size() != 1) continue;
      for (auto& a : *n.mutable_attribute())
        if (a.has_t()) unpark(*a.mutable_t(), "c:" + n.output(0));
    }
  }

 private:
  void park(onnx::TensorProto& t, std::string key) {
    if (!t.has_raw_data() || t.raw_data().size() <= kInferenceDataLimit) return;
    bytes_[std::move(key)] = std::move(*t.mutable_raw_data());
    t.clear_raw_data();
  }
  void unpark(onnx::TensorProto& t, const std::string& key) {
    auto it = bytes_.find(key);
    if (it == bytes_.end() || t.has_raw_data()) return;
    t.set_raw_data(std::move(it->second));
    bytes_.erase(it);
  }
  std::unordered_map<std::string, std::string> bytes_;
};

// Strict ONNX shape inference (type checks, errors fatal, data propagation) on a proto whose
// large weights are parked. Returns the first error, which names the node.
Status inferStrictly(onnx::ModelProto proto) {
  NNC_RETURN_IF_ERROR(verifyNodesAgainstSchemas(proto));
  installShapeInferenceGuards();
  if (proto.ir_version() < 4) proto.set_ir_version(4);  // initializers need not be inputs
  try {
    onnx::ShapeInferenceOptions opts(/*check_type=*/true, /*strict_mode=*/1, /*data_prop=*/true);
    onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(), opts);
  } catch (const std::exception& e) {
    std::string what = firstLine(e.what());
    const std::string prefix = "Shape inference error(s): ";
    if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
    return invalidModel("strict shape inference: " + what);
  }
  return Status::ok();
}

// Nodes libonnx has no schema for (custom domains): the checker accepts them and inference
// stops at their outputs, so what follows them is checked less.
std::string uncheckedOpsNote(const onnx::ModelProto& proto) {
  std::unordered_map<std::string, int> versions;
  for (const auto& o : proto.opset_import())
    versions[isDefaultDomain(o.domain()) ? "" : o.domain()] = static_cast<int>(o.version());
  std::set<std::string> unknown;
  for (const auto& n : proto.graph().node()) {
    const std::string domain = isDefaultDomain(n.domain()) ? "" : n.domain();
    auto it = versions.find(domain);
    const int version = it == versions.end() ? 1 : it->second;
    if (!onnx::OpSchemaRegistry::Schema(n.op_type(), version, domain))
      unknown.insert(domain + "::" + n.op_type());
  }
  if (unknown.empty()) return {};
  std::string list;
  for (const auto& op : unknown) list += (list.empty() ? "" : ", ") + op;
  return "ops without an ONNX schema (" + list +
         ") were accepted unchecked; shapes after them are checked less";
}

// A conv's weight reads a channel count its input must have. Table: which input is the data,
// which the weight, the weight axis that counts input channels, and whether `group` multiplies.
std::optional<int64_t> knownDim(const Value* v, int axis) {
  if (!v) return std::nullopt;
  if (const Tensor* t = v->constantData(); t && axis < t->rank()) return t->dim(axis);
  const auto& shape = v->type().shape;
  if (!shape || axis >= static_cast<int>(shape->size()) || !(*shape)[axis].isKnown())
    return std::nullopt;
  return (*shape)[axis].value;
}

std::string nodeLabel(const Node& n) {
  const Value* out = n.output(0);  // a node may have no outputs under --no-strict
  const std::string name = !n.name().empty() ? n.name() : out ? out->name() : std::string();
  return "node '" + name + "' (" + n.opType() + ")";
}

std::string dimsText(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

// Constant (or folded) shape inputs against the shapes they produce.

// How many axes a shape-like input covers: the rank, or the length of `axes` when given.
struct CoveredAxes {
  int64_t count;
  bool listed;  // by `axes`
};

// The data input's type, the shape-like input's values and how many axes they cover (the
// length of `axes` when the op has one, else the rank); a check returns what disagrees (empty:
// they agree, or it cannot tell).
using ShapeInputCheck = std::string (*)(const Node&, const ValueType& data,
                                        const std::vector<int64_t>& values,
                                        std::optional<CoveredAxes> covered);

std::optional<int64_t> rankOf(const ValueType& t) {
  if (!t.shape) return std::nullopt;
  return static_cast<int64_t>(t.shape->size());
}

// Reshape: the target (0 copies the input dim unless allowzero, one -1 is inferred) must hold
// the input's element count.
std::string checkReshapeTarget(const Node& n, const ValueType& data,
                               const std::vector<int64_t>& target, std::optional<CoveredAxes>) {
  const auto in = data.staticShape();
  if (!in) return {};
  const bool allow_zero = n.intAttr("allowzero", 0) != 0;
  int64_t known = 1, inferred = 0;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t d = target[i];
    if (d == 0 && !allow_zero) {
      if (i >= in->size())
        return "target " + dimsText(target) + " copies dim " + std::to_string(i) + " of a rank-" +
               std::to_string(in->size()) + " input";
      d = (*in)[i];
    }
    if (d == -1) {
      ++inferred;
      continue;
    }
    if (d < 0) return "target " + dimsText(target) + " has dim " + std::to_string(d);
    known *= d;
  }
  const int64_t count = shapeNumel(*in);
  const bool fits = inferred == 0   ? known == count
                    : inferred == 1 ? (known == 0 ? count == 0 : count % known == 0)
                                    : false;
  if (fits) return {};
  return "target " + dimsText(target) + " cannot hold the " + std::to_string(count) +
         " elements of input " + dimsText(*in);
}

// Expand: the shape must broadcast with the input (aligned right, equal or 1).
std::string checkExpandShape(const Node&, const ValueType& data, const std::vector<int64_t>& shape,
                             std::optional<CoveredAxes>) {
  if (!data.shape) return {};
  const auto& in = *data.shape;
  const size_t n = std::min(in.size(), shape.size());
  for (size_t k = 1; k <= n; ++k) {
    const Dim& a = in[in.size() - k];
    const int64_t b = shape[shape.size() - k];
    if (a.isKnown() && a.value != b && a.value != 1 && b != 1)
      return "shape " + dimsText(shape) + " does not broadcast with input dim " +
             std::to_string(a.value);
  }
  return {};
}

std::string checkLength(std::optional<CoveredAxes> axes, size_t length, int64_t per_axis,
                        const char* what) {
  if (!axes || length == 0 || static_cast<int64_t>(length) == axes->count * per_axis) return {};
  return std::string(what) + " has " + std::to_string(length) + " values for " +
         (axes->listed ? std::to_string(axes->count) + " listed axes"
                       : "a rank-" + std::to_string(axes->count) + " input");
}
std::string checkTileRepeats(const Node&, const ValueType&, const std::vector<int64_t>& v,
                             std::optional<CoveredAxes> axes) {
  return checkLength(axes, v.size(), 1, "repeats");
}
std::string checkPads(const Node&, const ValueType&, const std::vector<int64_t>& v,
                      std::optional<CoveredAxes> axes) {
  return checkLength(axes, v.size(), 2, "pads");
}
std::string checkScales(const Node&, const ValueType&, const std::vector<int64_t>& v,
                        std::optional<CoveredAxes> axes) {
  return checkLength(axes, v.size(), 1, "scales");
}
std::string checkSizes(const Node&, const ValueType&, const std::vector<int64_t>& v,
                       std::optional<CoveredAxes> axes) {
  return checkLength(axes, v.size(), 1, "sizes");
}

struct ShapeInputRule {
  const char* op;
  int min_opset, max_opset;  // the versions in which the input is in this position
  int shape_input;
  ShapeInputCheck check;
  int axes_input = -1;          // Pad-18: the input listing the axes `pads` covers
  bool axes_attribute = false;  // Resize-18: the `axes` attribute lists them
};
constexpr int kAny = 1 << 20;
constexpr ShapeInputRule kShapeInputRules[] = {
    {"Reshape", 5, kAny, 1, checkReshapeTarget},
    {"Expand", 8, kAny, 1, checkExpandShape},
    {"Tile", 6, kAny, 1, checkTileRepeats},
    {"Pad", 11, kAny, 1, checkPads, 3},
    {"Resize", 10, 10, 1, checkScales},
    {"Resize", 11, kAny, 2, checkScales, -1, true},
    {"Resize", 11, kAny, 3, checkSizes, -1, true},
    {"Upsample", 9, 9, 1, checkScales},
};

// Element count of a constant or folded value (scales are float: only their length counts).
std::optional<std::vector<int64_t>> shapeInputValues(const Value* v, const ShapeFoldResult& fold) {
  if (!v) return std::nullopt;
  const Tensor* t = v->constantData();
  if (!t) {
    auto it = fold.values.find(v);
    if (it != fold.values.end()) t = &it->second;
  }
  if (!t || t->rank() > 1) return std::nullopt;
  if (t->dtype() == DType::kInt64 || t->dtype() == DType::kInt32) return t->toInt64Vector();
  return std::vector<int64_t>(static_cast<size_t>(t->numel()), 0);  // length only
}

// The axes a shape-like input covers; nullopt when that cannot be told (an `axes` input that
// is not constant, an input of unknown rank).
std::optional<CoveredAxes> coveredAxes(const Node& n, const ShapeInputRule& rule,
                                       const ValueType& data, const ShapeFoldResult& fold) {
  if (rule.axes_attribute && n.hasAttribute("axes"))
    return CoveredAxes{static_cast<int64_t>(n.intsAttr("axes").size()), true};
  if (const Value* axes = rule.axes_input >= 0 ? n.input(rule.axes_input) : nullptr) {
    const auto listed = shapeInputValues(axes, fold);
    if (!listed) return std::nullopt;
    return CoveredAxes{static_cast<int64_t>(listed->size()), true};
  }
  const auto rank = rankOf(data);
  if (!rank) return std::nullopt;
  return CoveredAxes{*rank, false};
}

}  // namespace

Status checkShapeInputs(const Model& model) {
  const int64_t opset = model.opsetVersion("");
  const ShapeFoldResult fold = foldShapeComputations(*model.graph, opset);
  for (const auto& node : model.graph->nodes()) {
    for (const ShapeInputRule& rule : kShapeInputRules) {
      if (!node->isOp(rule.op) || opset < rule.min_opset || opset > rule.max_opset) continue;
      const Value* data = node->input(0);
      const auto values = shapeInputValues(node->input(rule.shape_input), fold);
      if (!data || !values) continue;
      const std::string problem =
          rule.check(*node, data->type(), *values, coveredAxes(*node, rule, data->type(), fold));
      if (!problem.empty()) return invalidModel(nodeLabel(*node) + ": " + problem);
    }
  }
  return Status::ok();
}

namespace {}  // namespace

Status checkWeightChannels(const Model& model) {
  for (const auto& node : model.graph->nodes()) {
    // The convolutions of the weight layout table (ir/weight_layout.h).
    const auto layout = weightLayout(*node);
    if (!layout || layout->matrix) continue;
    const Value* x = node->input(layout->data_input);
    const Value* w = node->input(layout->weight_input);
    const auto x_channels = knownDim(x, 1), w_channels = knownDim(w, layout->in_axis);
    if (!x_channels || !w_channels) continue;
    const int64_t group = layout->grouped == GroupedAxis::kInput ? layout->group : 1;
    if (*w_channels * group == *x_channels) continue;
    return invalidModel(nodeLabel(*node) + ": weight '" + w->name() + "' reads " +
                        std::to_string(*w_channels * group) + " input channels (" +
                        std::to_string(*w_channels) + " x group " + std::to_string(group) +
                        ") but input '" + x->name() + "' has " + std::to_string(*x_channels));
  }
  return Status::ok();
}

namespace {

int64_t newestKnownVersion(const std::string& domain) {
  const auto& ranges = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  auto it = ranges.find(domain);
  return it == ranges.end() ? -1 : it->second.second;
}

}  // namespace

namespace onnx_io_internal {

Status checkOpsetsKnown(const Model& model) {
  for (const auto& o : model.opset_imports) {
    const bool default_domain = isDefaultDomain(o.domain);
    const int64_t newest = default_domain ? kNewestWrittenOpset : newestKnownVersion(o.domain);
    if (newest < 0 || o.version <= newest) continue;  // unknown domains are not ours to judge
    return unsupported("opset " + std::to_string(o.version) + " of domain '" +
                       (default_domain ? std::string("ai.onnx") : o.domain) +
                       "' is newer than this build knows (libonnx " +
                       std::to_string(newestKnownVersion(default_domain ? "" : o.domain)) +
                       (default_domain ? "; int4 output uses 21" : "") + ")");
  }
  return Status::ok();
}

// A proto of the model without its large weights (moved out of the IR and back, not copied).
onnx::ModelProto protoWithoutWeights(const Model& model) {
  std::vector<std::pair<Tensor*, std::string>> moved;
  for (const auto& v : model.graph->values()) {
    Tensor* t = v->mutableInitializer();
    if (t && t->byteSize() > kInferenceDataLimit) moved.emplace_back(t, t->releaseBytes());
  }
  onnx::ModelProto proto;
  modelToProto(const_cast<Model&>(model), /*release=*/false, &proto);
  for (auto& [t, bytes] : moved) t->mutableBytes() = std::move(bytes);
  for (auto& t : *proto.mutable_graph()->mutable_initializer())
    if (t.has_raw_data() && t.raw_data().empty() && t.dims_size() > 0) t.clear_raw_data();
  ParkedWeights constants(proto);  // Constant-node weights: dropped from this copy
  return proto;
}

Status inferStrictlyOnIr(const Model& model, std::string* note) {
  if (model.opsetVersion("") > newestKnownOpset()) {
    if (note)
      *note = "libonnx knows opsets up to " + std::to_string(newestKnownOpset()) +
              ": strict shape inference did not run on this opset-" +
              std::to_string(model.opsetVersion("")) + " model";
    return Status::ok();
  }
  return inferStrictly(protoWithoutWeights(model));
}

Status checkProtoOnLoad(const onnx::ModelProto& proto) {
  for (const auto& o : proto.opset_import())
    if (isDefaultDomain(o.domain()) && o.version() > newestKnownOpset()) return Status::ok();
  // The checker resolves external data against the working folder: those files are read (and
  // checked) by the loader instead.
  for (const auto& t : proto.graph().initializer())
    if (t.data_location() == onnx::TensorProto::EXTERNAL) return Status::ok();
  try {
    onnx::checker::check_model(proto);
  } catch (const std::exception& e) {
    return invalidModel("ONNX checker: " + firstLine(e.what()));
  }
  return Status::ok();
}

Status validateProto(onnx::ModelProto& proto, std::vector<std::string>* notes) {
  int64_t opset = -1;
  for (const auto& o : proto.opset_import())
    if (isDefaultDomain(o.domain())) opset = o.version();
  if (opset > newestKnownOpset()) {
    if (notes)
      notes->push_back("libonnx knows opsets up to " + std::to_string(newestKnownOpset()) +
                       " (IR " + std::to_string(onnx::IR_VERSION) +
                       "): the ONNX checker and strict shape inference cannot check this opset-" +
                       std::to_string(opset) + " model");
    return Status::ok();
  }
  try {
    onnx::checker::check_model(proto);
  } catch (const std::exception& e) {
    return invalidModel("ONNX checker: " + firstLine(e.what()));
  }
  ParkedWeights parked(proto);
  onnx::ModelProto copy = proto;  // small: weights are parked
  parked.restore(proto);
  NNC_RETURN_IF_ERROR(inferStrictly(std::move(copy)));
  if (notes) {
    if (std::string note = uncheckedOpsNote(proto); !note.empty()) notes->push_back(note);
  }
  return Status::ok();
}

}  // namespace onnx_io_internal

int64_t newestKnownOpset() { return newestKnownVersion(""); }

int64_t irVersionForOpset(int64_t opset) {
  // onnx/helper.py VERSION_TABLE: (opset of ai.onnx, IR version) of each release.
  constexpr std::pair<int64_t, int64_t> kTable[] = {{8, 3},  {9, 4},  {10, 5}, {11, 6},
                                                    {14, 7}, {18, 8}, {20, 9}, {21, 10}};
  for (const auto& [max_opset, ir] : kTable)
    if (opset <= max_opset) return ir;
  return 10;
}

Status convertOpset(Model& model, int64_t target) {
  const int64_t from = model.opsetVersion("");
  if (from == target) return Status::ok();
  if (from < 1) return unsupported("the model imports no ai.onnx opset to convert");
  if (target < 1 || target > newestKnownOpset())
    return unsupported("opset " + std::to_string(target) +
                       " is outside what this build's ONNX version converter knows (1.." +
                       std::to_string(newestKnownOpset()) + ")");
  if (from > newestKnownOpset())
    return unsupported("the model's opset " + std::to_string(from) +
                       " is newer than this build's ONNX version converter knows");
  onnx::ModelProto proto;
  modelToProto(model, /*release=*/true, &proto);
  // Our own types as value_info: the adapters that rewrite ops by shape need them, and ours are
  // often more complete than ONNX's (folded shape subgraphs). Dropped again afterwards.
  std::unordered_set<std::string> hints;
  for (const auto& v : model.graph->values()) {
    if (v->isInitializer() || v->isGraphInput() || model.graph->isOutput(v.get()) ||
        v->listedInValueInfo() || !v->type().isTensor() || v->dtype() == DType::kUndefined)
      continue;
    auto* vi = proto.mutable_graph()->add_value_info();
    vi->set_name(v->name());
    valueTypeToProto(v->type(), vi->mutable_type());
    hints.insert(v->name());
  }
  ParkedWeights parked(proto);
  onnx::ModelProto converted;
  std::string failure;
  try {
    converted = onnx::version_conversion::ConvertVersion(proto, static_cast<int>(target));
  } catch (const std::exception& e) {
    failure = firstLine(e.what());
  }
  onnx::ModelProto& result = failure.empty() ? converted : proto;
  parked.restore(result);
  auto* value_info = result.mutable_graph()->mutable_value_info();
  value_info->erase(
      std::remove_if(value_info->begin(), value_info->end(),
                     [&](const onnx::ValueInfoProto& vi) { return hints.count(vi.name()) > 0; }),
      value_info->end());
  if (failure.empty()) {
    result.set_ir_version(std::max<int64_t>(model.ir_version, irVersionForOpset(target)));
  }
  // Either way the model is rebuilt from `result` (its bytes were moved into the proto).
  int64_t external = 0;
  auto rebuilt = modelFromProto(result, {}, &external);
  if (!rebuilt.isOk())
    return internalError("rebuilding the model after opset conversion: " +
                         rebuilt.status().message());
  model = std::move(rebuilt).value();
  NNC_RETURN_IF_ERROR(inferShapes(model));
  if (!failure.empty())
    return unsupported("ONNX's version converter cannot convert opset " + std::to_string(from) +
                       " to " + std::to_string(target) + ": " + failure);
  return Status::ok();
}

Status checkShapesStrictly(const Model& model, std::string* note) {
  NNC_RETURN_IF_ERROR(inferStrictlyOnIr(model, note));
  NNC_RETURN_IF_ERROR(checkWeightChannels(model));
  return checkShapeInputs(model);
}

}  // namespace nnc
