// One channel rule per op type. A rule only declares couplings; anything it cannot prove is
// frozen with a reason.

#include <algorithm>

#include "channel_coupling.h"

namespace nnc::analysis_internal {

// ------------------------------------------------------------------ builder

int CouplingBuilder::slot(const Value* v, int axis, int64_t size) {
  auto& axes = by_value_[v];
  if (axes.size() <= static_cast<size_t>(axis)) axes.resize(axis + 1, -1);
  if (axes[axis] >= 0) return axes[axis];
  const int id = static_cast<int>(slots_.size());
  slots_.push_back({v, axis, size});
  parent_.push_back(id);
  axes[axis] = id;
  return id;
}

std::optional<int> CouplingBuilder::activation(const Value* v) {
  if (!v || !isFloatingPoint(v->dtype()) || v->constantData()) return std::nullopt;
  const auto& shape = v->type().shape;
  if (!shape || shape->size() < 2) return std::nullopt;
  const bool fresh = !by_value_.count(v) || by_value_[v].size() < 2 || by_value_[v][1] < 0;
  const int s = slot(v, 1, (*shape)[1].isKnown() ? (*shape)[1].value : -1);
  if (fresh) {
    GroupMember m;
    m.value = v;
    m.axis = 1;
    m.role = MemberRole::kActivation;
    m.node = v->producer();
    members_.push_back({s, m});
    if (slots_[s].size < 0)
      freeze(s, "channel count of '" + v->name() + "' is not static", v->producer());
  }
  return s;
}

std::optional<int> CouplingBuilder::weight(const Node& node, size_t input, int axis,
                                           MemberRole role) {
  const Value* v = node.input(input);
  const Tensor* t = v ? v->constantData() : nullptr;
  if (!t || axis >= t->rank()) return std::nullopt;
  const int s = slot(v, axis, t->dim(axis));
  GroupMember m;
  m.value = v;
  m.axis = axis;
  m.role = role;
  m.node = &node;
  members_.push_back({s, m});
  if (role == MemberRole::kProducer) producers_.push_back({s, &node});
  return s;
}

void CouplingBuilder::same(int a, int b) {
  a = find(a);
  b = find(b);
  if (a != b) parent_[std::max(a, b)] = std::min(a, b);
}

void CouplingBuilder::freeze(int slot, const std::string& why, const Node* node) {
  frozen_.emplace_back(slot, why, node);
}

void CouplingBuilder::freezeNode(const Node& node, const std::string& why) {
  for (const Value* v : node.inputs())
    if (auto s = activation(v)) freeze(*s, why, &node);
  for (const Value* v : node.outputs())
    if (auto s = activation(v)) freeze(*s, why, &node);
}

namespace {

int rankOf(const Value* v) {
  if (const Tensor* t = v ? v->constantData() : nullptr) return t->rank();
  return v && v->type().shape ? static_cast<int>(v->type().shape->size()) : -1;
}

std::optional<Shape> staticShapeOf(const Value* v) {
  if (!v) return std::nullopt;
  if (const Tensor* t = v->constantData()) return t->shape();
  return v->staticShape();
}

std::string opLabel(const Node& n) {
  return n.opType() + (n.name().empty() ? "" : " '" + n.name() + "'");
}

// ------------------------------------------------------------------ rules

// Ops that keep the channel axis and never mix channels: X[:, c] only affects Y[:, c].
void passThrough(const Node& n, CouplingBuilder& b) {
  auto out = b.activation(n.output(0));
  auto in = b.activation(n.input(0));
  if (!in || !out) {
    if (in || out) b.freezeNode(n, opLabel(n) + " changes the channel layout");
    return;
  }
  b.same(*in, *out);
  // Dropout's optional mask has the input's shape.
  for (size_t i = 1; i < n.numOutputs(); ++i)
    if (auto extra = b.activation(n.output(i))) b.same(*in, *extra);
}

void convRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  const Tensor* w = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  if (!w || w->rank() < 3) return b.freezeNode(n, opLabel(n) + " weight is not a constant tensor");
  const int64_t group = n.intAttr("group", 1);
  const int64_t c_in = b.sizeOf(*x);
  const int64_t c_out = w->dim(0);
  if (group == 1) {
    b.same(*x, *b.weight(n, 1, 1, MemberRole::kConsumer));
    b.same(*y, *b.weight(n, 1, 0, MemberRole::kProducer));
    if (auto bias = b.weight(n, 2, 0, MemberRole::kParameter)) b.same(*y, *bias);
    return;
  }
  if (group == c_in && w->dim(1) == 1 && c_out == c_in) {
    // Depthwise: input channel c makes output channel c; one channel space, `group` follows it.
    auto wo = b.weight(n, 1, 0, MemberRole::kProducer);
    b.same(*x, *y);
    b.same(*y, *wo);
    if (auto bias = b.weight(n, 2, 0, MemberRole::kParameter)) b.same(*y, *bias);
    b.groupAttr(*y, n);
    return;
  }
  b.freezeNode(n, opLabel(n) + " is a grouped convolution (group=" + std::to_string(group) +
                      "): its channels can only go in whole groups, which is not implemented");
}

void convTransposeRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  const Tensor* w = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  if (!w || w->rank() < 3) return b.freezeNode(n, opLabel(n) + " weight is not a constant tensor");
  if (n.intAttr("group", 1) != 1)
    return b.freezeNode(n, opLabel(n) + " is a grouped transposed convolution");
  b.same(*x, *b.weight(n, 1, 0, MemberRole::kConsumer));
  b.same(*y, *b.weight(n, 1, 1, MemberRole::kProducer));
  if (auto bias = b.weight(n, 2, 0, MemberRole::kParameter)) b.same(*y, *bias);
}

