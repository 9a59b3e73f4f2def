// ModelProto <-> Model. Loading validates what the IR relies on (names defined once, every input
// defined, no cycles, tensor data matching its shape) and keeps the rest verbatim.

#include <cstring>
#include <unordered_set>

#include "proto_convert.h"

namespace nnc::onnx_io_internal {
namespace {

using onnx::AttributeProto;
using onnx::GraphProto;
using onnx::NodeProto;

std::string nodeLabel(const NodeProto& n, int index) {
  return "node " + (n.name().empty() ? "#" + std::to_string(index) : "'" + n.name() + "'") + " (" +
         n.op_type() + ")";
}

// Names a subgraph reads from enclosing scopes: used but not defined inside (recursively).
void collectOuterReferences(const GraphProto& g, std::unordered_set<std::string> defined,
                            std::vector<std::string>& out) {
  for (const auto& i : g.input()) defined.insert(i.name());
  for (const auto& i : g.initializer()) defined.insert(i.name());
  for (const auto& i : g.sparse_initializer()) defined.insert(i.values().name());
  for (const auto& n : g.node())
    for (const auto& o : n.output()) defined.insert(o);
  auto visit = [&](const std::string& name) {
    if (!name.empty() && !defined.count(name)) out.push_back(name);
  };
  for (const auto& n : g.node()) {
    for (const auto& i : n.input()) visit(i);
    for (const auto& a : n.attribute()) {
      if (a.has_g()) collectOuterReferences(a.g(), defined, out);
      for (const auto& sub : a.graphs()) collectOuterReferences(sub, defined, out);
    }
  }
  for (const auto& o : g.output()) visit(o.name());
}

// Old writers leave an attribute's `type` unset; infer it from the field that is present.
AttributeProto::AttributeType inferAttributeType(const AttributeProto& a) {
  using T = AttributeProto;
  const std::pair<bool, T::AttributeType> present[] = {{a.has_f(), T::FLOAT},
                                                       {a.has_i(), T::INT},
                                                       {a.has_s(), T::STRING},
                                                       {a.has_t(), T::TENSOR},
                                                       {a.has_g(), T::GRAPH},
                                                       {a.floats_size() > 0, T::FLOATS},
                                                       {a.ints_size() > 0, T::INTS},
                                                       {a.strings_size() > 0, T::STRINGS},
                                                       {a.tensors_size() > 0, T::TENSORS},
                                                       {a.graphs_size() > 0, T::GRAPHS},
                                                       {!a.ref_attr_name().empty(), T::INT}};
  for (const auto& [has, type] : present)
    if (has) return type;
  return T::UNDEFINED;
}

// The attribute kinds whose payload is kept as serialized bytes (subgraphs, sparse tensors,
// type protos): the IR does not look inside them.
Status opaqueAttributeFromProto(const AttributeProto& a, Attribute& out) {
  using T = AttributeProto;
  switch (a.type()) {
    case T::GRAPH:
      out.kind = AttrKind::kGraph;
      out.opaque.push_back(a.g().SerializeAsString());
      return Status::ok();
    case T::SPARSE_TENSOR:
      out.kind = AttrKind::kSparseTensor;
      out.opaque.push_back(a.sparse_tensor().SerializeAsString());
      return Status::ok();
    case T::TYPE_PROTO:
      out.kind = AttrKind::kTypeProto;
      out.opaque.push_back(a.tp().SerializeAsString());
      return Status::ok();
    case T::GRAPHS:
      out.kind = AttrKind::kGraphs;
      for (const auto& g : a.graphs()) out.opaque.push_back(g.SerializeAsString());
      return Status::ok();
    case T::SPARSE_TENSORS:
      out.kind = AttrKind::kSparseTensors;
      for (const auto& s : a.sparse_tensors()) out.opaque.push_back(s.SerializeAsString());
      return Status::ok();
    case T::TYPE_PROTOS:
      out.kind = AttrKind::kTypeProtos;
      for (const auto& tp : a.type_protos()) out.opaque.push_back(tp.SerializeAsString());
      return Status::ok();
    default:
      return invalidModel("attribute '" + a.name() + "' has unknown type " +
                          std::to_string(a.type()));
  }
}

StatusOr<Attribute> attributeFromProto(AttributeProto& a, const std::filesystem::path& base_dir,
                                       int64_t* external_bytes) {
  Attribute out;
  out.name = a.name();
  out.ref_attr_name = a.ref_attr_name();
  out.doc_string = a.doc_string();
  using T = AttributeProto;
  if (a.type() == T::UNDEFINED) a.set_type(inferAttributeType(a));
  if (a.type() == T::UNDEFINED)
    return invalidModel("attribute '" + a.name() + "' has no type and no value");
  switch (a.type()) {
    case T::FLOAT:
      out.kind = AttrKind::kFloat;
      out.f = a.f();
      break;
    case T::INT:
      out.kind = AttrKind::kInt;
      out.i = a.i();
      break;
    case T::STRING:
      out.kind = AttrKind::kString;
      out.s = a.s();
      break;
    case T::TENSOR: {
      out.kind = AttrKind::kTensor;
      auto t = tensorFromProto(*a.mutable_t(), base_dir, external_bytes);
      if (!t.isOk()) return t.status().withContext("attribute '" + a.name() + "'");
      out.tensors.push_back(std::move(t).value());
      break;
    }
    case T::FLOATS:
      out.kind = AttrKind::kFloats;
      out.floats.assign(a.floats().begin(), a.floats().end());
      break;
    case T::INTS:
      out.kind = AttrKind::kInts;
      out.ints.assign(a.ints().begin(), a.ints().end());
      break;
    case T::STRINGS:
      out.kind = AttrKind::kStrings;
      out.strings.assign(a.strings().begin(), a.strings().end());
      break;
    case T::TENSORS:
      out.kind = AttrKind::kTensors;
      for (auto& tp : *a.mutable_tensors()) {
        auto t = tensorFromProto(tp, base_dir, external_bytes);
        if (!t.isOk()) return t.status().withContext("attribute '" + a.name() + "'");
        out.tensors.push_back(std::move(t).value());
      }
      break;
    default:
      NNC_RETURN_IF_ERROR(opaqueAttributeFromProto(a, out));
  }
  return out;
}

void attributeToProto(Attribute& a, bool release, AttributeProto* p) {
  p->set_name(a.name);
  if (!a.ref_attr_name.empty()) p->set_ref_attr_name(a.ref_attr_name);
  if (!a.doc_string.empty()) p->set_doc_string(a.doc_string);
  using T = AttributeProto;
  switch (a.kind) {
    case AttrKind::kFloat:
      p->set_type(T::FLOAT);
      p->set_f(a.f);
      break;
    case AttrKind::kInt:
      p->set_type(T::INT);
      p->set_i(a.i);
      break;
    case AttrKind::kString:
      p->set_type(T::STRING);
      p->set_s(a.s);
      break;
    case AttrKind::kTensor:
      p->set_type(T::TENSOR);
      tensorToProto(a.tensors.at(0), release, p->mutable_t());
      break;
    case AttrKind::kGraph:
      p->set_type(T::GRAPH);
      p->mutable_g()->ParseFromString(a.opaque.at(0));
      break;
    case AttrKind::kSparseTensor:
      p->set_type(T::SPARSE_TENSOR);
      p->mutable_sparse_tensor()->ParseFromString(a.opaque.at(0));
      break;
    case AttrKind::kTypeProto:
      p->set_type(T::TYPE_PROTO);
      p->mutable_tp()->ParseFromString(a.opaque.at(0));
      break;
    case AttrKind::kFloats:
      p->set_type(T::FLOATS);
      for (float f : a.floats) p->add_floats(f);
      break;
    case AttrKind::kInts:
      p->set_type(T::INTS);
      for (int64_t i : a.ints) p->add_ints(i);
      break;
    case AttrKind::kStrings:
      p->set_type(T::STRINGS);
      for (const auto& s : a.strings) p->add_strings(s);
      break;
    case AttrKind::kTensors:
      p->set_type(T::TENSORS);
      for (Tensor& t : a.tensors) tensorToProto(t, release, p->add_tensors());
      break;
    case AttrKind::kGraphs:
      p->set_type(T::GRAPHS);
      for (const auto& s : a.opaque) p->add_graphs()->ParseFromString(s);
      break;
    case AttrKind::kSparseTensors:
      p->set_type(T::SPARSE_TENSORS);
      for (const auto& s : a.opaque) p->add_sparse_tensors()->ParseFromString(s);
      break;
    case AttrKind::kTypeProtos:
      p->set_type(T::TYPE_PROTOS);
      for (const auto& s : a.opaque) p->add_type_protos()->ParseFromString(s);
      break;
  }
}

// A SparseTensorProto as the dense tensor it stands for (zeros where no value is given), so a
// sparse initializer is an ordinary initializer the graph can read. Indices are [NNZ] linear
// offsets or [NNZ, rank] coordinates (ONNX IR spec).
StatusOr<Tensor> densify(onnx::SparseTensorProto& sp, const std::filesystem::path& base_dir,
                         int64_t* external_bytes) {
  NNC_ASSIGN_OR_RETURN(Tensor values,
                       tensorFromProto(*sp.mutable_values(), base_dir, external_bytes));
  NNC_ASSIGN_OR_RETURN(Tensor indices,
                       tensorFromProto(*sp.mutable_indices(), base_dir, external_bytes));
  const Shape dense_shape(sp.dims().begin(), sp.dims().end());
  const int64_t element = storageBytes(values.dtype(), 1);
  if (values.dtype() == DType::kString || element * 2 != storageBytes(values.dtype(), 2))
    return unsupported(std::string("sparse ") + dtypeName(values.dtype()) +
                       " values are not supported");
  int64_t dense_numel = 1;
  for (int64_t d : dense_shape) {
    // Bounded so a corrupt file cannot ask for an absurd allocation (2^34 elements).
    if (d < 0 || (d > 0 && dense_numel > (int64_t{1} << 34) / d))
      return invalidModel("sparse tensor dims " + shapeToString(dense_shape) + " are invalid");
    dense_numel *= d;
  }
  const int64_t nnz = values.numel(), rank = static_cast<int64_t>(dense_shape.size());
  if (values.rank() != 1) return invalidModel("sparse tensor values must be 1-D");
  const bool linear = indices.rank() == 1;
  if (nnz > 0 && !((linear && indices.dim(0) == nnz) ||
                   (indices.rank() == 2 && indices.dim(0) == nnz && indices.dim(1) == rank)))
    return invalidModel("sparse tensor indices " + shapeToString(indices.shape()) + " do not fit " +
                        std::to_string(nnz) + " values of rank " + std::to_string(rank));
  Tensor dense(values.dtype(), dense_shape);
  const std::vector<int64_t> index = nnz > 0 ? indices.toInt64Vector() : std::vector<int64_t>();
  for (int64_t i = 0; i < nnz; ++i) {
    int64_t offset = linear ? index[i] : 0;
    for (int64_t a = 0; !linear && a < rank; ++a) {
      const int64_t c = index[i * rank + a];
      if (c < 0 || c >= dense_shape[a]) offset = -1;
      if (offset >= 0) offset = offset * dense_shape[a] + c;
    }
    if (offset < 0 || offset >= dense.numel())
      return invalidModel("sparse tensor index " + std::to_string(i) + " is out of range");
    std::memcpy(dense.mutableBytes().data() + offset * element, values.bytes().data() + i * element,
                static_cast<size_t>(element));
  }
  return dense;
}

// Graph inputs first, then initializers (which may also be inputs, as IR < 4 requires).
Status addGraphInputs(const GraphProto& gp, Graph& graph) {
  for (const auto& in : gp.input()) {
    auto v = graph.createValue(in.name());
    if (!v.isOk()) return v.status().withContext("graph input");
    v.value()->setType(valueTypeFromProto(in.type()));
    v.value()->setDocString(in.doc_string());
    graph.addInput(v.value());
  }
  return Status::ok();
}

// The value an initializer named `name` attaches to: a graph input of that name or a new value.
StatusOr<Value*> initializerValue(const std::string& name, Graph& graph) {
  Value* v = graph.findValue(name);
  if (v && v->isInitializer()) return invalidModel("initializer '" + name + "' is defined twice");
  if (v) return v;
  return graph.createValue(name);
}

Status addInitializers(GraphProto& gp, const std::filesystem::path& base_dir, Graph& graph,
                       int64_t* external_bytes) {
  for (auto& init : *gp.mutable_initializer()) {
    if (init.name().empty()) return invalidModel("an initializer has no name");
    auto tensor = tensorFromProto(init, base_dir, external_bytes);
    if (!tensor.isOk()) return tensor.status().withContext("initializer '" + init.name() + "'");
    NNC_ASSIGN_OR_RETURN(Value * v, initializerValue(init.name(), graph));
    // Found by fuzz/loader_fuzzer.cc: a graph input declared as a sequence/optional/map but
    // backed by a (tensor) initializer used to keep the non-tensor type, leaving an initializer
    // whose type disagrees with its data (verifyModel then failed). Such a file is malformed.
    if (v->isGraphInput() && !v->type().isTensor())
      return invalidModel("graph input '" + init.name() +
                          "' has a non-tensor type but an initializer (a tensor)");
    v->setInitializer(std::move(tensor).value());
    // Free the proto's copy of anything not moved (typed fields) as we go.
    init.Clear();
  }
  for (auto& sparse : *gp.mutable_sparse_initializer()) {
    const std::string name = sparse.values().name();
    if (name.empty()) return invalidModel("a sparse initializer has no name");
    auto tensor = densify(sparse, base_dir, external_bytes);
    if (!tensor.isOk()) return tensor.status().withContext("sparse initializer '" + name + "'");
    NNC_ASSIGN_OR_RETURN(Value * v, initializerValue(name, graph));
    v->setInitializer(std::move(tensor).value());
  }
  return Status::ok();
}

// One node with its outputs and attributes; inputs are connected later (they may refer forward).
StatusOr<Node*> createNode(NodeProto& np, int index, const std::filesystem::path& base_dir,
                           Graph& graph, int64_t* external_bytes) {
  if (np.op_type().empty()) return invalidModel(nodeLabel(np, index) + " has no op_type");
  std::vector<std::string> outputs;
  for (const auto& o : np.output()) {
    if (!o.empty() && graph.findValue(o))
      return invalidModel(nodeLabel(np, index) + " output '" + o +
                          "' is already defined elsewhere");
    outputs.push_back(o);
  }
  Node* node = graph.addNode(np.op_type(), {}, outputs, np.domain());
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (!outputs[k].empty() && node->output(k)->name() != outputs[k])
      return invalidModel(nodeLabel(np, index) + " lists output '" + outputs[k] + "' twice");
  }
  node->setName(np.name());
  node->setDocString(np.doc_string());
  for (auto& ap : *np.mutable_attribute()) {
    auto attr = attributeFromProto(ap, base_dir, external_bytes);
    if (!attr.isOk()) return attr.status().withContext(nodeLabel(np, index));
    if (node->hasAttribute(attr->name))
      return invalidModel(nodeLabel(np, index) + " has attribute '" + attr->name + "' twice");
    node->setAttribute(std::move(attr).value());
  }
  return node;
}

// A node's inputs, and as implicit inputs the outer values its subgraphs read.
Status connectNodeInputs(const NodeProto& np, int index, Graph& graph, Node* node) {
  for (const auto& in : np.input()) {
    if (in.empty()) {
      node->addInput(nullptr);
      continue;
    }
    Value* v = graph.findValue(in);
    if (!v)
      return invalidModel(nodeLabel(np, index) + " input '" + in +
                          "' is not defined by any node, graph input or initializer");
    node->addInput(v);
  }
  std::vector<std::string> outer;
  for (const auto& a : np.attribute()) {
    if (a.has_g()) collectOuterReferences(a.g(), {}, outer);
    for (const auto& sub : a.graphs()) collectOuterReferences(sub, {}, outer);
  }
  for (const std::string& name : outer) {
    Value* v = graph.findValue(name);
    if (!v)
      return invalidModel(nodeLabel(np, index) + " subgraph reads '" + name +
                          "', which is not defined");
    node->addImplicitInput(v);
  }
  return Status::ok();
}

// Nodes: create all outputs first so inputs may refer forward (cycles are caught by the sort).
Status addNodes(GraphProto& gp, const std::filesystem::path& base_dir, Graph& graph,
                int64_t* external_bytes) {
  std::vector<Node*> nodes;
  nodes.reserve(gp.node_size());
  for (int i = 0; i < gp.node_size(); ++i) {
    NNC_ASSIGN_OR_RETURN(Node * node,
                         createNode(*gp.mutable_node(i), i, base_dir, graph, external_bytes));
    nodes.push_back(node);
  }
  for (int i = 0; i < gp.node_size(); ++i)
    NNC_RETURN_IF_ERROR(connectNodeInputs(gp.node(i), i, graph, nodes[i]));
  gp.clear_node();
  return Status::ok();
}

Status addOutputsAndValueInfo(const GraphProto& gp, Graph& graph) {
  for (const auto& out : gp.output()) {
    Value* v = graph.findValue(out.name());
    if (!v) return invalidModel("graph output '" + out.name() + "' is not produced by any node");
    v->setType(valueTypeFromProto(out.type()));
    if (v->isInitializer() && v->type().dtype != v->initializer()->dtype())
      return invalidModel("graph output '" + out.name() + "' type disagrees with its initializer");
    graph.addOutput(v);
  }
  for (const auto& vi : gp.value_info()) {
    Value* v = graph.findValue(vi.name());
    if (!v) continue;  // value_info for a name that does not exist: harmless, dropped
    if (!v->isInitializer()) v->setType(valueTypeFromProto(vi.type()));
    v->setListedInValueInfo(true);
    v->setDocString(vi.doc_string());
  }
  return Status::ok();
}

Status graphFromProto(GraphProto& gp, const std::filesystem::path& base_dir, Graph& graph,
                      int64_t* external_bytes) {
  graph.setName(gp.name());
  graph.setDocString(gp.doc_string());
  NNC_RETURN_IF_ERROR(addGraphInputs(gp, graph));
  NNC_RETURN_IF_ERROR(addInitializers(gp, base_dir, graph, external_bytes));
  for (const auto& q : gp.quantization_annotation())
    graph.quantizationAnnotations().push_back(q.SerializeAsString());
  NNC_RETURN_IF_ERROR(addNodes(gp, base_dir, graph, external_bytes));
  NNC_RETURN_IF_ERROR(addOutputsAndValueInfo(gp, graph));
  return graph.sortTopologically();
}

void valueInfoToProto(const Value* v, onnx::ValueInfoProto* p) {
  p->set_name(v->name());
  if (!v->docString().empty()) p->set_doc_string(v->docString());
  valueTypeToProto(v->type(), p->mutable_type());
}

}  // namespace

