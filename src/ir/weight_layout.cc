#include "nncompress/ir/weight_layout.h"

#include <utility>

namespace nnc {

namespace {

constexpr int kLast = -1;

// One row per op; attribute-dependent parts (Gemm's transposes, `group`) are resolved in
// weightLayout.
const OpWeightLayout kOpWeightLayouts[] = {
    {"Conv", {0, 1, 2, 0, 1, 1, 1, GroupedAxis::kInput, false}, nullptr, nullptr, "group"},
    {"ConvInteger", {0, 1, -1, 0, 1, 1, 1, GroupedAxis::kInput, false}, nullptr, nullptr, "group"},
    // x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B
    {"QLinearConv", {0, 3, 8, 0, 1, 1, 1, GroupedAxis::kInput, false}, nullptr, nullptr, "group"},
    {"ConvTranspose",
     {0, 1, 2, 1, 0, 1, 1, GroupedAxis::kOutput, false},
     nullptr,
     nullptr,
     "group"},
    {"Gemm", {0, 1, 2, 1, 0, 1, 1, GroupedAxis::kNone, true}, "transB", "transA"},
    {"MatMul", {0, 1, -1, 1, 0, kLast, 1, GroupedAxis::kNone, true}},
};

}  // namespace

int64_t WeightLayout::outputChannels(const Shape& w) const {
  return w[out_axis] * (grouped == GroupedAxis::kOutput ? group : 1);
}

int64_t WeightLayout::inputChannels(const Shape& w) const {
  return w[in_axis] * (grouped == GroupedAxis::kInput ? group : 1);
}

const OpWeightLayout* opWeightLayout(std::string_view op) {
  for (const OpWeightLayout& row : kOpWeightLayouts)
    if (op == row.op) return &row;
  return nullptr;
}

std::optional<WeightLayout> weightLayout(const Node& n) {
  const OpWeightLayout* row = n.isDefaultDomain() ? opWeightLayout(n.opType()) : nullptr;
  if (!row) return std::nullopt;
  WeightLayout layout = row->layout;
  if (row->group_attr) layout.group = n.intAttr(row->group_attr, 1);
  if (row->weight_transpose_attr && n.intAttr(row->weight_transpose_attr, 0) != 0)
    std::swap(layout.out_axis, layout.in_axis);
  if (row->data_transpose_attr && n.intAttr(row->data_transpose_attr, 0) != 0)
    layout.data_channel_axis = 0;
  return layout;
}

}  // namespace nnc