void gemmRule(const Node& n, CouplingBuilder& b) {
  auto a = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  const Tensor* w = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!a || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static feature count");
  if (!w || w->rank() != 2)
    return b.freezeNode(n, opLabel(n) + " weight B is not a constant matrix");
  if (n.intAttr("transA", 0)) return b.freezeNode(n, opLabel(n) + " uses transA=1");
  const bool trans_b = n.intAttr("transB", 0) != 0;
  b.same(*a, *b.weight(n, 1, trans_b ? 1 : 0, MemberRole::kConsumer));
  b.same(*y, *b.weight(n, 1, trans_b ? 0 : 1, MemberRole::kProducer));
  if (const Value* c = n.input(2)) {
    auto cs = staticShapeOf(c);
    const int64_t n_out = trans_b ? w->dim(0) : w->dim(1);
    if (c->constantData() && cs && !cs->empty() && cs->back() == n_out &&
        shapeNumel(*cs) == n_out) {
      b.same(*y, *b.weight(n, 2, static_cast<int>(cs->size()) - 1, MemberRole::kParameter));
    } else if (!(cs && shapeNumel(*cs) == 1)) {
      b.freezeNode(n, opLabel(n) + " bias C is not a per-output vector");
    }
  }
}

void matmulRule(const Node& n, CouplingBuilder& b) {
  const Tensor* w = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!w || w->rank() != 2 || rankOf(n.input(0)) != 2)
    return b.freezeNode(n, opLabel(n) + " is not a 2-D activation times a constant matrix");
  auto a = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!a || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static feature count");
  b.same(*a, *b.weight(n, 1, 0, MemberRole::kConsumer));
  b.same(*y, *b.weight(n, 1, 1, MemberRole::kProducer));
}

void batchNormRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  b.same(*x, *y);
  for (size_t i = 1; i < 5; ++i) {
    auto p = b.weight(n, i, 0, MemberRole::kParameter);
    if (!p) return b.freezeNode(n, opLabel(n) + " parameters are not constant");
    b.same(*y, *p);
  }
}

void preluRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  b.same(*x, *y);
  const Tensor* slope = n.input(1) ? n.input(1)->constantData() : nullptr;
  if (!slope) return b.freezeNode(n, opLabel(n) + " slope is not constant");
  if (slope->numel() == 1) return;
  // Broadcast against [N, C, ...]: a per-channel slope is [C, 1, ...] (rank = x rank - 1).
  const int x_rank = rankOf(n.input(0));
  if (slope->rank() == x_rank - 1 && slope->dim(0) == b.sizeOf(*x) &&
      shapeNumel(slope->shape()) == slope->dim(0)) {
    b.same(*y, *b.weight(n, 1, 0, MemberRole::kParameter));
    return;
  }
  b.freezeNode(
      n, opLabel(n) + " slope shape " + shapeToString(slope->shape()) + " is not per-channel");
}

// Add, Mul, ... : each operand either carries the output's channels, broadcasts along them
// (size 1), or is a constant per-channel parameter.
void broadcastRule(const Node& n, CouplingBuilder& b) {
  auto y = b.activation(n.output(0));
  if (!y) {
    for (const Value* v : n.inputs())
      if (b.activation(v))
        return b.freezeNode(n, opLabel(n) + " output has no static channel axis");
    return;
  }
  const int out_rank = rankOf(n.output(0));
  for (size_t i = 0; i < n.numInputs(); ++i) {
    const Value* v = n.input(i);
    if (!v) continue;
    const int r = rankOf(v);
    auto shape = staticShapeOf(v);
    const int channel_axis = r - (out_rank - 1);  // where the output's axis 1 lands in v
    if (!shape && !v->type().shape) return b.freezeNode(n, opLabel(n) + " operand rank unknown");
    if (channel_axis < 0) continue;  // broadcasts along the channels entirely
    const Dim d =
        v->constantData() ? Dim::known((*shape)[channel_axis]) : (*v->type().shape)[channel_axis];
    if (d.isKnown() && d.value == 1) continue;
    if (v->constantData()) {
      auto p = b.weight(n, i, channel_axis, MemberRole::kParameter);
      b.same(*y, *p);
    } else if (channel_axis == 1) {
      auto s = b.activation(v);
      if (!s) return b.freezeNode(n, opLabel(n) + " operand has no static channel axis");
      b.same(*y, *s);
    } else {
      return b.freezeNode(n, opLabel(n) + " operand broadcasts channels in a way not handled");
    }
  }
}

void concatRule(const Node& n, CouplingBuilder& b) {
  auto y = b.activation(n.output(0));
  if (!y) return;  // shape arithmetic, not feature maps
  const int rank = rankOf(n.output(0));
  int64_t axis = n.intAttr("axis", 1);
  if (axis < 0) axis += rank;
  int64_t off = 0;
  for (const Value* v : n.inputs()) {
    auto s = b.activation(v);
    if (!s) return b.freezeNode(n, opLabel(n) + " input has no static channel axis");
    if (axis == 1) {
      b.offset(*s, *y, off);
      off += b.sizeOf(*s);
    } else {
      b.same(*s, *y);
    }
  }
}

void flattenRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel count");
  auto shape = n.input(0)->staticShape();
  const int rank = rankOf(n.input(0));
  int64_t axis = n.intAttr("axis", 1);
  if (axis < 0) axis += rank;
  if (axis != 1) return b.freezeNode(n, opLabel(n) + " flattens at axis " + std::to_string(axis));
  int64_t spatial = 1;
  for (int d = 2; d < rank; ++d) {
    const Dim dim = (*n.input(0)->type().shape)[d];
    if (!dim.isKnown()) return b.freezeNode(n, opLabel(n) + " input spatial size is not static");
    spatial *= dim.value;
  }
  (void)shape;
  if (spatial == 1)
    b.same(*x, *y);
  else
    b.repeat(*x, *y, spatial);
}

