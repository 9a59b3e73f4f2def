#include <algorithm>
#include <set>

#include "nncompress/analysis/fidelity_taps.h"
#include "nncompress/ir/option_error.h"
#include "quantize_internal.h"

namespace nnc::quant {

StatusOr<std::vector<QuantTarget>> selectTargets(const Graph& graph,
                                                 const QuantizeOptions& options) {
  std::set<std::string> exclude(options.exclude.begin(), options.exclude.end());
  const std::set<std::string> float_input(options.float_activations.begin(),
                                          options.float_activations.end());
  std::set<std::string> matched;
  NNC_ASSIGN_OR_RETURN(std::vector<Node*> order, graph.topologicalOrder());
  // A layer is "last" when no quantizable layer reads (transitively) from its output.
  std::map<const Node*, bool> feeds_layer;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    bool any = false;
    for (const Value* out : (*it)->outputs()) {
      if (out == nullptr) continue;
      for (const Use& u : out->uses()) any = any || isQuantizableOp(*u.node) || feeds_layer[u.node];
    }
    feeds_layer[*it] = any;
  }
  // Layers past a data-dependent selection (a two-stage detector's box head) keep float
  // activations like the last layers: the taps that judge quantization cannot see them.
  const std::set<const Value*> after_selection = afterSelections(graph);
  std::vector<QuantTarget> targets;
  for (Node* n : order) {
    if (!isQuantizableOp(*n) || outputChannelAxis(*n) < 0) continue;
    const std::string name = displayName(*n);
    if (exclude.count(name) || exclude.count(n->output(0)->name())) {
      matched.insert(exclude.count(name) ? name : n->output(0)->name());
      continue;
    }
    // The last layers (the classifier) keep float activations unless asked; their weights are
    // still stored as int8 (per-channel weight error is small next to activation error there).
    // Auto-exclude keeps chosen layers' inputs float the same way.
    const bool float_activations = (!feeds_layer[n] && !options.quantize_last) ||
                                   after_selection.count(n->output(0)) || float_input.count(name) ||
                                   float_input.count(n->output(0)->name());
    QuantTarget t{n, name, {}};
    if (!float_activations && n->input(0) && n->input(0)->dtype() != DType::kUInt8)
      t.activation_inputs.push_back(n->input(0)->name());
    targets.push_back(std::move(t));
  }
  for (const std::string& e : exclude) {
    if (matched.count(e)) continue;
    bool exists = false;
    for (const auto& n : graph.nodes())
      exists = exists || n->name() == e || (n->output(0) && n->output(0)->name() == e);
    if (!exists)
      return invalidOption("exclude", "excluded layer '" + e + "' names no layer of the model");
  }
  return targets;
}

std::vector<std::string> valuesToCalibrate(const std::vector<QuantTarget>& targets,
                                           const QuantizeOptions& options) {
  std::vector<std::string> names;
  if (options.format == QuantFormat::kWeightsOnly) return names;
  for (const QuantTarget& t : targets) {
    names.insert(names.end(), t.activation_inputs.begin(), t.activation_inputs.end());
    if (options.format == QuantFormat::kQOperator && !t.activation_inputs.empty())
      names.push_back(t.node->output(0)->name());
  }
  if (!targets.empty()) {
    const auto planned =
        plannedCalibrationNames(planOrtQdq(*targets.front().node->graph(), targets, options));
    names.insert(names.end(), planned.begin(), planned.end());
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

}  // namespace nnc::quant
