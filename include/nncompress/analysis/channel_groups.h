#pragma once
// Dependency analysis (METHODS.md, method 1): which convolution channels can be removed together.
//
// A slot is (value, axis): the channel axis of an activation, or an axis of a weight. Each op's
// rule only declares couplings between slots (same channels, Concat offsets, Flatten repeats) or
// freezes a slot with a reason. Slots joined by `same` form a channel space (union-find). A space
// that contains a producer (the output-channel axis of a Conv, Gemm, ... weight) is the root of
// a channel group; the group reaches further through offset/repeat edges (into Concat outputs and
// flattened features) with an index mapping. A group is prunable only if nothing it reaches is
// frozen and no other producer shares its channels through a composed space. No rule means a
// barrier, never a guess.
//
// Channels need not be on axis 1: a Transpose carries a slot to another axis, a MatMul with a
// constant [K, N] makes channels on the last axis, and every node that reads or writes a value
// must account for each of its axes that carries a slot, or that slot is frozen. A grouped Conv
// tiles a local channel space over its groups (ChannelMapping::tiles): local channel j is
// removed from every group at once, so `group` stays valid. Attention heads and
// GroupNormalization's groups are local spaces too: a Q/K/V projection split into [heads,
// head_dim] and a normalised group of channels are tiled from them (repeat head_dim or the group
// width), so whole heads and whole groups are pruned (attention_heads.cc,
// normalization_rules.cc). A normalisation over a group's channels (LayerNorm, native or as
// ReduceMean...) is an approximate coupling: the group is prunable but marked approximate.

#include <optional>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"