// Reshape [N, C, H, W] -> [N, C*H*W] (or [N, C] when H*W == 1). Anything else mixes channels.
void reshapeRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x && !y) return;
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " changes the channel layout");
  const auto& xs = n.input(0)->type().shape;
  const auto& ys = n.output(0)->type().shape;
  if (!xs || !ys) return b.freezeNode(n, opLabel(n) + " shapes are not known");
  int64_t spatial = 1;
  for (size_t d = 2; d < xs->size(); ++d) {
    if (!(*xs)[d].isKnown())
      return b.freezeNode(n, opLabel(n) + " input spatial size is not static");
    spatial *= (*xs)[d].value;
  }
  const bool batch_kept = (*xs)[0] == (*ys)[0];
  const int64_t c = b.sizeOf(*x);
  if (ys->size() == 2 && batch_kept && (*ys)[1].isKnown() && (*ys)[1].value == c * spatial) {
    if (spatial == 1)
      b.same(*x, *y);
    else
      b.repeat(*x, *y, spatial);
    b.reshapeConstant(*y, n);
    return;
  }
  if (ys->size() == xs->size() + 0 && batch_kept && (*ys)[1].isKnown() && (*ys)[1].value == c) {
    // Channel axis untouched (e.g. spatial reshapes).
    b.same(*x, *y);
    b.reshapeConstant(*y, n);
    return;
  }
  b.freezeNode(n, opLabel(n) + " reshape " + n.input(0)->type().toString() + " -> " +
                      n.output(0)->type().toString() + " mixes channels");
}

void transposeRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " has tensors without a static channel axis");
  const auto perm = n.intsAttr("perm");
  if (perm.size() >= 2 && perm[0] == 0 && perm[1] == 1) return b.same(*x, *y);
  b.freezeNode(n, opLabel(n) + " moves the channel axis");
}

std::vector<int64_t> axesInput(const Node& n, size_t index, const char* attr) {
  if (const Value* v = n.input(index))
    if (const Tensor* t = v->constantData()) return t->toInt64Vector();
  return n.intsAttr(attr);
}

// Squeeze/Unsqueeze/Reduce*: fine while axes 0 and 1 stay where they are.
void axesRule(const Node& n, CouplingBuilder& b, size_t axes_input, bool reduce) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x && !y) return;
  std::vector<int64_t> axes = axesInput(n, axes_input, "axes");
  const int rank = std::max(rankOf(n.input(0)), rankOf(n.output(0)));
  if (axes.empty() && (reduce ? n.intAttr("noop_with_empty_axes", 0) == 0 : true))
    return b.freezeNode(n, opLabel(n) + " acts on all axes");
  for (int64_t a : axes) {
    if (a < 0) a += rank;
    if (a <= 1) return b.freezeNode(n, opLabel(n) + " acts on the batch or channel axis");
  }
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " changes the channel layout");
  if (reduce && n.intAttr("keepdims", 1) == 0 && rankOf(n.output(0)) < 2)
    return b.freezeNode(n, opLabel(n) + " drops the channel axis");
  b.same(*x, *y);
}

void padRule(const Node& n, CouplingBuilder& b) {
  std::vector<int64_t> pads = axesInput(n, 1, "pads");
  const int rank = rankOf(n.input(0));
  if (n.input(1) && !n.input(1)->constantData())
    return b.freezeNode(n, opLabel(n) + " pads are computed at run time");
  if (n.input(3)) return b.freezeNode(n, opLabel(n) + " uses the axes input");
  if (rank >= 2 && pads.size() == static_cast<size_t>(2 * rank) &&
      (pads[1] != 0 || pads[1 + rank] != 0))
    return b.freezeNode(n, opLabel(n) + " pads the channel axis");
  passThrough(n, b);
}

