#include "recovery_util.h"

namespace nnc::recovery {

void setConstantInput(Graph& graph, Node& node, size_t index, Tensor tensor,
                      const std::string& base) {
  Value* v = node.input(index);
  if (v && v->isInitializer() && v->uses().size() == 1 && !v->isGraphInput() &&
      !v->isGraphOutput()) {
    v->setInitializer(std::move(tensor));
    return;
  }
  Value* fresh = graph.addInitializer(v ? v->name() : base, std::move(tensor));
  if (index < node.numInputs()) {
    node.setInput(index, fresh);
  } else {
    while (node.numInputs() < index) node.addInput(nullptr);
    node.addInput(fresh);
  }
}

std::string layerName(const Node& n) {
  return !n.name().empty() ? n.name() : (n.output(0) ? n.output(0)->name() : n.opType());
}

}  // namespace nnc::recovery
