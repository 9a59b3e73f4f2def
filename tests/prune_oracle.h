#pragma once
// The zeroed-consumer oracle for pruning: zeroing, in the original, the weight slices through
// which a group's consumers read the channels to be removed must give the same outputs as
// physically removing those channels. (Zeroing producers would not be a valid oracle: a
// BatchNormalization or bias after them turns zeros into constants.)

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/ir/graph.h"

namespace nnc::testing {

inline int inputIndexOf(const Node& n, const Value* v) {
  for (size_t i = 0; i < n.numInputs(); ++i)
    if (n.input(i) == v) return static_cast<int>(i);
  return -1;
}

// Zeroes, in a private copy per consumer, the slices that read the dropped channels.
inline void zeroConsumerSlices(Graph& g, const ChannelGroup& group,
                               const std::vector<int64_t>& dropped) {
  for (const GroupMember& m : group.members) {
    if (m.role != MemberRole::kConsumer) continue;
    Node* node = const_cast<Node*>(m.node);
    const int index = inputIndexOf(*node, m.value);
    ASSERT_GE(index, 0);
    Tensor t = *m.value->constantData();
    const Shape& s = t.shape();
    int64_t outer = 1, inner = 1;
    for (int a = 0; a < m.axis; ++a) outer *= s[a];
    for (int a = m.axis + 1; a < t.rank(); ++a) inner *= s[a];
    auto data = t.mutableData<float>();
    for (int64_t idx : m.mapping.indices(dropped))
      for (int64_t o = 0; o < outer; ++o)
        std::fill_n(data.data() + (o * s[m.axis] + idx) * inner, inner, 0.f);
    node->setInput(index, g.addInitializer(m.value->name() + "_zeroed", std::move(t)));
  }
}

}  // namespace nnc::testing
