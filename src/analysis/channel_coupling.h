#pragma once
// Internal to analysis: the coupling builder that channel rules talk to, and the rule registry.

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "nncompress/analysis/channel_groups.h"

namespace nnc::analysis_internal {

struct SlotInfo {
  const Value* value = nullptr;
  int axis = 0;
  int64_t size = -1;  // channel count along the axis, -1 if unknown
};

struct Edge {
  int from_slot;  // the part (Concat input) or the channel side (before Flatten)
  int to_slot;    // the whole (Concat output) or the feature side
  int64_t offset = 0;
  int64_t repeat = 1;
  // A tile edge (grouped convolution, attention heads): local channel j of from_slot is channels
  // t * tile_stride + j * repeat + r of to_slot for every t < tiles, r < repeat. The whole is
  // pruned through the local space: its producers belong to the group rooted at from_slot.
  int64_t tiles = 1;
  int64_t tile_stride = 0;
  bool local = false;  // a tile edge
  // An index-map edge (a channel shuffle, a Slice of the channels): index i of from_slot is
  // index (*table)[i] of to_slot, or not in it when negative. It must be the only way into to_slot.
  std::shared_ptr<const std::vector<int64_t>> table;
  bool isTile() const { return local; }
  bool isTable() const { return table != nullptr; }
};

class CouplingBuilder {
 public:
  explicit CouplingBuilder(int64_t opset) : opset_(opset) {}
  // The default-domain opset the model imports: rules read attribute defaults and input
  // positions by version.
  int64_t opset() const { return opset_; }
  // The channel axis (1) of a floating-point activation of rank >= 2; nullopt for shape
  // tensors, scalars and the like, which carry no channels. `proven_size` is the channel count
  // when the declared one is unknown but the calling rule proves it (first call only).
  std::optional<int> activation(const Value* v, int64_t proven_size = -1);
  // Any axis of a floating-point activation (negative counts from the back; axis 1 is
  // activation()). Every node that reads or writes the value must account for such an axis,
  // or the analyzer freezes it (accountedAxes).
  std::optional<int> activationAxis(const Value* v, int axis);
  // The axes other than 1 that rules looked at since the last call.
  std::set<std::pair<const Value*, int>> takeSeenAxes() { return std::exchange(seen_axes_, {}); }
  // Whether the current node's rule looked at axis `axis` (>= 0) of `v` so far: a wrapper
  // (window_rules.cc) leaves such an axis to the rule it wraps.
  bool sawAxis(const Value* v, int axis) const { return seen_axes_.count({v, axis}) > 0; }
  // Every (value, axis) slot of an activation, for axes other than 1.
  std::vector<std::pair<int, std::pair<const Value*, int>>> otherAxisSlots() const;
  // An axis of a constant weight read by `node`; nullopt if the input is not constant.
  std::optional<int> weight(const Node& node, size_t input, int axis, MemberRole role);
  void same(int a, int b);
  // a and b must end up in one channel space once every rule has run (a shape value taken from
  // one tensor sizes another); otherwise both are frozen with `why`. Checked by
  // resolveRequirements().
  void requireSame(int a, int b, const std::string& why, const Node* node) {
    required_.push_back({a, b, why, node});
  }
  void resolveRequirements();
  // Two edges into one space with the same offset and repeat carry the same channels, so the
  // spaces they come from are one (Flatten(a) * Flatten(b), Concat(a, b) + Concat(c, d)).
  void mergeParallelEdges();
  void offset(int part, int whole, int64_t off) { edges_.push_back({part, whole, off, 1}); }
  void repeat(int channels, int features, int64_t k) {
    edges_.push_back({channels, features, 0, k});
  }
  void tile(int local, int whole, int64_t tiles, int64_t stride, int64_t repeat = 1) {
    edges_.push_back({local, whole, 0, repeat, tiles, stride, true});
  }
  void mapped(int from, int to, std::vector<int64_t> table) {
    edges_.push_back({from, to, 0, 1, 1, 0, false,
                      std::make_shared<const std::vector<int64_t>>(std::move(table))});
  }
  // A slot that no tensor axis holds (the per-group output channels of a grouped convolution);
  // `anchor` names it in messages.
  int virtualSlot(const Value* anchor, int64_t size);
  void freeze(int slot, const std::string& why, const Node* node);
  // The node mixes the slot's channels in a way pruning only approximates (a normalisation
  // over them): groups that reach it are marked approximate.
  void approximate(int slot, const std::string& why, const Node* node) {
    approximate_.emplace_back(slot, why, node);
  }
  // Freezes the channel slots of every float input and output of the node.
  void freezeNode(const Node& node, const std::string& why);
  void groupAttr(int slot, const Node& node) { group_attr_nodes_.push_back({slot, &node}); }
  // A producer that passes channel c on as channel c (a depthwise convolution): where its
  // channels come from a Concat or a shuffle, the groups of the parts reach through it.
  void passesThrough(const Node& node) { passes_through_.insert(&node); }
  std::set<const Node*> passes_through_;
  // A literal in a constant shape input that spells the channel (or feature) count of `slot`.
  void shapeLiteral(int slot, const ShapeLiteral& lit) { shape_literals_.push_back({slot, lit}); }
  int64_t sizeOf(int slot) const { return slots_[slot].size; }
  // The contents of a small integer value known before run time: a constant, or a shape
  // computation folded from static shapes (foldShapeComputations).
  const Tensor* knownValue(const Value* v) const {
    if (!v) return nullptr;
    if (const Tensor* t = v->constantData()) return t;
    auto it = folded_.find(v);
    return it == folded_.end() ? nullptr : &it->second;
  }
  void setFolded(std::unordered_map<const Value*, Tensor> folded) { folded_ = std::move(folded); }
  // The activations a rule looked at since the last call; the analyzer freezes the ones a
  // node reads or writes that its rule never looked at (a rule that returns early proves
  // nothing about them).
  std::unordered_set<const Value*> takeSeen() { return std::exchange(seen_, {}); }

