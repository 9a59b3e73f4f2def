// Grouped and depthwise ConvTranspose (every version): W [C, M/group, k...].
//
// Input channel g * (C/group) + j feeds, through W row g * (C/group) + j, the M/group outputs
// of group g only; output channel g * (M/group) + k is W column k of group g's rows. As for a
// grouped Conv (convRule) a channel can only go with the same local index in every group, so
// that `group` stays valid: the input is `group` tiles of a local space of C/group channels
// (W's rows, the full input axis, follow the input), the output `group` tiles of W's axis 1.
// Depthwise (group == C == M, W [C, 1, k...]): input channel c makes output channel c only,
// so it is one channel space and `group` follows the pruned count, as for a depthwise Conv.

#include "channel_coupling.h"

namespace nnc::analysis_internal {

void groupedConvTransposeRule(const Node& n, CouplingBuilder& b, int x, int y, int64_t group) {
  const Tensor* w = n.input(1)->constantData();
  const int64_t c_in = b.sizeOf(x), m_local = w->dim(1), c_out = b.sizeOf(y);
  if (group <= 0 || c_in % group != 0 || w->dim(0) != c_in || m_local * group != c_out)
    return b.freezeNode(
        n, opLabel(n) + " group=" + std::to_string(group) + " does not divide its channels");
  const Value* bias = n.input(2);
  if (bias && (!bias->constantData() || bias->constantData()->rank() != 1))
    return b.freezeNode(n, opLabel(n) + " bias is not a constant vector");
  auto couple_bias = [&](int slot) {
    if (bias) b.same(slot, *b.weight(n, 2, 0, MemberRole::kParameter));
  };
  if (group == c_in && m_local == 1) {  // depthwise
    b.same(x, y);
    b.same(y, *b.weight(n, 1, 0, MemberRole::kProducer));
    couple_bias(y);
    b.groupAttr(y, n);
    b.passesThrough(n);
    return;
  }
  b.same(x, *b.weight(n, 1, 0, MemberRole::kConsumer));
  const int local_in = b.virtualSlot(n.input(0), c_in / group);
  b.tile(local_in, x, group, c_in / group);
  const int local_out = *b.weight(n, 1, 1, MemberRole::kProducer);
  b.tile(local_out, y, group, m_local);
  couple_bias(y);
}

}  // namespace nnc::analysis_internal
