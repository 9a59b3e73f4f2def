#include "nncompress/analysis/channel_groups.h"

#include <algorithm>
#include <limits>
#include <map>
#include <queue>
#include <set>
#include <tuple>

#include "channel_coupling.h"
#include "nncompress/analysis/model_stats.h"
#include "nncompress/ir/shape_fold.h"

namespace nnc {

using analysis_internal::channelRules;
using analysis_internal::CouplingBuilder;

std::vector<int64_t> ChannelMapping::indices(const std::vector<int64_t>& channels) const {
  std::vector<int64_t> out;
  out.reserve(channels.size() * span());
  if (!table.empty()) {
    for (int64_t c : channels)
      if (c >= 0 && c < static_cast<int64_t>(table.size()) && table[c] >= 0)
        out.push_back(table[c]);
    return out;
  }
  for (int64_t t = 0; t < tiles; ++t)
    for (int64_t c : channels)
      for (int64_t r = 0; r < repeat; ++r)
        out.push_back(t * tile_stride + outer_offset + (inner_offset + c) * repeat + r);
  return out;
}

const char* memberRoleName(MemberRole role) {
  switch (role) {
    case MemberRole::kProducer:
      return "producer";
    case MemberRole::kConsumer:
      return "consumer";
    case MemberRole::kParameter:
      return "parameter";
    case MemberRole::kActivation:
      return "activation";
  }
  return "?";
}

std::vector<std::string> channelRuleOps() {
  std::vector<std::string> ops;
  for (const auto& [op, rule] : channelRules()) ops.push_back(op);
  std::sort(ops.begin(), ops.end());
  return ops;
}

namespace {

std::string nodeLabel(const Node* n) {
  if (!n) return "graph";
  return n->opType() + " '" +
         (n->name().empty() ? (n->output(0) ? n->output(0)->name() : "?") : n->name()) + "'";
}

// Mapping of a part seen through an index-map edge, for a group of `channels` channels: a table.
// Nullopt where one group channel stands for several indices.
std::optional<ChannelMapping> throughTable(const ChannelMapping& m,
                                           const analysis_internal::Edge& e, int64_t channels) {
  if (m.span() != 1 || (m.table.empty() && !e.isTable())) return std::nullopt;
  const int64_t size = e.isTable() ? static_cast<int64_t>(e.table->size()) : -1;
  ChannelMapping out;
  for (int64_t c = 0; c < channels; ++c) {
    const std::vector<int64_t> at = m.indices({c});
    int64_t to = -1;
    if (!at.empty() && e.isTable())
      to = at[0] < size ? (*e.table)[at[0]] : -1;
    else if (!at.empty())
      to = at[0] + e.offset;
    out.table.push_back(to);
  }
  return out;
}

// Mapping of a part seen through an edge into the whole; nullopt when the result is not one
// ChannelMapping (a tile edge after anything but the identity).
std::optional<ChannelMapping> through(const ChannelMapping& m, const analysis_internal::Edge& e,
                                      int64_t channels) {
  if (e.isTable() || !m.table.empty()) {
    if (e.isTile() || e.repeat != 1) return std::nullopt;
    return throughTable(m, e, channels);
  }
  ChannelMapping out = m;
  if (e.isTile()) {
    if (!m.isIdentity()) return std::nullopt;
    out.tiles = e.tiles;
    out.tile_stride = e.tile_stride;
    out.repeat = e.repeat;
    return out;
  }
  if (e.repeat != 1) {
    out.outer_offset *= e.repeat;
    out.repeat *= e.repeat;
    out.tile_stride *= e.repeat;
  }
  out.outer_offset += e.offset;
  return out;
}

// Soundness net under the rules: an activation a node reads or writes, but whose rule never
// looked at it (a rule that returned early, e.g. a Concat whose output shape is unknown), is
// frozen; so is every activation read inside a subgraph (If/Loop/Scan bodies are opaque).
void freezeUnaccounted(const Node& n, const std::unordered_set<const Value*>& seen,
                       CouplingBuilder& b) {
  auto check = [&](const Value* v, const std::string& why) {
    if (!v || seen.count(v)) return;
    if (auto s = b.activation(v))
      b.freeze(*s, nodeLabel(&n) + " " + why + " '" + v->name() + "'", &n);
  };
  for (const Value* v : n.inputs()) check(v, "does not prove what it does with the channels of");
  for (const Value* v : n.outputs()) check(v, "does not prove the channels of");
  for (const Value* v : n.implicitInputs()) {
    if (auto s = b.activation(v))
      b.freeze(*s, nodeLabel(&n) + " reads '" + v->name() + "' inside a subgraph", &n);
  }
}

// The same net for axes other than 1 (channels on the last axis, axes a Transpose moved):
// every node that reads or writes the value, or reads it inside a subgraph, must have looked at
// that axis; graph inputs and outputs keep every axis.
void freezeUnaccountedAxes(const Graph& graph,
                           std::map<const Node*, std::set<std::pair<const Value*, int>>>& accounted,
                           CouplingBuilder& b) {
  std::set<const Value*> in_subgraph;
  for (const auto& n : graph.nodes())
    for (const Value* v : n->implicitInputs()) in_subgraph.insert(v);
  for (const auto& [s, key] : b.otherAxisSlots()) {
    const auto [v, axis] = key;
    const std::string what = "axis " + std::to_string(axis) + " of '" + v->name() + "'";
    auto check = [&](const Node* n) {
      if (!accounted[n].count(key))
        b.freeze(s, nodeLabel(n) + " does not prove what it does with " + what, n);
    };
    if (v->producer()) check(v->producer());
    for (const Use& u : v->uses()) check(u.node);
    if (in_subgraph.count(v)) b.freeze(s, what + " is read inside a subgraph", nullptr);
    if (v->isGraphInput()) b.freeze(s, "graph input '" + v->name() + "'", nullptr);
    if (v->isGraphOutput()) b.freeze(s, "graph output '" + v->name() + "'", nullptr);
  }
}

// Per space that edges lead into: the [begin, end) index range each distinct incoming edge
// covers, sorted. Sizes that are unknown count as covering everything.
std::map<int, std::vector<std::pair<int64_t, int64_t>>> incomingRanges(CouplingBuilder& b) {
  std::map<int, std::set<std::tuple<int, int64_t, int64_t>>> edges;
  for (const auto& e : b.edges_)
    if (!e.isTile() && !e.isTable())
      edges[b.find(e.to_slot)].insert({b.find(e.from_slot), e.offset, e.repeat});
  std::map<int, std::vector<std::pair<int64_t, int64_t>>> ranges;
  for (const auto& [to, in] : edges) {
    auto& r = ranges[to];
    for (const auto& [from, offset, repeat] : in) {
      const int64_t size = b.slots_[from].size;
      r.push_back(
          {offset, size < 0 ? std::numeric_limits<int64_t>::max() : offset + size * repeat});
    }
    std::sort(r.begin(), r.end());
  }
  return ranges;
}

// A shape literal element read as the channel count of more than one tensor (a Concat target
// shared by two Reshapes) can only be rewritten for one of them: every group that reaches it is
// frozen. (Several groups spelling one tensor, a Concat before a flatten, share it rightly.)
void freezeSharedShapeLiterals(std::vector<ChannelGroup>& groups) {
  using Key = std::tuple<const Node*, int, int64_t>;
  std::map<Key, std::set<const Value*>> spelled;
  for (const ChannelGroup& g : groups)
    for (const ShapeLiteral& lit : g.shape_literals)
      if (lit.spells) spelled[{lit.node, lit.input, lit.element}].insert(lit.spells);
  for (ChannelGroup& g : groups) {
    for (const ShapeLiteral& lit : g.shape_literals) {
      if (!lit.spells) continue;  // a pin
      const auto& values = spelled[{lit.node, lit.input, lit.element}];
      if (values.size() < 2 || !g.prunable) continue;
      g.prunable = false;
      g.reason = "a shape literal read by " + nodeLabel(lit.node) +
                 " spells the channel count of " + std::to_string(values.size()) + " tensors";
    }
  }
}

// A space tiled from a grouped convolution's local channels is pruned through them: its
// producers join the group rooted at the local space. It must be made that way only (one tile
// edge, nothing else into it), or the tiles and the other parts would disagree.
std::map<int, std::string> tileConflicts(CouplingBuilder& b,
                                         std::map<int, std::vector<const Node*>>& producers) {
  std::map<int, std::set<std::tuple<int, int64_t, int64_t, int64_t, int64_t, const void*>>>
      incoming;
  std::map<int, int> tile_source;
  std::set<int> mapped;  // spaces an index-map edge leads into
  for (const auto& e : b.edges_) {
    const int to = b.find(e.to_slot), from = b.find(e.from_slot);
    incoming[to].insert({from, e.offset, e.repeat, e.tiles, e.tile_stride, e.table.get()});
    if (e.isTile()) tile_source.emplace(to, from);
    if (e.isTable()) mapped.insert(to);
  }
  std::map<int, std::string> conflicts;
  for (int to : mapped)
    if (incoming[to].size() > 1)
      conflicts[to] = "the channels of '" + b.slots_[to].value->name() +
                      "' are moved by a channel shuffle or slice and also made another way";
  for (const auto& [to, from] : tile_source) {
    if (to == from)
      conflicts[to] = "the channels of '" + b.slots_[to].value->name() +
                      "' are tiled onto themselves by a grouped convolution";
    else if (incoming[to].size() > 1)
      conflicts[to] = "the channels of '" + b.slots_[to].value->name() +
                      "' are tiled by a grouped convolution and also made another way";
    auto it = producers.find(to);
    if (it == producers.end() || to == from) continue;
    auto& into = producers[from];
    into.insert(into.end(), it->second.begin(), it->second.end());
    producers.erase(to);
  }
  return conflicts;
}

// Runs every node's channel rule (freezing what no rule proves), then closes the coupling.
void applyChannelRules(const Graph& graph, const std::vector<Node*>& order, CouplingBuilder& b) {
  std::map<const Node*, std::set<std::pair<const Value*, int>>> accounted;
  for (const Node* n : order) {
    auto rule = n->isDefaultDomain() ? channelRules().find(n->opType()) : channelRules().end();
    if (rule == channelRules().end()) {
      b.freezeNode(*n, "no channel rule for " +
                           (n->isDefaultDomain() ? n->opType() : n->domain() + "." + n->opType()));
      continue;
    }
    b.takeSeen();
    b.takeSeenAxes();
    rule->second.rule(*n, b);
    freezeUnaccounted(*n, b.takeSeen(), b);
    accounted[n] = b.takeSeenAxes();
  }
  freezeUnaccountedAxes(graph, accounted, b);
  for (const Value* v : graph.inputs())
    if (auto s = b.activation(v)) b.freeze(*s, "graph input '" + v->name() + "'", nullptr);
  for (const Value* v : graph.outputs())
    if (auto s = b.activation(v)) b.freeze(*s, "graph output '" + v->name() + "'", nullptr);
  b.mergeParallelEdges();
  b.resolveRequirements();
}

// Per equivalence class of channel slots: members, producers, frozen reasons, sizes,
// outgoing/incoming edges and the conflicts that keep it from being pruned.
struct ChannelClasses {
  std::map<int, std::vector<GroupMember>> members;
  std::map<int, std::vector<const Node*>> producers;
  std::map<int, std::vector<std::pair<std::string, const Node*>>> frozen;
  std::map<int, std::set<int64_t>> sizes;
  std::map<int, std::vector<analysis_internal::Edge>> out_edges;
  std::set<int> composed;  // classes that are the target of an edge
  std::map<int, std::string> approximate;
  std::map<int, std::string> overlaps;

