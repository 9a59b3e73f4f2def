#include "nncompress/ir/verify.h"

#include <algorithm>
#include <unordered_set>

namespace nnc {
namespace {

std::string describe(const Node* n) { return "node '" + n->name() + "' (" + n->opType() + ")"; }

}  // namespace

Status verifyGraph(const Graph& graph) {
  std::unordered_set<const Value*> owned;
  for (const auto& v : graph.values()) owned.insert(v.get());
  std::unordered_set<const Node*> nodes;
  for (const auto& n : graph.nodes()) nodes.insert(n.get());

  for (const auto& n : graph.nodes()) {
    for (size_t i = 0; i < n->numInputs(); ++i) {
      const Value* v = n->input(i);
      if (!v) continue;
      if (!owned.count(v)) return internalError(describe(n.get()) + " reads a foreign value");
      if (!v->producer() && !v->isGraphInput() && !v->isInitializer())
        return invalidModel(describe(n.get()) + " input '" + v->name() +
                            "' is not defined by any node, graph input or initializer");
      const Use use{n.get(), static_cast<int>(i)};
      if (std::find(v->uses().begin(), v->uses().end(), use) == v->uses().end())
        return internalError("use-list of '" + v->name() + "' misses " + describe(n.get()));
    }
    for (const Value* v : n->implicitInputs()) {
      if (!v->producer() && !v->isGraphInput() && !v->isInitializer())
        return invalidModel(describe(n.get()) + " subgraph reads '" + v->name() +
                            "', which nothing defines");
    }
    for (size_t i = 0; i < n->numOutputs(); ++i) {
      const Value* v = n->output(i);
      if (!v) continue;
      if (v->producer() != n.get() || v->outputIndex() != static_cast<int>(i))
        return internalError("producer link of '" + v->name() + "' is stale");
      if (v->isInitializer() || v->isGraphInput())
        return invalidModel("'" + v->name() + "' is both produced by " + describe(n.get()) +
                            " and a graph input or initializer");
    }
  }
  for (const auto& v : graph.values()) {
    if (v->producer() && !nodes.count(v->producer()))
      return internalError("'" + v->name() + "' has a producer outside the graph");
    for (const Use& u : v->uses()) {
      if (!nodes.count(u.node)) return internalError("'" + v->name() + "' is used by a dead node");
      if (u.input_index != Use::kImplicitUse && u.node->input(u.input_index) != v.get())
        return internalError("use-list entry of '" + v->name() + "' is stale");
    }
    if (const Tensor* t = v->initializer()) {
      if (v->type().dtype != t->dtype())
        return internalError("initializer '" + v->name() + "' type disagrees with its data");
    }
  }
  for (const Value* out : graph.outputs()) {
    if (!owned.count(out)) return internalError("graph output is a foreign value");
    if (!out->producer() && !out->isGraphInput() && !out->isInitializer())
      return invalidModel("graph output '" + out->name() + "' is not defined");
  }
  auto order = graph.topologicalOrder();
  if (!order.isOk()) return order.status();
  return Status::ok();
}

Status verifyModel(const Model& model) {
  if (!model.graph) return internalError("model without graph");
  return verifyGraph(*model.graph);
}

}  // namespace nnc
