#pragma once
// Packing and threading around the per-ISA direct convolution of conv_direct.h (baseline code).

#include <vector>

#include "conv_direct.h"
#include "nncompress/exec/kernel.h"

namespace nnc::exec {

// Conv weights [m, cg, kh, kw] (+ bias [m] or none) packed for the direct kernel of this CPU.
struct PackedConvWeights {
  GemmIsa isa = GemmIsa::kBaseline;  // the kernel the packing is for
  int block = 0;                     // output channels per packed block
  int64_t m = 0, groups = 1, k = 0, blocks = 0;
  std::vector<float> w, bias;
  bool half_tail = false;  // ConvDirectArgs::half_tail for every run with these weights
};
PackedConvWeights packConvWeights(const float* w, const float* bias, int64_t m, int64_t groups,
                                  int64_t k);
// Same for a given instruction set (for tests); the caller checks gemmIsaSupported first.
PackedConvWeights packConvWeightsForIsa(GemmIsa isa, const float* w, const float* bias, int64_t m,
                                        int64_t groups, int64_t k);

struct DirectConvShape {
  int64_t n = 0, c = 0, ih = 0, iw = 0;  // input
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t oh = 0, ow = 0;  // output
};

// Y [n, m, oh, ow] = act(conv(X, packed weights) + bias) with the packing's instruction set;
// every element of y is written.
void directConv(const float* x, const DirectConvShape& shape, const PackedConvWeights& packed,
                const Epilogue& act, float* y, const RunContext& ctx);

// A depthwise convolution (groups == c, m = c * multiplier, sh == sw): raw weights [m, 1, kh, kw],
// bias [m] or nullptr. With the best instruction set of this CPU, or a given one (tests).
void directDepthwiseConv(const float* x, const DirectConvShape& shape, const float* w,
                         const float* bias, int64_t m, const Epilogue& act, float* y,
                         const RunContext& ctx);
void directDepthwiseConv(GemmIsa isa, const float* x, const DirectConvShape& shape, const float* w,
                         const float* bias, int64_t m, const Epilogue& act, float* y,
                         const RunContext& ctx);

// conv_direct.h's weight gradient with the best instruction set of this CPU (one thread), and
// the output channels per block of its packed dY.
int convWeightGradBlock();
void convWeightGrad(const ConvWeightGradArgs& a);

}  // namespace nnc::exec
