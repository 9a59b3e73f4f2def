#include "nncompress/ir/conv_geometry.h"

#include <algorithm>

namespace nnc {

namespace {

int64_t at(const std::vector<int64_t>& v, size_t i, int64_t fallback) {
  return i < v.size() ? v[i] : fallback;
}

// SAME_*: the total padding split, the odd one at the end (UPPER) or the beginning (LOWER).
void splitSamePadding(AutoPad auto_pad, int64_t total, AxisGeometry& g) {
  g.pad_begin = auto_pad == AutoPad::kSameUpper ? total / 2 : total - total / 2;
  g.pad_end = total - g.pad_begin;
}

}  // namespace

ConvWindow ConvWindow::of(const Node& n) {
  ConvWindow w;
  w.auto_pad_text = n.stringAttr("auto_pad", "NOTSET");
  if (w.auto_pad_text == "NOTSET" || w.auto_pad_text.empty()) {
    w.auto_pad = AutoPad::kNotSet;
  } else if (w.auto_pad_text == "VALID") {
    w.auto_pad = AutoPad::kValid;
  } else if (w.auto_pad_text == "SAME_UPPER") {
    w.auto_pad = AutoPad::kSameUpper;
  } else if (w.auto_pad_text == "SAME_LOWER") {
    w.auto_pad = AutoPad::kSameLower;
  } else {
    w.unknown_auto_pad = true;
  }
  w.kernel_shape = n.intsAttr("kernel_shape");
  w.strides = n.intsAttr("strides");
  w.dilations = n.intsAttr("dilations");
  w.pads = n.intsAttr("pads");
  w.output_padding = n.intsAttr("output_padding");
  w.output_shape = n.intsAttr("output_shape");
  w.group = n.intAttr("group", 1);
  return w;
}

int64_t ConvWindow::stride(size_t axis) const { return at(strides, axis, 1); }
int64_t ConvWindow::dilation(size_t axis) const { return at(dilations, axis, 1); }
int64_t ConvWindow::padBegin(size_t axis) const { return at(pads, axis, 0); }
int64_t ConvWindow::padEnd(size_t axis, size_t spatial) const {
  return at(pads, axis + spatial, 0);
}

StatusOr<AxisGeometry> convAxis(const ConvWindow& w, size_t axis, size_t spatial, int64_t in,
                                int64_t kernel, bool ceil_mode) {
  if (w.unknown_auto_pad) return invalidModel("unknown auto_pad '" + w.auto_pad_text + "'");
  const int64_t stride = w.stride(axis), dilation = w.dilation(axis);
  if (kernel <= 0 || stride <= 0 || dilation <= 0)
    return invalidModel("kernel, strides and dilations must be positive");
  const int64_t extent = (kernel - 1) * dilation + 1;
  AxisGeometry g;
  if (w.auto_pad == AutoPad::kSameUpper || w.auto_pad == AutoPad::kSameLower) {
    g.out = (in + stride - 1) / stride;
    splitSamePadding(w.auto_pad, std::max<int64_t>(0, (g.out - 1) * stride + extent - in), g);
    return g;
  }
  if (w.auto_pad == AutoPad::kNotSet) {
    g.pad_begin = w.padBegin(axis);
    g.pad_end = w.padEnd(axis, spatial);
    if (g.pad_begin < 0 || g.pad_end < 0) return invalidModel("negative pads");
  }
  const int64_t span = in + g.pad_begin + g.pad_end - extent;
  if (span < 0) return shapeMismatch("the window is larger than the padded input");
  const bool ceil = ceil_mode && w.auto_pad != AutoPad::kValid;
  g.out = (ceil ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil && (g.out - 1) * stride >= in + g.pad_begin) --g.out;
  return g;
}

AxisGeometry convTransposeAxis(const ConvWindow& w, size_t axis, size_t spatial, int64_t in,
                               int64_t kernel) {
  const int64_t stride = w.stride(axis);
  const int64_t extent = (kernel - 1) * w.dilation(axis) + 1;
  const int64_t full = stride * (in - 1) + at(w.output_padding, axis, 0) + extent;
  int64_t target = -1;
  if (!w.output_shape.empty()) {
    target = w.output_shape[w.output_shape.size() - spatial + axis];
  } else if (w.auto_pad == AutoPad::kSameUpper || w.auto_pad == AutoPad::kSameLower) {
    target = in * stride;
  }
  AxisGeometry g;
  if (target >= 0) {
    // A target beyond the full extent leaves zeros at the end (as ONNX Runtime does).
    // Unlike the forward case, the odd one goes to the beginning unless SAME_LOWER.
    const int64_t total = std::max<int64_t>(0, full - target);
    g.pad_begin = w.auto_pad == AutoPad::kSameLower ? total - total / 2 : total / 2;
    g.pad_end = total - g.pad_begin;
    g.out = target;
    return g;
  }
  if (w.auto_pad != AutoPad::kValid) {
    g.pad_begin = w.padBegin(axis);
    g.pad_end = w.padEnd(axis, spatial);
  }
  g.out = full - g.pad_begin - g.pad_end;
  return g;
}

}  // namespace nnc
