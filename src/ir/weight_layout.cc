#include "nncompress/ir/weight_layout.h"

#include <string_view>

namespace nnc {

namespace {

// One row per op; attribute-dependent parts (Gemm's transposes) are resolved in weightLayout.
struct OpWeightLayout {
  std::string_view op;
  WeightLayout layout;
};

constexpr int kLast = -1;

const OpWeightLayout kOpWeightLayouts[] = {
    {"Conv", {0, 1, 2, 0, 1, 1, 1, GroupedAxis::kInput, false}},
    {"ConvInteger", {0, 1, -1, 0, 1, 1, 1, GroupedAxis::kInput, false}},
    // x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B
    {"QLinearConv", {0, 3, 8, 0, 1, 1, 1, GroupedAxis::kInput, false}},
    {"ConvTranspose", {0, 1, 2, 1, 0, 1, 1, GroupedAxis::kOutput, false}},
    {"Gemm", {0, 1, 2, 1, 0, 1, 1, GroupedAxis::kNone, true}},
    {"MatMul", {0, 1, -1, 1, 0, kLast, 1, GroupedAxis::kNone, true}},
};

}  // namespace

int64_t WeightLayout::outputChannels(const Shape& w) const {
  return w[out_axis] * (grouped == GroupedAxis::kOutput ? group : 1);
}

int64_t WeightLayout::inputChannels(const Shape& w) const {
  return w[in_axis] * (grouped == GroupedAxis::kInput ? group : 1);
}

std::optional<WeightLayout> weightLayout(const Node& n) {
  if (!n.isDefaultDomain()) return std::nullopt;
  for (const OpWeightLayout& row : kOpWeightLayouts) {
    if (n.opType() != row.op) continue;
    WeightLayout layout = row.layout;
    if (layout.grouped != GroupedAxis::kNone) layout.group = n.intAttr("group", 1);
    if (row.op == "Gemm") {
      if (n.intAttr("transB", 0) != 0) std::swap(layout.out_axis, layout.in_axis);
      if (n.intAttr("transA", 0) != 0) layout.data_channel_axis = 0;
    }
    return layout;
  }
  return std::nullopt;
}

}  // namespace nnc
