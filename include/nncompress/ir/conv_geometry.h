#pragma once
// Convolution and pooling window geometry, shared by the executor's kernels (float and
// quantized convolutions, pooling), training's gradients and recovery. Per spatial axis:
//   extent = (kernel - 1) * dilation + 1
//   NOTSET:     out = floor((in + pad_begin + pad_end - extent) / stride) + 1  (pads attribute)
//   VALID:      the same with no padding
//   SAME_UPPER: out = ceil(in / stride); total = max(0, (out - 1) * stride + extent - in),
//               pad_begin = total / 2 (the odd one at the end); SAME_LOWER: at the beginning
//   ceil_mode (pooling, not VALID): rounds up, minus a last window that would start in the end
//   padding.
// Transposed (ConvTranspose): full = stride * (in - 1) + output_padding + extent; with
// output_shape (or SAME_*: in * stride) the padding is what trims full to it (beyond full: zeros
// at the end), else out = full - pad_begin - pad_end.

#include <cstdint>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"
#include "nncompress/ir/status.h"

namespace nnc {

enum class AutoPad { kNotSet, kValid, kSameUpper, kSameLower };

// The window attributes of a Conv-family or pooling node.
struct ConvWindow {
  AutoPad auto_pad = AutoPad::kNotSet;
  std::string auto_pad_text = "NOTSET";  // as written, for errors
  std::vector<int64_t> kernel_shape, strides, dilations, pads, output_padding, output_shape;
  int64_t group = 1;

  static ConvWindow of(const Node& n);
  // Per spatial axis (of `spatial` axes); strides and dilations default to 1, pads to 0.
  int64_t stride(size_t axis) const;
  int64_t dilation(size_t axis) const;
  int64_t padBegin(size_t axis) const;
  int64_t padEnd(size_t axis, size_t spatial) const;
  bool unknown_auto_pad = false;  // auto_pad is none of NOTSET, VALID, SAME_UPPER, SAME_LOWER
};

struct AxisGeometry {
  int64_t out = 0, pad_begin = 0, pad_end = 0;
};

// Output size and padding of spatial axis `axis` (of `spatial`) of a forward convolution or
// pooling window over `in` input positions with a kernel of `kernel` taps. kInvalidModel for an
// unknown auto_pad, a non-positive kernel, stride or dilation, or negative pads; kShapeMismatch
// when the window is larger than the padded input.
StatusOr<AxisGeometry> convAxis(const ConvWindow& w, size_t axis, size_t spatial, int64_t in,
                                int64_t kernel, bool ceil_mode = false);

// The same for a transposed convolution (ConvTranspose); the caller checks out > 0.
AxisGeometry convTransposeAxis(const ConvWindow& w, size_t axis, size_t spatial, int64_t in,
                               int64_t kernel);

}  // namespace nnc
