#include "nncompress/analysis/plan_cost.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_set>

#include "nncompress/analysis/model_stats.h"

namespace nnc {
namespace {

using Slot = std::pair<const Node*, int>;               // (node, input index)
using AxisRemovals = std::map<int, std::set<int64_t>>;  // axis -> removed indices

std::vector<int64_t> droppedChannels(const ChannelGroup& g, const std::vector<int64_t>& keep) {
  std::vector<int64_t> dropped;
  for (int64_t c = 0, i = 0; c < g.channels; ++c) {
    if (i < static_cast<int64_t>(keep.size()) && keep[i] == c)
      ++i;
    else
      dropped.push_back(c);
  }
  return dropped;
}

int inputIndexOf(const Node& n, const Value* v) {
  for (size_t i = 0; i < n.numInputs(); ++i)
    if (n.input(i) == v) return static_cast<int>(i);
  return -1;
}

Shape shrink(Shape shape, const AxisRemovals& axes) {
  for (const auto& [axis, gone] : axes) {
    if (axis >= static_cast<int>(shape.size())) continue;
    const int64_t dim = shape[axis];
    shape[axis] -= std::count_if(gone.begin(), gone.end(), [&](int64_t i) { return i < dim; });
  }
  return shape;
}

// What surgery would change: removed indices per weight read (node, input) and per activation,
// and every input slot that gets a new tensor (weights and shape literals).
struct PlanEffects {
  std::map<Slot, AxisRemovals> weights;
  std::map<const Value*, AxisRemovals> activations;
  std::set<Slot> replaced;

  PlanEffects(const ChannelAnalysis& analysis, const std::vector<GroupKeep>& plan) {
    for (const GroupKeep& k : plan) {
      const ChannelGroup& g = analysis.groups.at(k.group_id);
      const std::vector<int64_t> dropped = droppedChannels(g, k.keep);
      for (const GroupMember& m : g.members) {
        const std::vector<int64_t> indices = m.mapping.indices(dropped);
        if (m.role == MemberRole::kActivation) {
          activations[m.value][m.axis].insert(indices.begin(), indices.end());
          continue;
        }
        const Slot slot{m.node, inputIndexOf(*m.node, m.value)};
        weights[slot][m.axis].insert(indices.begin(), indices.end());
        replaced.insert(slot);
      }
      for (const ShapeLiteral& lit : g.shape_literals) replaced.insert({lit.node, lit.input});
    }
  }
};

class PlanShapes : public ShapeSource {
 public:
  explicit PlanShapes(const PlanEffects& effects) : effects_(effects) {}
  std::optional<Shape> input(const Node& node, size_t i) const override {
    auto w = effects_.weights.find({&node, static_cast<int>(i)});
    if (w != effects_.weights.end() && node.input(i) && node.input(i)->constantData())
      return shrink(node.input(i)->constantData()->shape(), w->second);
    return valueShape(node.input(i));
  }
  std::optional<Shape> output(const Node& node, size_t i) const override {
    return valueShape(node.output(i));
  }

 private:
  std::optional<Shape> valueShape(const Value* v) const {
    if (!v) return std::nullopt;
    std::optional<Shape> shape = oneSampleShape(*v);
    auto a = effects_.activations.find(v);
    if (shape && a != effects_.activations.end()) shape = shrink(*shape, a->second);
    return shape;
  }
  const PlanEffects& effects_;
};

// Nodes that surgery's removeDeadNodes keeps: a graph output, or an output read by a kept node
// at a slot that keeps its input.
std::unordered_set<const Node*> liveNodes(const Graph& graph, const std::vector<const Node*>& order,
                                          const std::set<Slot>& replaced) {
  std::unordered_set<const Node*> live;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    bool is_live = false;
    for (const Value* out : (*it)->outputs()) {
      if (!out) continue;
      if (graph.isOutput(out)) is_live = true;
      for (const Use& u : out->uses())
        if (live.count(u.node) && !replaced.count({u.node, u.input_index})) is_live = true;
    }
    if (is_live) live.insert(*it);
  }
  return live;
}

}  // namespace

PlanCost planCost(const Model& model, const ChannelAnalysis& analysis,
                  const std::vector<GroupKeep>& plan) {
  const Graph& graph = *model.graph;
  const PlanEffects effects(analysis, plan);
  const PlanShapes shapes(effects);
  std::vector<const Node*> order;
  if (auto sorted = graph.topologicalOrder(); sorted.isOk()) {
    order.assign(sorted->begin(), sorted->end());
  } else {
    for (const auto& n : graph.nodes()) order.push_back(n.get());
  }
  const std::unordered_set<const Node*> live = liveNodes(graph, order, effects.replaced);

  PlanCost cost;
  std::unordered_set<const Tensor*> counted, settings;
  auto count = [&](DType dtype, int64_t numel) {
    cost.params += numel;
    cost.weight_bytes += storageBytes(dtype, numel);
  };
  auto countOriginal = [&](const Tensor* t) {
    if (t && isWeightTensor(*t) && counted.insert(t).second) count(t->dtype(), t->numel());
  };
  for (const Node* n : order) {
    if (!live.count(n)) continue;
    if (auto macs = nodeMacs(*n, nullptr, &shapes)) cost.macs += *macs;
    if (n->isOp("Constant")) continue;
    for (size_t i = 0; i < n->numInputs(); ++i) {
      const Tensor* t = n->input(i) ? n->input(i)->constantData() : nullptr;
      if (!t) continue;
      const bool setting = isSettingInput(*n, i);
      if (effects.replaced.count({n, static_cast<int>(i)})) {  // a new tensor for this read
        if (!setting && isWeightTensor(*t)) {
          auto w = effects.weights.find({n, static_cast<int>(i)});
          const Shape shape =
              w == effects.weights.end() ? t->shape() : shrink(t->shape(), w->second);
          count(t->dtype(), shapeNumel(shape));
        }
        continue;
      }
      if (setting) {
        settings.insert(t);
        continue;
      }
      countOriginal(t);
    }
  }
  // Initializers that survive removeDeadNodes and no node counted.
  for (const auto& v : graph.values()) {
    if (!v->isInitializer() || settings.count(v->initializer())) continue;
    bool kept = v->isGraphInput() || graph.isOutput(v.get());
    for (const Use& u : v->uses())
      if (live.count(u.node) && !effects.replaced.count({u.node, u.input_index})) kept = true;
    if (kept) countOriginal(v->initializer());
  }
  return cost;
}

std::vector<ShrunkAxis> shrunkActivations(const ChannelAnalysis& analysis,
                                          const std::vector<GroupKeep>& plan) {
  const PlanEffects effects(analysis, plan);
  std::vector<ShrunkAxis> out;
  for (const auto& [value, axes] : effects.activations)
    for (const auto& [axis, gone] : axes)
      out.push_back({value, axis, static_cast<int64_t>(gone.size())});
  return out;
}

}  // namespace nnc
