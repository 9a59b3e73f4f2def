#include <string>
#include <vector>

#include "nncompress/ir/graph.h"

// Model::clone: a structural copy in the order a save + load round trip would give (values:
// graph inputs, initializers, node outputs; nodes re-numbered in stored order, then sorted
// topologically; value_info flags as written), so a clone behaves exactly like the reloaded model
// it replaces. Tensors share their bytes (copy-on-write), so a clone costs no tensor copies.

namespace nnc {
namespace {

Value* findOrCreate(Graph& graph, const std::string& name) {
  if (Value* v = graph.findValue(name)) return v;
  return graph.createUniqueValue(name);
}

void copyNodes(const Graph& from, Graph& to) {
  std::vector<Node*> copies;
  copies.reserve(from.numNodes());
  for (const auto& n : from.nodes()) {
    std::vector<std::string> outputs;
    for (const Value* out : n->outputs()) outputs.push_back(out ? out->name() : "");
    Node* copy = to.addNode(n->opType(), {}, outputs, n->domain());
    copy->setName(n->name());
    copy->setDocString(n->docString());
    copy->mutableAttributes() = n->attributes();
    copies.push_back(copy);
  }
  for (size_t i = 0; i < copies.size(); ++i) {
    const Node& n = *from.nodes()[i];
    for (const Value* in : n.inputs()) copies[i]->addInput(in ? to.findValue(in->name()) : nullptr);
    for (const Value* in : n.implicitInputs())
      copies[i]->addImplicitInput(to.findValue(in->name()));
  }
}

}  // namespace

Model Model::clone() const {
  Model copy;
  copy.ir_version = ir_version;
  copy.opset_imports = opset_imports;
  copy.producer_name = producer_name;
  copy.producer_version = producer_version;
  copy.domain = domain;
  copy.model_version = model_version;
  copy.doc_string = doc_string;
  copy.metadata_props = metadata_props;
  copy.functions = functions;
  copy.training_info = training_info;

  const Graph& from = *graph;
  Graph& to = *copy.graph;
  to.setName(from.name());
  to.setDocString(from.docString());
  for (const Value* in : from.inputs()) {
    Value* v = to.createUniqueValue(in->name());
    v->setDocString(in->docString());
    to.addInput(v);
  }
  for (const Value* init : from.initializers())
    findOrCreate(to, init->name())->setInitializer(*init->initializer());
  to.sparseInitializers() = from.sparseInitializers();
  to.quantizationAnnotations() = from.quantizationAnnotations();
  to.setCountingSizes(from.countingSizes());
  copyNodes(from, to);
  for (const Value* out : from.outputs()) to.addOutput(to.findValue(out->name()));
  for (const auto& v : from.values()) {
    if (!v->listedInValueInfo() || v->isGraphInput() || from.isOutput(v.get())) continue;
    Value* c = to.findValue(v->name());
    c->setListedInValueInfo(true);
    c->setDocString(v->docString());
  }
  for (const auto& v : to.values())
    if (const Value* original = from.findValue(v->name())) {
      v->setType(original->type());
      if (original->provenDims()) v->setProvenDims(*original->provenDims());
    }
  Status sorted = to.sortTopologically();
  NNC_CHECK(sorted.isOk(), "clone of a graph with a cycle: " + sorted.toString());
  return copy;
}

}  // namespace nnc
