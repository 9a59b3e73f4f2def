#include "nncompress/prune/surgery.h"

#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "nncompress/ir/verify.h"

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

std::vector<int64_t> droppedChannels(const ChannelGroup& g, const GroupKeep& k) {
  std::vector<int64_t> dropped;
  for (int64_t c = 0, i = 0; c < g.channels; ++c) {
    if (i < static_cast<int64_t>(k.keep.size()) && k.keep[i] == c)
      ++i;
    else
      dropped.push_back(c);
  }
  return dropped;
}

// Orders plan entries by node creation id, not by address: new initializers are added in this
// order, and the written file must not depend on where the heap put the nodes.
struct ByNodeId {
  template <typename Key>
  bool operator()(const Key& a, const Key& b) const {
    return std::tuple(std::get<0>(a)->id(), a) < std::tuple(std::get<0>(b)->id(), b);
  }
  bool operator()(const Node* a, const Node* b) const { return a->id() < b->id(); }
};

// Everything surgery will change, computed before the model is touched.
struct Plan {
  struct NewInput {
    Node* node;
    int index;
    Tensor data;
    bool in_place;  // the initializer is read only here: keep its name
  };
  std::vector<NewInput> inputs;
  std::vector<std::pair<Node*, int64_t>> group_attrs;
  std::vector<std::pair<Node*, std::vector<int64_t>>> split_attrs;
  // Channel shuffles whose input loses channels: (shuffle, gather indices into the kept input).
  std::vector<std::pair<const ChannelShuffle*, std::vector<int64_t>>> shuffles;
};

Tensor shapeTensorLike(const Tensor& like, const std::vector<int64_t>& dims);

// The attribute holding a group count that follows the pruned channels: a depthwise Conv's
// `group`, GroupNormalization's `num_groups`.
const char* groupAttrName(const Node& n) {
  return n.isOp("GroupNormalization") ? "num_groups" : "group";
}

// Removed indices per (activation, axis) the plan shrinks.
std::map<std::pair<const Value*, int>, std::set<int64_t>> removedChannels(
    const ChannelAnalysis& analysis, const std::vector<GroupKeep>& keeps) {
  std::map<std::pair<const Value*, int>, std::set<int64_t>> removed;
  for (const GroupKeep& k : keeps) {
    const ChannelGroup& g = analysis.groups[k.group_id];
    const std::vector<int64_t> dropped = droppedChannels(g, k);
    for (const GroupMember& m : g.members)
      if (m.role == MemberRole::kActivation)
        for (int64_t i : m.mapping.indices(dropped)) removed[{m.value, m.axis}].insert(i);
  }
  return removed;
}

int64_t countBelow(const std::set<int64_t>& s, int64_t bound) {
  return static_cast<int64_t>(std::distance(s.begin(), s.lower_bound(bound)));
}

// Slices of the channel axis get constant starts/ends at the pruned positions (their computed
// bounds read the pruned channel count); a shuffle whose input shrinks becomes a Gather of the
// kept channels in the shuffled order, which is a shuffle no longer when the groups lose
// different channels.
void planMovedChannels(const ChannelAnalysis& analysis, const std::vector<GroupKeep>& keeps,
                       Plan& plan) {
  if (keeps.empty()) return;
  const auto removed = removedChannels(analysis, keeps);
  static const std::set<int64_t> kNone;
  auto removedOf = [&](const Value* v, int axis = 1) -> const std::set<int64_t>& {
    auto it = removed.find({v, axis});
    return it == removed.end() ? kNone : it->second;
  };
  for (const ChannelSlice& s : analysis.channel_slices) {
    const auto& gone = removedOf(s.node->input(0), s.axis);
    std::vector<int64_t> starts = s.starts.toInt64Vector(), ends = s.ends.toInt64Vector();
    starts[s.element] = s.start - countBelow(gone, s.start);
    ends[s.element] = s.end - countBelow(gone, s.end);
    Node* n = const_cast<Node*>(s.node);
    plan.inputs.push_back({n, 1, shapeTensorLike(s.starts, starts), false});
    plan.inputs.push_back({n, 2, shapeTensorLike(s.ends, ends), false});
  }
  for (const ChannelSplit& s : analysis.channel_splits) {
    const auto& gone = removedOf(s.node->input(0));
    std::vector<int64_t> sizes;
    for (int64_t k = 0, offset = 0; k < static_cast<int64_t>(s.sizes.size()); ++k) {
      sizes.push_back(s.sizes[k] - countBelow(gone, offset + s.sizes[k]) +
                      countBelow(gone, offset));
      offset += s.sizes[k];
    }
    if (sizes == s.sizes) continue;
    if (s.sizes_input)
      plan.inputs.push_back(
          {const_cast<Node*>(s.node), 1,
           Tensor::fromVector<int64_t>({static_cast<int64_t>(sizes.size())}, sizes), false});
    else
      plan.split_attrs.push_back({const_cast<Node*>(s.node), sizes});
  }
  for (const ChannelShuffle& sh : analysis.shuffles) {
    const auto& gone = removedOf(sh.input);
    if (gone.empty()) continue;
    std::vector<std::pair<int64_t, int64_t>> order;  // (output channel, kept input position)
    for (int64_t i = 0, kept = 0; i < static_cast<int64_t>(sh.output_of.size()); ++i)
      if (!gone.count(i)) order.push_back({sh.output_of[i], kept++});
    std::sort(order.begin(), order.end());
    std::vector<int64_t> indices;
    for (const auto& [out, in] : order) indices.push_back(in);
    plan.shuffles.push_back({&sh, std::move(indices)});
  }
}

