#include "nncompress/analysis/fidelity_taps.h"

#include <algorithm>
#include <set>

#include "nncompress/ir/subgraph.h"

namespace nnc {
namespace {

// Ops whose outputs' length or order depends on the values they read (NonZero: the score
// thresholds torchvision's SSD applies per class before its NMS; TopK: the proposals a two-stage
// detector keeps, whose order flips when two scores swap by a rounding step).
const std::set<std::string> kSelectionOps = {"NonMaxSuppression", "NonZero", "TopK"};

bool isSelection(const Node& n);

// A subgraph that selects (torchvision runs its NonMaxSuppression inside an If).
bool bodySelects(const Node& n) {
  for (const Attribute& a : n.attributes()) {
    if (a.kind != AttrKind::kGraph && a.kind != AttrKind::kGraphs) continue;
    for (const std::string& bytes : a.opaque) {
      auto body = parseSubgraph(bytes, Model{});
      if (!body.isOk()) continue;
      for (const auto& inner : body->graph->nodes())
        if (isSelection(*inner)) return true;
    }
  }
  return false;
}

bool isSelection(const Node& n) {
  if (!n.isDefaultDomain()) return false;
  return kSelectionOps.count(n.opType()) || (!n.implicitInputs().empty() && bodySelects(n));
}

// What a selection reads: its inputs, and the outer values its subgraphs read.
std::vector<const Value*> readsOf(const Node& n) {
  std::vector<const Value*> reads(n.inputs().begin(), n.inputs().end());
  reads.insert(reads.end(), n.implicitInputs().begin(), n.implicitInputs().end());
  return reads;
}

}  // namespace

// Values computed from a selection's output, directly or not.
std::set<const Value*> afterSelections(const Graph& graph) {
  std::set<const Value*> after;
  auto order = graph.topologicalOrder();
  if (!order.isOk()) return after;
  for (const Node* n : *order) {
    bool fed = isSelection(*n);
    for (const Value* in : readsOf(*n)) fed = fed || (in && after.count(in));
    if (fed)
      for (const Value* out : n->outputs())
        if (out) after.insert(out);
  }
  return after;
}

std::vector<std::string> fidelityTaps(const Graph& graph) {
  const std::set<const Value*> after = afterSelections(graph);
  std::vector<std::string> taps;
  std::set<std::string> seen;
  auto add = [&](const Value* v) {
    if (v && seen.insert(v->name()).second) taps.push_back(v->name());
  };
  for (const Value* out : graph.outputs())
    if (!after.count(out)) add(out);
  // The float values that flow into the selection-dependent part of the graph.
  for (const auto& n : graph.nodes()) {
    const auto reads = readsOf(*n);
    const bool inside =
        isSelection(*n) || std::any_of(reads.begin(), reads.end(),
                                       [&](const Value* in) { return in && after.count(in); });
    if (!inside) continue;
    for (const Value* in : reads)
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