namespace nnc {

// Member index of group channel c:
//   t * tile_stride + outer_offset + (inner_offset + c) * repeat + r,  r < repeat, t < tiles.
// Tiles come from grouped convolutions: local channel j of a group of width `tile_stride` is
// channel t * tile_stride + j of the full tensor, for every one of the `tiles` groups.
// A non-empty `table` replaces the formula: group channel c is member index table[c], or not in
// the member at all when table[c] < 0 (channels moved by a channel shuffle, then split).
struct ChannelMapping {
  int64_t outer_offset = 0;
  int64_t inner_offset = 0;
  int64_t repeat = 1;
  int64_t tiles = 1;
  int64_t tile_stride = 0;
  std::vector<int64_t> table;
  bool isIdentity() const {
    return outer_offset == 0 && inner_offset == 0 && repeat == 1 && tiles == 1 && table.empty();
  }
  // How many member indices one group channel stands for (at most, with a table).
  int64_t span() const { return table.empty() ? repeat * tiles : 1; }
  // The member indices for a list of group channels, in order.
  std::vector<int64_t> indices(const std::vector<int64_t>& channels) const;
  bool operator==(const ChannelMapping&) const = default;
};

enum class MemberRole {
  kProducer,    // weight axis that creates the channels (Conv/Gemm output channels)
  kConsumer,    // weight axis that reads them (Conv input channels, Gemm input features)
  kParameter,   // per-channel parameter (bias, BatchNorm scale/mean/var, PRelu slope)
  kActivation,  // an intermediate tensor carrying the channels
};
const char* memberRoleName(MemberRole role);

struct GroupMember {
  const Value* value = nullptr;
  int axis = 1;
  ChannelMapping mapping;
  MemberRole role = MemberRole::kActivation;
  const Node* node = nullptr;  // the node that reads (or, for activations, produces) it
};

// A literal in a constant 1-D shape tensor that spells a count made of a group's channels: a
// Reshape target's channel/feature entry (also inside Concat(..., constant)), a Resize `sizes`
// entry. Surgery rewrites it to the pruned count.
// The input may also be a shape computation folded before run time (`value`, not empty): surgery
// then replaces it by a constant. element -1 (spells nullptr) only pins such an input to its
// folded value: it reads a shape entry of a group's axis in arithmetic that must keep seeing the
// original count (Swin's head_dim = C / heads), or just passes through ops that do.
struct ShapeLiteral {
  const Node* node = nullptr;     // the node reading the constant
  int input = 0;                  // at this input index
  int64_t element = 0;            // element of the 1-D constant
  const Value* spells = nullptr;  // the activation whose axis-1 size the literal is
  Tensor value;                   // the folded input when it is not a constant
};

struct ChannelGroup {
  int id = 0;
  int64_t channels = 0;
  std::vector<const Node*> sources;  // layers whose output channels these are
  std::vector<GroupMember> members;
  bool prunable = true;
  std::string reason;  // why not prunable
  // Pruning it changes the output beyond the removed channels' contribution: it reaches a
  // normalisation over its channels (LayerNorm), whose statistics then cover fewer channels.
  // Prunable, but not output-preserving; `prune --exact-only` leaves such groups whole.
  bool approximate = false;
  std::string approximate_reason;
  int64_t macs = 0;    // MACs proportional to this group's channel count (one sample)
  int64_t params = 0;  // weight elements proportional to it
  // Nodes whose attributes depend on the channel count (depthwise Conv `group`).
  std::vector<const Node*> group_attr_nodes;
  // Shape literals holding a channel or feature count derived from these channels.
  std::vector<ShapeLiteral> shape_literals;
};

// A layer that cannot be pruned, and why (for `report --prunable`).
struct ChannelBarrier {
  const Node* node = nullptr;  // nullptr for graph inputs/outputs
  std::string value;
  std::string reason;
};

// A channel shuffle (Reshape [N, C, ...] -> [N, g, C/g, ...], Transpose of axes 1 and 2,
// Reshape back): output channel b * g + a is input channel a * (C/g) + b. Surgery replaces it
// by a Gather of the kept input channels in the shuffled order, unless nothing is pruned.
struct ChannelShuffle {
  const Node* head = nullptr;  // the first Reshape (reads `input`)
  const Node* tail = nullptr;  // the last Reshape (writes `output`)
  const Value* input = nullptr;
  const Value* output = nullptr;
  std::vector<int64_t> output_of;  // output channel of each input channel
};

// A Slice of the channel axis with bounds known before run time (torch.chunk exports them as
// arithmetic on Shape): surgery rewrites its starts/ends to the pruned positions as constants.
struct ChannelSlice {
  const Node* node = nullptr;
  int axis = 1;                // the sliced axis of input 0 (the last one for attention heads)
  int64_t element = 0;         // entry of starts/ends for the channel axis
  int64_t start = 0, end = 0;  // normalised to [0, C]
  Tensor starts, ends;         // the known starts/ends inputs, every entry
};

// A Split along the channel axis: surgery rewrites its sizes (the `split` attribute before
// opset 13, the input from 13) to the channels each part keeps.
struct ChannelSplit {
  const Node* node = nullptr;
  std::vector<int64_t> sizes;
  bool sizes_input = false;  // the sizes are input 1 (else the attribute)
};

struct ChannelAnalysis {
  std::vector<ChannelGroup> groups;
  std::vector<ChannelShuffle> shuffles;
  std::vector<ChannelSlice> channel_slices;
  std::vector<ChannelSplit> channel_splits;
  std::vector<ChannelBarrier> barriers;
  int64_t total_macs = 0;
  // MACs of the layers that at least one prunable group shrinks (input or output side).
  int64_t prunable_macs = 0;
  // The same, counting exact (not approximate) groups only.
  int64_t exact_prunable_macs = 0;
};

// Needs static channel dims (run shape inference first: loadModel does). The rules read
// attribute defaults and input positions by the model's default-domain opset.
ChannelAnalysis analyzeChannels(const Model& model);
ChannelAnalysis analyzeChannels(const Graph& graph, int64_t opset);

// For every node whose op has per-channel inputs in the rule table (Conv/Gemm/MatMul weights,
// biases, BatchNormalization and InstanceNormalization parameters, PRelu slope, ...): each such
// input's length along its channel axis equals the channel count of the activation it applies
// to, where both are known. Returns kInvalidModel naming the node and the mismatch.
Status checkChannelParameters(const Model& model);

// Op types that have a channel rule (the rest are barriers).
std::vector<std::string> channelRuleOps();

}  // namespace nnc