StatusOr<Model> modelFromProto(onnx::ModelProto& proto, const std::filesystem::path& base_dir,
                               int64_t* external_bytes_read) {
  if (!proto.has_graph()) return invalidModel("the file has no graph (is it an ONNX model?)");
  if (!proto.has_ir_version())
    return invalidModel("the file has no ir_version (is it an ONNX model?)");
  Model model;
  model.ir_version = proto.ir_version();
  for (const auto& op : proto.opset_import())
    model.opset_imports.push_back({op.domain(), op.version()});
  model.producer_name = proto.producer_name();
  model.producer_version = proto.producer_version();
  model.domain = proto.domain();
  model.model_version = proto.model_version();
  model.doc_string = proto.doc_string();
  for (const auto& kv : proto.metadata_props())
    model.metadata_props.emplace_back(kv.key(), kv.value());
  for (const auto& f : proto.functions()) model.functions.push_back(f.SerializeAsString());
  for (const auto& t : proto.training_info()) model.training_info.push_back(t.SerializeAsString());
  NNC_RETURN_IF_ERROR(
      graphFromProto(*proto.mutable_graph(), base_dir, *model.graph, external_bytes_read));
  return model;
}

StatusOr<Model> subgraphModelFromProto(const std::string& serialized, const Model& parent) {
  GraphProto gp;
  if (!gp.ParseFromString(serialized)) return invalidModel("a subgraph does not parse");
  std::vector<std::string> outer;
  collectOuterReferences(gp, {}, outer);
  std::unordered_set<std::string> added;
  for (const std::string& name : outer)  // read from enclosing scopes: fed like inputs
    if (added.insert(name).second) gp.add_input()->set_name(name);
  Model model;
  model.ir_version = parent.ir_version;
  model.opset_imports = parent.opset_imports;
  NNC_RETURN_IF_ERROR(graphFromProto(gp, {}, *model.graph, nullptr));
  return model;
}