// Removed indices per (node, input) and axis, from every group: a tensor can hold several
// groups' channels (a Conv weight: outputs on axis 0, inputs on axis 1; a layer after a Concat:
// one range per part), so each axis keeps everything no group removes.
Status planWeights(const ChannelAnalysis& analysis, const std::vector<GroupKeep>& keeps,
                   Plan& plan) {
  std::map<std::pair<Node*, int>, std::map<int, std::set<int64_t>>, ByNodeId> removed;
  for (const GroupKeep& k : keeps) {
    const ChannelGroup& g = analysis.groups[k.group_id];
    const std::vector<int64_t> dropped = droppedChannels(g, k);
    for (const GroupMember& m : g.members) {
      if (m.role == MemberRole::kActivation) continue;
      Node* node = const_cast<Node*>(m.node);
      const int index = inputIndexOf(*node, m.value);
      if (index < 0 || !m.value->constantData())
        return internalError("channel analysis is stale: member not read by its node");
      auto& axis_set = removed[{node, index}][m.axis];
      for (int64_t idx : m.mapping.indices(dropped)) axis_set.insert(idx);
    }
  }
  for (auto& [key, axes] : removed) {
    auto [node, index] = key;
    const Value* v = node->input(index);
    Tensor data = *v->constantData();
    for (const auto& [axis, gone] : axes) {
      if (axis >= data.rank()) return internalError("channel analysis is stale: axis out of range");
      std::vector<int64_t> keep;
      for (int64_t i = 0; i < data.dim(axis); ++i)
        if (!gone.count(i)) keep.push_back(i);
      auto sliced = data.gather(axis, keep);
      if (!sliced.isOk()) return sliced.status().withContext("slicing '" + v->name() + "'");
      data = std::move(sliced).value();
    }
    const bool in_place =
        v->isInitializer() && v->uses().size() == 1 && !v->isGraphInput() && !v->isGraphOutput();
    plan.inputs.push_back({node, index, std::move(data), in_place});
  }
  return Status::ok();
}

Tensor shapeTensorLike(const Tensor& like, const std::vector<int64_t>& dims) {
  if (like.dtype() == DType::kInt32)
    return Tensor::fromVector<int32_t>(like.shape(),
                                       std::vector<int32_t>(dims.begin(), dims.end()));
  return Tensor::fromVector<int64_t>(like.shape(), dims);
}