  // Results, read by the analyzer.
  std::vector<SlotInfo> slots_;
  std::vector<int> parent_;
  std::vector<Edge> edges_;
  std::vector<std::pair<int, GroupMember>> members_;
  std::vector<std::pair<int, const Node*>> producers_;
  std::vector<std::tuple<int, std::string, const Node*>> frozen_;
  std::vector<std::tuple<int, std::string, const Node*>> approximate_;
  std::vector<std::pair<int, const Node*>> group_attr_nodes_;
  std::vector<std::pair<int, ShapeLiteral>> shape_literals_;
  std::vector<ChannelShuffle> shuffles_;
  std::vector<ChannelSlice> channel_slices_;
  std::vector<ChannelSplit> channel_splits_;

  int find(int s) {
    while (parent_[s] != s) s = parent_[s] = parent_[parent_[s]];
    return s;
  }

 private:
  int slot(const Value* v, int axis, int64_t size);
  struct Requirement {
    int a, b;
    std::string why;
    const Node* node;
  };
  std::vector<Requirement> required_;
  std::unordered_map<const Value*, std::vector<int>> by_value_;  // slot per axis (-1 none)
  std::unordered_set<const Value*> seen_;
  std::set<std::pair<const Value*, int>> seen_axes_;
  std::unordered_map<const Value*, Tensor> folded_;
  int64_t opset_;
};

// A constant input of an op that runs along the channels of one of the op's activations: the
// table every rule with weights or per-channel parameters declares, and that
// checkChannelParameters verifies.
struct ChannelInput {
  int input = 0;  // node input index
  int axis = 0;   // the input's axis along the channels
  MemberRole role = MemberRole::kParameter;
  bool of_output = false;             // the channels of output 0 (else of input 0)
  int act_axis = 1;                   // the activation's axis they match (-1: its last axis)
  const char* swap_if = nullptr;      // non-zero attribute: the input's axis is 1 - axis (transB)
  const char* act_swap_if = nullptr;  // non-zero attribute: the activation's axis is 0 (transA)
  const char* times = nullptr;        // attribute multiplying the length (Conv `group`)
  bool broadcasts = false;  // numpy-broadcast against the activation: 1 or the channel count
  int only_rank = 0;        // non-zero: the entry applies to an input of this rank only
};

// Channel shuffles and Slices of the channel axis (channel_shuffle.cc). Each returns false when
// the node is not of its kind (the caller's rule then applies).
bool channelShuffleRule(const Node& n, CouplingBuilder& b);
bool channelSliceRule(const Node& n, CouplingBuilder& b);
// Split (2, 11, 13, 18) along the channel axis; any other axis is a barrier.
void splitRule(const Node& n, CouplingBuilder& b);
// Attention heads (attention_heads.cc). A Reshape that splits the last axis into [heads,
// head_dim] or merges them back, and the Slices of a joint Q/K/V projection into equal parts
// that are each split into heads: false when the node is not of that kind.
bool headReshapeRule(const Node& n, CouplingBuilder& b);
bool headSliceRule(const Node& n, CouplingBuilder& b);
// Element `element` of `reader`'s input `input` as dimension (of, axis) of a Shape, looking
// through Concat, Unsqueeze, Squeeze, Cast, Gather and Slice; nullopt otherwise.
std::optional<std::pair<const Value*, int64_t>> shapeEntrySource(const Node& reader, int input,
                                                                 int64_t element);
// Whether `n` is a Slice headSliceRule handles (its bounds are rewritten by surgery).
bool isHeadSlice(const Node& n, const CouplingBuilder& b);
// MatMul of two activations (attention scores and their product with V).
void activationMatmulRule(const Node& n, CouplingBuilder& b);
// Einsum of activations (attention_heads.cc): labels kept in the output carry their indices.
void einsumRule(const Node& n, CouplingBuilder& b);
// LayerNormalization (approximate over the last axis) and GroupNormalization (whole groups)
// (normalization_rules.cc).
void layerNormRule(const Node& n, CouplingBuilder& b);
void groupNormRule(const Node& n, CouplingBuilder& b);
// ConvTranspose with group > 1, x and y its channel slots (grouped_conv_transpose.cc).
void groupedConvTransposeRule(const Node& n, CouplingBuilder& b, int x, int y, int64_t group);
// Whether input `input` of `n` only feeds, through integer ops, starts/ends of Slices that
// channelSliceRule handles: surgery replaces those by constants, so what computes them is dead.
bool feedsOnlyChannelSliceBounds(const Node& n, int input, const CouplingBuilder& b);

// Helpers the rule files share (channel_rules.cc).
int rankOf(const Value* v);          // of a constant or a declared shape; -1 when unknown
std::string opLabel(const Node& n);  // "Op 'name'" for messages
bool isUsed(const Value* v);         // read by a node or a graph output

using ChannelRule = std::function<void(const Node&, CouplingBuilder&)>;
struct OpChannels {
  ChannelRule rule;
  std::vector<ChannelInput> inputs;  // its per-channel constant inputs (may be empty)
};
const std::unordered_map<std::string, OpChannels>& channelRules();
// Channels on other axes than 1 through Swin-style windows (window_rules.cc): wraps the Slice,
// Pad, Concat, Reshape and Shape rules of the table.
void addWindowRules(std::unordered_map<std::string, OpChannels>& rules);

}  // namespace nnc::analysis_internal
