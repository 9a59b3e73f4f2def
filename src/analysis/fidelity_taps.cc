#include "nncompress/analysis/fidelity_taps.h"

#include <set>

namespace nnc {
namespace {

// Ops whose outputs' length depends on the values they read.
const std::set<std::string> kSelectionOps = {"NonMaxSuppression"};

bool isSelection(const Node& n) { return n.isDefaultDomain() && kSelectionOps.count(n.opType()); }

// Values computed from a selection's output, directly or not.
std::set<const Value*> afterSelections(const Graph& graph) {
  std::set<const Value*> after;
  auto order = graph.topologicalOrder();
  if (!order.isOk()) return after;
  for (const Node* n : *order) {
    bool fed = isSelection(*n);
    for (const Value* in : n->inputs()) fed = fed || (in && after.count(in));
    if (fed)
      for (const Value* out : n->outputs())
        if (out) after.insert(out);
  }
  return after;
}

}  // namespace

std::vector<std::string> fidelityTaps(const Graph& graph) {
  const std::set<const Value*> after = afterSelections(graph);
  std::vector<std::string> taps;
  std::set<std::string> seen;
  auto add = [&](const Value* v) {
    if (v && seen.insert(v->name()).second) taps.push_back(v->name());
  };
  for (const Value* out : graph.outputs())
    if (!after.count(out)) add(out);
  for (const auto& n : graph.nodes()) {
    if (!isSelection(*n)) continue;
    for (const Value* in : n->inputs())
      if (in && (in->dtype() == DType::kFloat32 || in->dtype() == DType::kUndefined) &&
          in->producer() && !in->constantData() && !after.count(in))
        add(in);
  }
  return taps;
}

bool outputsFollowSelection(const Graph& graph) {
  const std::set<const Value*> after = afterSelections(graph);
  for (const Value* out : graph.outputs())
    if (after.count(out)) return true;
  return false;
}

}  // namespace nnc