// Depthwise `group` attributes and shape literals (Reshape targets, Resize sizes) that spell
// channel counts. Several groups can shrink one literal (a Concat before a flatten).
Status planShapes(const ChannelAnalysis& analysis, const std::vector<GroupKeep>& keeps,
                  Plan& plan) {
  std::map<const Node*, int64_t, ByNodeId> group_attr;
  std::map<std::tuple<const Node*, int, int64_t>, int64_t, ByNodeId> literal_delta;
  // Inputs computed by shape subgraphs folded before run time: replaced by constants.
  std::map<std::pair<const Node*, int>, const Tensor*, ByNodeId> folded_inputs;
  for (const GroupKeep& k : keeps) {
    const ChannelGroup& g = analysis.groups[k.group_id];
    const int64_t removed = g.channels - static_cast<int64_t>(k.keep.size());
    const std::vector<int64_t> dropped = droppedChannels(g, k);
    for (const Node* n : g.group_attr_nodes) {
      int64_t gone = removed;  // the depthwise weight's rows the group removes
      for (const GroupMember& m : g.members)
        if (m.node == n && m.role == MemberRole::kProducer)
          gone = static_cast<int64_t>(m.mapping.indices(dropped).size());
      group_attr[n] += gone;
    }
    for (const ShapeLiteral& lit : g.shape_literals) {
      if (lit.value.numel() > 0)
        folded_inputs.emplace(std::make_pair(lit.node, lit.input), &lit.value);
      if (lit.element < 0) {  // a pin: the folded value as it is
        literal_delta.emplace(std::make_tuple(lit.node, lit.input, lit.element), 0);
        continue;
      }
      int64_t gone = removed;
      for (const GroupMember& m : g.members)
        if (m.value == lit.spells) gone = static_cast<int64_t>(m.mapping.indices(dropped).size());
      literal_delta[{lit.node, lit.input, lit.element}] += gone;
    }
  }
  for (const auto& [n, removed] : group_attr)
    plan.group_attrs.push_back({const_cast<Node*>(n), n->intAttr(groupAttrName(*n), 1) - removed});
  // One new constant per (node, input), with every element's change.
  std::map<std::pair<const Node*, int>, Tensor, ByNodeId> literals;
  for (const auto& [key, delta] : literal_delta) {
    auto [n, input, element] = key;
    auto it = literals.find({n, input});
    if (it == literals.end()) {
      const Tensor* t = n->input(input) ? n->input(input)->constantData() : nullptr;
      if (!t && folded_inputs.count({n, input})) t = folded_inputs.at({n, input});
      if (!t) return internalError("channel analysis is stale: shape literal is not constant");
      it = literals.emplace(std::make_pair(n, input), *t).first;
    }
    if (element < 0) continue;
    std::vector<int64_t> dims = it->second.toInt64Vector();
    if (element >= static_cast<int64_t>(dims.size()) || dims[element] - delta <= 0)
      return internalError("channel analysis is stale: shape literal out of range");
    dims[element] -= delta;
    it->second = shapeTensorLike(it->second, dims);
  }
  for (auto& [key, t] : literals)
    plan.inputs.push_back({const_cast<Node*>(key.first), key.second, std::move(t), false});
  return Status::ok();
}

// Applies the plan, keeping what it takes to undo every step.
class Transaction {
 public:
  explicit Transaction(Graph& graph) : graph_(graph) {
    for (const auto& v : graph.values()) types_.emplace_back(v.get(), v->type());
  }
  ~Transaction() {
    if (committed_) return;
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) (*it)();
    for (auto& [v, t] : types_) v->setType(std::move(t));
  }
  void commit() { committed_ = true; }

  // Each shuffle's readers read a Gather of its input instead; the dead Reshapes get targets
  // that fit the shrunk input ([N, 1, C', ...] and back), so shape inference passes them.
  void replaceShuffles(const Plan& plan) {
    for (const auto& [sh, indices] : plan.shuffles) {
      Value* in = graph_.findValue(sh->input->name());
      Value* out = graph_.findValue(sh->output->name());
      Node* head = const_cast<Node*>(sh->head);
      Node* tail = const_cast<Node*>(sh->tail);
      const int rank = static_cast<int>(out->type().shape ? out->type().shape->size() : 0);
      Value* idx = graph_.addInitializer(
          out->name() + "_shuffle_indices",
          Tensor::fromVector<int64_t>({static_cast<int64_t>(indices.size())}, indices));
      Node* gather =
          graph_.insertNodeBefore(tail, "Gather", {in, idx}, {out->name() + "_shuffled"});
      gather->setAttribute(Attribute::makeInt("axis", 1));
      Value* shuffled = gather->output(0);
      shuffled->setType(out->type());
      graph_.replaceAllUsesWith(out, shuffled);
      std::vector<int64_t> split(rank + 1, 1), merged(rank, 1);
      split[0] = merged[0] = 0;  // copy the batch
      split[2] = merged[1] = -1;
      const Value* old_split = head->input(1);
      const Value* old_merged = tail->input(1);
      Value* new_split = graph_.addInitializer(old_split->name() + "_pruned",
                                               Tensor::fromVector<int64_t>({rank + 1}, split));
      Value* new_merged = graph_.addInitializer(old_merged->name() + "_pruned",
                                                Tensor::fromVector<int64_t>({rank}, merged));
      head->setInput(1, new_split);
      tail->setInput(1, new_merged);
      undo_.push_back([this, head, tail, gather, idx, out, shuffled, old_split, old_merged,
                       new_split, new_merged] {
        head->setInput(1, const_cast<Value*>(old_split));
        tail->setInput(1, const_cast<Value*>(old_merged));
        graph_.eraseValue(new_split);
        graph_.eraseValue(new_merged);
        graph_.replaceAllUsesWith(shuffled, out);
        graph_.eraseNode(gather);
        graph_.eraseValue(idx);
      });
    }
  }

  void apply(Plan& plan) {
    for (Plan::NewInput& in : plan.inputs) {
      Value* old = in.node->input(in.index);
      if (in.in_place) {
        auto previous = std::make_shared<Tensor>(std::move(*old->mutableInitializer()));
        old->setInitializer(std::move(in.data));
        undo_.push_back([old, previous] { old->setInitializer(std::move(*previous)); });
        continue;
      }
      Value* added = graph_.addInitializer(old->name() + "_pruned", std::move(in.data));
      in.node->setInput(in.index, added);
      undo_.push_back([this, node = in.node, index = in.index, old, added] {
        node->setInput(index, old);
        graph_.eraseValue(added);
      });
    }
    for (auto& [n, sizes] : plan.split_attrs) {
      const Attribute* a = n->findAttribute("split");
      std::optional<Attribute> previous = a ? std::optional<Attribute>(*a) : std::nullopt;
      n->setAttribute(Attribute::makeInts("split", sizes));
      undo_.push_back([n, previous] {
        if (previous)
          n->setAttribute(*previous);
        else
          n->removeAttribute("split");
      });
    }
    for (auto [n, group] : plan.group_attrs) {
      const char* name = groupAttrName(*n);
      const Attribute* a = n->findAttribute(name);
      std::optional<Attribute> previous = a ? std::optional<Attribute>(*a) : std::nullopt;
      n->setAttribute(Attribute::makeInt(name, group));
      undo_.push_back([n, name, previous] {
        if (previous)
          n->setAttribute(*previous);
        else
          n->removeAttribute(name);
      });
    }
  }

 private:
  Graph& graph_;
  std::vector<std::pair<Value*, ValueType>> types_;
  std::vector<std::function<void()>> undo_;
  bool committed_ = false;
};