void modelToProto(Model& model, bool release, onnx::ModelProto* proto) {
  proto->set_ir_version(model.ir_version);
  for (const auto& op : model.opset_imports) {
    auto* o = proto->add_opset_import();
    o->set_domain(op.domain);
    o->set_version(op.version);
  }
  if (!model.producer_name.empty()) proto->set_producer_name(model.producer_name);
  if (!model.producer_version.empty()) proto->set_producer_version(model.producer_version);
  if (!model.domain.empty()) proto->set_domain(model.domain);
  if (model.model_version) proto->set_model_version(model.model_version);
  if (!model.doc_string.empty()) proto->set_doc_string(model.doc_string);
  for (const auto& [k, v] : model.metadata_props) {
    auto* e = proto->add_metadata_props();
    e->set_key(k);
    e->set_value(v);
  }
  for (const auto& f : model.functions) proto->add_functions()->ParseFromString(f);
  for (const auto& t : model.training_info) proto->add_training_info()->ParseFromString(t);

  Graph& graph = *model.graph;
  GraphProto* gp = proto->mutable_graph();
  gp->set_name(graph.name());
  if (!graph.docString().empty()) gp->set_doc_string(graph.docString());
  for (const Value* v : graph.inputs()) valueInfoToProto(v, gp->add_input());
  for (Value* v : graph.initializers()) {
    auto* t = gp->add_initializer();
    t->set_name(v->name());
    tensorToProto(*v->mutableInitializer(), release, t);
  }
  for (const auto& s : graph.sparseInitializers()) gp->add_sparse_initializer()->ParseFromString(s);
  for (const auto& n : graph.nodes()) {
    auto* np = gp->add_node();
    for (const Value* in : n->inputs()) np->add_input(in ? in->name() : "");
    for (const Value* out : n->outputs()) np->add_output(out ? out->name() : "");
    if (!n->name().empty()) np->set_name(n->name());
    np->set_op_type(n->opType());
    if (!n->domain().empty()) np->set_domain(n->domain());
    if (!n->docString().empty()) np->set_doc_string(n->docString());
    for (Attribute& a : n->mutableAttributes()) attributeToProto(a, release, np->add_attribute());
  }
  for (const Value* v : graph.outputs()) valueInfoToProto(v, gp->add_output());
  for (const auto& v : graph.values()) {
    if (v->listedInValueInfo() && !v->isGraphInput() && !graph.isOutput(v.get()))
      valueInfoToProto(v.get(), gp->add_value_info());
  }
  for (const auto& q : graph.quantizationAnnotations())
    gp->add_quantization_annotation()->ParseFromString(q);
}

}  // namespace nnc::onnx_io_internal