void sliceRule(const Node& n, CouplingBuilder& b) {
  auto x = b.activation(n.input(0));
  auto y = b.activation(n.output(0));
  if (!x && !y) return;
  const int rank = rankOf(n.input(0));
  std::vector<int64_t> axes;
  if (n.numInputs() >= 4 && n.input(3)) {
    const Tensor* t = n.input(3)->constantData();
    if (!t) return b.freezeNode(n, opLabel(n) + " axes are computed at run time");
    axes = t->toInt64Vector();
  } else if (n.numInputs() >= 3) {
    const Tensor* starts = n.input(1) ? n.input(1)->constantData() : nullptr;
    const int64_t count = starts ? starts->numel() : rank;
    for (int64_t i = 0; i < count; ++i) axes.push_back(i);
  } else {
    axes = n.intsAttr("axes");
    if (axes.empty())
      for (size_t i = 0; i < n.intsAttr("starts").size(); ++i)
        axes.push_back(static_cast<int64_t>(i));
  }
  for (int64_t a : axes)
    if ((a < 0 ? a + rank : a) == 1)
      return b.freezeNode(n, opLabel(n) + " slices the channel axis");
  if (!x || !y) return b.freezeNode(n, opLabel(n) + " changes the channel layout");
  b.same(*x, *y);
}

void softmaxRule(const Node& n, CouplingBuilder& b) {
  const int rank = rankOf(n.input(0));
  int64_t axis = n.intAttr("axis", -1);
  if (axis < 0) axis += rank;
  if (axis == 1 || rank < 0) return b.freezeNode(n, opLabel(n) + " normalises across channels");
  passThrough(n, b);
}

// Ops that read only shapes or produce non-feature data: no couplings at all.
void noCoupling(const Node&, CouplingBuilder&) {}

}  // namespace

const std::unordered_map<std::string, ChannelRule>& channelRules() {
  static const std::unordered_map<std::string, ChannelRule> rules = [] {
    std::unordered_map<std::string, ChannelRule> r;
    for (const char* op : {"Relu",          "LeakyRelu",
                           "Elu",           "Selu",
                           "Sigmoid",       "HardSigmoid",
                           "HardSwish",     "Tanh",
                           "Clip",          "Softplus",
                           "Softsign",      "Abs",
                           "Neg",           "Exp",
                           "Log",           "Sqrt",
                           "Erf",           "Identity",
                           "Dropout",       "Cast",
                           "MaxPool",       "AveragePool",
                           "LpPool",        "GlobalAveragePool",
                           "GlobalMaxPool", "GlobalLpPool",
                           "Resize",        "Upsample",
                           "Floor",         "Ceil",
                           "Round",         "Reciprocal",
                           "Sign",          "InstanceNormalization"})
      r[op] = passThrough;
    for (const char* op : {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sum", "Mean"})
      r[op] = broadcastRule;
    r["Conv"] = convRule;
    r["ConvTranspose"] = convTransposeRule;
    r["Gemm"] = gemmRule;
    r["MatMul"] = matmulRule;
    r["BatchNormalization"] = batchNormRule;
    r["PRelu"] = preluRule;
    r["Concat"] = concatRule;
    r["Flatten"] = flattenRule;
    r["Reshape"] = reshapeRule;
    r["Transpose"] = transposeRule;
    r["Squeeze"] = [](const Node& n, CouplingBuilder& b) { axesRule(n, b, 1, false); };
    r["Unsqueeze"] = [](const Node& n, CouplingBuilder& b) { axesRule(n, b, 1, false); };
    for (const char* op : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                           "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"})
      r[op] = [](const Node& n, CouplingBuilder& b) { axesRule(n, b, 1, true); };
    r["Pad"] = padRule;
    r["Slice"] = sliceRule;
    r["Softmax"] = softmaxRule;
    r["LogSoftmax"] = softmaxRule;
    for (const char* op : {"Shape", "Size", "Constant", "ConstantOfShape", "Range"})
      r[op] = noCoupling;
    return r;
  }();
  return rules;
}

}  // namespace nnc::analysis_internal