// The new channel counts of the activations the plan shrinks (the other values keep their
// types: no rule lets a pruned channel count reach a value outside its group).
void shrinkActivationTypes(Graph& graph, const ChannelAnalysis& analysis,
                           const std::vector<GroupKeep>& keeps) {
  for (const ShrunkAxis& s : shrunkActivations(analysis, keeps)) {
    Value* v = graph.findValue(s.value->name());
    ValueType t = v->type();
    if (!t.isTensor() || !t.shape || s.axis >= static_cast<int>(t.shape->size())) continue;
    Dim& d = (*t.shape)[s.axis];
    if (!d.isKnown()) continue;
    d.value -= s.removed;
    v->setType(std::move(t));
  }
}

}  // namespace

Status applyChannelPruning(Model& model, const ChannelAnalysis& analysis,
                           const std::vector<GroupKeep>& keeps,
                           const ShapeInference* shape_inference) {
  NNC_RETURN_IF_ERROR(validate(analysis, keeps));
  // A tensor a shuffle and slices spread a group over could lose every channel.
  for (const ShrunkAxis& s : shrunkActivations(analysis, keeps)) {
    const auto& shape = s.value->type().shape;
    if (shape && s.axis < static_cast<int>(shape->size()) && (*shape)[s.axis].isKnown() &&
        (*shape)[s.axis].value <= s.removed)
      return invalidArgument("the plan removes every channel of '" + s.value->name() + "'");
  }
  Graph& graph = *model.graph;
  Plan plan;
  NNC_RETURN_IF_ERROR(planWeights(analysis, keeps, plan));
  NNC_RETURN_IF_ERROR(planShapes(analysis, keeps, plan));

  planMovedChannels(analysis, keeps, plan);

  Transaction tx(graph);
  tx.apply(plan);
  shrinkActivationTypes(graph, analysis, keeps);
  tx.replaceShuffles(plan);
  if (shape_inference) {  // re-derive every intermediate shape from scratch
    for (const auto& v : graph.values()) {
      if (v->isGraphInput() || v->isInitializer() || v->isGraphOutput()) continue;
      ValueType t = v->type();
      if (!t.isTensor()) continue;
      t.shape.reset();
      v->setType(t);
    }
    NNC_RETURN_IF_ERROR(
        shape_inference->infer(model).withContext("re-inferring shapes after pruning"));
  }
  NNC_RETURN_IF_ERROR(verifyModel(model).withContext("graph invalid after pruning"));
  // The CLI checked the input's parameters on load: a mismatch now is our own doing.
  if (Status s = checkChannelParameters(model); !s.isOk())
    return internalError("after pruning: " + s.message());
  tx.commit();
  graph.removeDeadNodes();
  return Status::ok();
}

}  // namespace nnc
