#include "nncompress/prune/surgery.h"

#include <map>
#include <set>

#include "nncompress/ir/verify.h"
#include "nncompress/onnx_io/model_io.h"

namespace nnc {
namespace {

Status validate(const ChannelAnalysis& analysis, const std::vector<GroupKeep>& keeps) {
  for (const GroupKeep& k : keeps) {
    if (k.group_id < 0 || k.group_id >= static_cast<int>(analysis.groups.size()))
      return invalidArgument("no channel group " + std::to_string(k.group_id));
    const ChannelGroup& g = analysis.groups[k.group_id];
    if (!g.prunable)
      return invalidArgument("group " + std::to_string(g.id) + " is not prunable: " + g.reason);
    if (k.keep.empty())
      return invalidArgument("group " + std::to_string(g.id) + ": at least one channel must stay");
    for (size_t i = 0; i < k.keep.size(); ++i) {
      if (k.keep[i] < 0 || k.keep[i] >= g.channels || (i && k.keep[i] <= k.keep[i - 1]))
        return invalidArgument("group " + std::to_string(g.id) +
                               ": keep-list must be ascending channel indices below " +
                               std::to_string(g.channels));
    }
  }
  return Status::ok();
}

int inputIndexOf(const Node& n, const Value* v) {
  for (size_t i = 0; i < n.numInputs(); ++i)
    if (n.input(i) == v) return static_cast<int>(i);
  return -1;
}

}  // namespace

Status applyChannelPruning(Model& model, const ChannelAnalysis& analysis,
                           const std::vector<GroupKeep>& keeps) {
  NNC_RETURN_IF_ERROR(validate(analysis, keeps));
  Graph& graph = *model.graph;

  // 1. Each (node, input) weight that will be sliced gets its own initializer, so slicing one
  //    layer's copy never changes another's (exporters share equal tensors, e.g. via Identity).
  // Removed indices per (node, input) and axis, from every group: a tensor can hold several
  // groups' channels (a Conv weight: outputs on axis 0, inputs on axis 1; a layer after a Concat:
  // one range per part), so each axis keeps everything no group removes.
  std::map<std::pair<Node*, int>, std::map<int, std::set<int64_t>>> removed;
  for (const GroupKeep& k : keeps) {
    const ChannelGroup& g = analysis.groups[k.group_id];
    std::vector<int64_t> dropped;
    for (int64_t c = 0, i = 0; c < g.channels; ++c) {
      if (i < static_cast<int64_t>(k.keep.size()) && k.keep[i] == c)
        ++i;
      else
        dropped.push_back(c);
    }
    for (const GroupMember& m : g.members) {
      if (m.role == MemberRole::kActivation) continue;
      Node* node = const_cast<Node*>(m.node);
      const int index = inputIndexOf(*node, m.value);
      if (index < 0) return internalError("channel analysis is stale: member not read by its node");
      auto& axis_set = removed[{node, index}][m.axis];
      for (int64_t idx : m.mapping.indices(dropped)) axis_set.insert(idx);
    }
  }
  for (auto& [key, axes] : removed) {
    auto [node, index] = key;
    Value* v = node->input(index);
    const bool exclusive =
        v->isInitializer() && v->uses().size() == 1 && !v->isGraphInput() && !v->isGraphOutput();
    Tensor data = *v->constantData();
    for (const auto& [axis, gone] : axes) {
      std::vector<int64_t> keep;
      for (int64_t i = 0; i < data.dim(axis); ++i)
        if (!gone.count(i)) keep.push_back(i);
      auto sliced = data.gather(axis, keep);
      if (!sliced.isOk()) return sliced.status().withContext("slicing '" + v->name() + "'");
      data = std::move(sliced).value();
    }
    if (exclusive) {
      v->setInitializer(std::move(data));
    } else {
      node->setInput(index, graph.addInitializer(v->name() + "_pruned", std::move(data)));
    }
  }

  // 2. Attributes and shape constants that spell out channel counts.
  for (const GroupKeep& k : keeps) {
    const ChannelGroup& g = analysis.groups[k.group_id];
    const int64_t removed = g.channels - static_cast<int64_t>(k.keep.size());
    for (const Node* cn : g.group_attr_nodes) {
      Node* n = const_cast<Node*>(cn);
      n->setAttribute(Attribute::makeInt("group", n->intAttr("group", 1) - removed));
    }
    for (const Node* cn : g.reshape_nodes) {
      Node* n = const_cast<Node*>(cn);
      const Tensor* target = n->input(1) ? n->input(1)->constantData() : nullptr;
      if (!target) continue;  // computed at run time from Shape: follows by itself
      std::vector<int64_t> dims = target->toInt64Vector();
      if (dims.size() < 2 || dims[1] <= 0) continue;  // -1 / 0 follow by themselves
      int64_t repeat = 1;
      for (const GroupMember& m : g.members)
        if (m.value == n->output(0)) repeat = m.mapping.repeat;
      dims[1] -= removed * repeat;
      n->setInput(1, graph.addInitializer(
                         n->input(1)->name() + "_pruned",
                         Tensor::fromVector<int64_t>({static_cast<int64_t>(dims.size())}, dims)));
    }
  }
  graph.removeDeadNodes();

  // 3. Every intermediate shape is stale: forget them and infer again.
  for (const auto& v : graph.values()) {
    if (v->isGraphInput() || v->isInitializer() || v->isGraphOutput()) continue;
    ValueType t = v->type();
    if (!t.isTensor()) continue;
    t.shape.reset();
    v->setType(t);
  }
  NNC_RETURN_IF_ERROR(inferShapes(model).withContext("re-inferring shapes after pruning"));
  return verifyModel(model).withContext("graph invalid after pruning");
}

}  // namespace nnc