  // Why a class cannot be pruned, or "".
  std::string problem(int cls) {
    if (frozen.count(cls)) return frozen[cls].front().first;
    if (overlaps.count(cls)) return overlaps[cls];
    if (sizes[cls].size() > 1)
      return "tensors that must share channels have different channel counts";
    return "";
  }
};

// Gathers the classes; the tile and overlap conflicts also become barriers of `result`.
ChannelClasses collectClasses(CouplingBuilder& b, ChannelAnalysis& result) {
  ChannelClasses c;
  const int num_slots = static_cast<int>(b.slots_.size());
  for (int s = 0; s < num_slots; ++s) c.sizes[b.find(s)].insert(b.slots_[s].size);
  for (auto& [s, m] : b.members_) c.members[b.find(s)].push_back(m);
  for (auto& [s, n] : b.producers_) c.producers[b.find(s)].push_back(n);
  for (auto& [s, why, n] : b.frozen_) c.frozen[b.find(s)].push_back({why, n});
  for (auto& [s, why, n] : b.approximate_) c.approximate.emplace(b.find(s), why);
  for (const auto& e : b.edges_) {
    c.out_edges[b.find(e.from_slot)].push_back(e);
    c.composed.insert(b.find(e.to_slot));
  }

  // A space made of parts (Concat, Flatten) from several spaces: the parts must not overlap,
  // or pruning one part would remove entries another part still fills.
  c.overlaps = tileConflicts(b, c.producers);
  // A composed space whose producers only pass channels through is no root: the groups of its
  // parts reach through them.
  for (auto it = c.producers.begin(); it != c.producers.end();) {
    const bool passes = std::all_of(it->second.begin(), it->second.end(),
                                    [&](const Node* n) { return b.passes_through_.count(n) > 0; });
    it = passes && c.composed.count(it->first) ? c.producers.erase(it) : std::next(it);
  }
  for (const auto& [cls, why] : c.overlaps)
    result.barriers.push_back({b.slots_[cls].value->producer(), b.slots_[cls].value->name(), why});
  for (const auto& [to, parts] : incomingRanges(b)) {
    for (size_t i = 1; i < parts.size(); ++i)
      if (parts[i].first < parts[i - 1].second)
        c.overlaps[to] = "its channels overlap with those of another layer in '" +
                         b.slots_[to].value->name() + "'";
  }
  return c;
}

// Walks from the root through Concat offsets and Flatten repeats, filling `reached` with the
// mapping of each class the group reaches. Returns why the group cannot be pruned, or "".
std::string reachFromRoot(int root, int64_t channels, CouplingBuilder& b, ChannelClasses& c,
                          std::map<int, ChannelMapping>& reached) {
  std::string problem = c.problem(root);
  if (problem.empty() && c.composed.count(root))
    problem = "its channels are also made by Concat/Flatten of other layers";
  reached.emplace(root, ChannelMapping{});
  std::queue<int> todo;
  todo.push(root);
  while (!todo.empty()) {
    const int cls = todo.front();
    todo.pop();
    for (const auto& e : c.out_edges[cls]) {
      const int to = b.find(e.to_slot);
      const std::optional<ChannelMapping> mapped = through(reached[cls], e, channels);
      if (!mapped) {
        if (problem.empty())
          problem = e.isTable() || !reached[cls].table.empty()
                        ? "its channels are moved by a channel shuffle or slice and also "
                          "repeated or tiled"
                        : "its channels are tiled by two grouped convolutions";
        continue;
      }
      const ChannelMapping m = *mapped;
      if (!m.table.empty() &&
          std::all_of(m.table.begin(), m.table.end(), [](int64_t i) { return i < 0; }))
        continue;  // a slice that takes none of the group's channels
      auto [it, inserted] = reached.emplace(to, m);
      if (!inserted) {
        if (!(it->second == m) && problem.empty())
          problem = "its channels reach one tensor along two paths";
        continue;
      }
      if (problem.empty()) {
        const std::string p = c.problem(to);
        if (!p.empty())
          problem = p;
        else if (c.producers.count(to))
          problem = "it is concatenated with channels that " + nodeLabel(c.producers[to].front()) +
                    " also makes";
      }
      todo.push(to);
    }
  }
  return problem;
}

// The members, group-attribute nodes and shape literals of the classes a group reaches.
void collectGroupMembers(const std::map<int, ChannelMapping>& reached, CouplingBuilder& b,
                         ChannelClasses& c, ChannelGroup& g) {
  for (const auto& [cls, mapping] : reached) {
    if (c.approximate.count(cls) && !g.approximate) {
      g.approximate = true;
      g.approximate_reason = c.approximate[cls];
    }
    for (GroupMember m : c.members[cls]) {
      m.mapping = mapping;
      g.members.push_back(m);
    }
  }
  for (const auto& [slot, node] : b.group_attr_nodes_)
    if (reached.count(b.find(slot))) g.group_attr_nodes.push_back(node);
  for (const auto& [slot, lit] : b.shape_literals_)
    if (reached.count(b.find(slot))) g.shape_literals.push_back(lit);
}

// MACs and params of a group, proportional to the channel count.
void countGroupCost(const std::map<const Node*, int64_t>& node_macs, ChannelGroup& g) {
  if (g.channels <= 0) return;  // a frozen axis of unknown size: nothing to price
  std::set<std::pair<const Value*, int>> seen_weights;
  std::map<const Node*, double> node_fraction;
  std::vector<int64_t> all_channels(g.channels);
  for (int64_t c = 0; c < g.channels; ++c) all_channels[c] = c;
  for (const GroupMember& m : g.members) {
    if (m.role == MemberRole::kActivation) continue;
    const Tensor* t = m.value->constantData();
    const int64_t indices = m.mapping.table.empty()
                                ? g.channels * m.mapping.span()
                                : static_cast<int64_t>(m.mapping.indices(all_channels).size());
    const double fraction = static_cast<double>(indices) / t->dim(m.axis);
    if (seen_weights.insert({m.value, m.axis}).second)
      g.params += static_cast<int64_t>(t->numel() * fraction);
    if (m.role == MemberRole::kProducer || m.role == MemberRole::kConsumer)
      node_fraction[m.node] = std::max(node_fraction[m.node], fraction);
  }
  for (const auto& [node, fraction] : node_fraction)
    if (auto it = node_macs.find(node); it != node_macs.end())
      g.macs += static_cast<int64_t>(it->second * fraction);
}

// MACs of the nodes some prunable group shrinks.
int64_t shrinkableMacs(const std::vector<ChannelGroup>& groups,
                       const std::map<const Node*, int64_t>& node_macs, bool exact_only) {
  std::set<const Node*> shrinkable;
  for (const ChannelGroup& g : groups)
    if (g.prunable && !(exact_only && g.approximate))
      for (const GroupMember& m : g.members)
        if (m.role == MemberRole::kProducer || m.role == MemberRole::kConsumer)
          shrinkable.insert(m.node);
  int64_t macs = 0;
  for (const Node* n : shrinkable)
    if (auto it = node_macs.find(n); it != node_macs.end()) macs += it->second;
  return macs;
}

// Barriers: every frozen slot, once per (node, reason).
void addFrozenBarriers(CouplingBuilder& b, const std::set<int>& reached_by_groups,
                       ChannelAnalysis& result) {
  std::set<std::pair<const Node*, std::string>> seen;
  for (auto& [s, why, n] : b.frozen_) {
    // Axes other than 1 (batch, spatial, token axes) matter only where a group reaches them.
    if (b.slots_[s].axis != 1 && !reached_by_groups.count(b.find(s))) continue;
    if (!seen.insert({n, why}).second) continue;
    result.barriers.push_back({n, b.slots_[s].value->name(), why});
  }
}

}  // namespace

ChannelAnalysis analyzeChannels(const Model& model) {
  return analyzeChannels(*model.graph, model.opsetVersion(""));
}

ChannelAnalysis analyzeChannels(const Graph& graph, int64_t opset) {
  ChannelAnalysis result;
  CouplingBuilder b(opset);
  auto order = graph.topologicalOrder();
  if (!order.isOk()) return result;
  b.setFolded(foldShapeComputations(graph, opset).values);
  applyChannelRules(graph, order.value(), b);
  ChannelClasses classes = collectClasses(b, result);

  const ModelStats stats = computeModelStats(graph);
  result.total_macs = stats.macs;
  std::map<const Node*, int64_t> node_macs;
  for (const LayerStats& l : stats.layers)
    if (l.macs) node_macs[l.node] = *l.macs;

  int next_id = 0;
  std::set<int> reached_by_groups;
  for (const auto& [root, prods] : classes.producers) {
    ChannelGroup g;
    g.id = next_id++;
    g.channels = *classes.sizes[root].begin();
    g.sources = prods;
    std::map<int, ChannelMapping> reached;
    const std::string problem = reachFromRoot(root, g.channels, b, classes, reached);
    for (const auto& [cls, mapping] : reached) reached_by_groups.insert(cls);
    collectGroupMembers(reached, b, classes, g);
    g.prunable = problem.empty();
    g.reason = problem;
    countGroupCost(node_macs, g);
    result.groups.push_back(std::move(g));
  }

  freezeSharedShapeLiterals(result.groups);
  result.shuffles = b.shuffles_;
  result.channel_slices = b.channel_slices_;
  result.channel_splits = b.channel_splits_;
  result.prunable_macs = shrinkableMacs(result.groups, node_macs, false);
  result.exact_prunable_macs = shrinkableMacs(result.groups, node_macs, true);
  addFrozenBarriers(b, reached_by_groups, result);
  return result;
}

namespace {

int64_t dimOf(const Value* v, int axis) {
  if (const Tensor* t = v->constantData()) return axis < t->rank() ? t->dim(axis) : -1;
  const auto& shape = v->type().shape;
  if (!shape || axis >= static_cast<int>(shape->size())) return -1;
  return (*shape)[axis].isKnown() ? (*shape)[axis].value : -1;
}

int rankOfValue(const Value* v) {
  if (const Tensor* t = v->constantData()) return t->rank();
  return v->type().shape ? static_cast<int>(v->type().shape->size()) : -1;
}

// "" when the entry agrees with its activation (or a size is unknown), else the mismatch.
std::string parameterMismatch(const Node& n, const analysis_internal::ChannelInput& e) {
  const Value* p = n.input(e.input);
  const Value* act = e.of_output ? n.output(0) : n.input(0);
  if (!p || !act) return "";
  const int act_rank = rankOfValue(act), p_rank = rankOfValue(p);
  if (act_rank < 1 || p_rank < 0) return "";
  // Parameters are constants; a computed input (attention's K^T) is an activation.
  if (!p->constantData() || (e.only_rank && p_rank != e.only_rank)) return "";
  int act_axis = e.act_axis < 0 ? act_rank - 1 : e.act_axis;
  if (e.act_swap_if && n.intAttr(e.act_swap_if, 0) != 0) act_axis = 0;
  const int64_t channels = dimOf(act, act_axis);
  if (channels < 0) return "";
  int axis = e.swap_if && n.intAttr(e.swap_if, 0) != 0 ? 1 - e.axis : e.axis;
  if (e.broadcasts) axis = p_rank - (act_rank - act_axis);
  if (axis < 0) return "";  // broadcasts along the channels entirely
  const int64_t len = dimOf(p, axis);
  if (len < 0) return "";
  const int64_t times = e.times ? n.intAttr(e.times, 1) : 1;
  if (len * times == channels || (e.broadcasts && len == 1)) return "";
  return std::string("input '") + p->name() + "' (" + memberRoleName(e.role) + ", axis " +
         std::to_string(axis) + ") has " + std::to_string(len) +
         (times != 1 ? " x " + std::to_string(times) : "") + " entries but '" + act->name() +
         "' has " + std::to_string(channels) + " along axis " + std::to_string(act_axis);
}

}  // namespace

Status checkChannelParameters(const Model& model) {
  for (const auto& node : model.graph->nodes()) {
    if (!node->isDefaultDomain()) continue;
    auto it = channelRules().find(node->opType());
    if (it == channelRules().end()) continue;
    for (const auto& entry : it->second.inputs) {
      const std::string problem = parameterMismatch(*node, entry);
      if (!problem.empty()) return invalidModel(nodeLabel(node.get()) + ": " + problem);
    }
  }
  return Status::ok();
}

}  // namespace nnc
