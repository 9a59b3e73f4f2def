#pragma once
// The zeroed-consumer oracle for pruning: zeroing, in the original, the weight slices through
// which a group's consumers read the channels to be removed must give the same outputs as
// physically removing those channels. (Zeroing producers would not be a valid oracle: a
// BatchNormalization or bias after them turns zeros into constants.)

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/ir/graph.h"

namespace nnc::testing {

// Zeroes, in one copy of each consumer weight, the slices that read the dropped channels of
// every listed group (two groups may feed the same weight, e.g. through a Concat).
inline void zeroConsumerSlices(
    Graph& g, const std::vector<std::pair<const ChannelGroup*, std::vector<int64_t>>>& drops) {
  std::map<std::pair<Node*, const Value*>, Tensor> zeroed;
  for (const auto& [group, dropped] : drops) {
    for (const GroupMember& m : group->members) {
      if (m.role != MemberRole::kConsumer) continue;
      const auto key = std::pair{const_cast<Node*>(m.node), m.value};
      auto it = zeroed.find(key);
      if (it == zeroed.end()) it = zeroed.emplace(key, *m.value->constantData()).first;
      Tensor& t = it->second;
      const Shape& s = t.shape();
      int64_t outer = 1, inner = 1;
      for (int a = 0; a < m.axis; ++a) outer *= s[a];
      for (int a = m.axis + 1; a < t.rank(); ++a) inner *= s[a];
      auto data = t.mutableData<float>();
      for (int64_t idx : m.mapping.indices(dropped))
        for (int64_t o = 0; o < outer; ++o)
          std::fill_n(data.data() + (o * s[m.axis] + idx) * inner, inner, 0.f);
    }
  }
  int n = 0;
  for (auto& [key, tensor] : zeroed) {
    auto [node, value] = key;
    for (size_t i = 0; i < node->numInputs(); ++i)
      if (node->input(i) == value)
        node->setInput(
            i, g.addInitializer(value->name() + "_zeroed" + std::to_string(n++), Tensor(tensor)));
  }
}

inline void zeroConsumerSlices(Graph& g, const ChannelGroup& group,
                               const std::vector<int64_t>& dropped) {
  zeroConsumerSlices(g, {{&group, dropped}});
}

}  // namespace nnc::testing
