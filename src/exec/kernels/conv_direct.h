#pragma once
// Direct convolution for small feature maps, vectorised over output channels:
//   Y[s, oc, oy, ox] = act(B[oc] + sum_{c,i,j} W[oc, c, i, j] * Xpad[s, c, oy*sh + i*dh, ox*sw +
//   j*dw])
// The weights are packed once into blocks of `block` output channels ([groups][blocks][K][block],
// zero beyond the group's channels), so one vector FMA per (tap, output position) updates a whole
// block, with the input value broadcast. No im2col: each tap is an offset into the zero-padded
// input
// (`taps`), shared by every output position. This pays on the 7x7..28x28 maps of small CNNs, where
// im2col copies and the GEMM's packing cost more than the multiply-adds.
// Like gemm.h, this header is plain C++: the ISA-specific translation units include it.

#include <cstdint>

#include "gemm.h"

namespace nnc::exec {

struct ConvDirectArgs {
  const float* x = nullptr;  // zero-padded input [n, c, xh, xw]
  int64_t c = 0, xh = 0, xw = 0;
  const float* w = nullptr;       // packed weights [groups][blocks][k][block]
  const float* bias = nullptr;    // packed bias [groups][blocks][block] (zeros when none)
  const int64_t* taps = nullptr;  // k offsets into one group's input: (c*xh + i*dh)*xw + j*dw
  int64_t k = 0;                  // cg * kh * kw
  float* y = nullptr;             // output [n, m, oh, ow]
  int64_t m = 0, groups = 1, blocks = 1, oh = 0, ow = 0, sh = 1, sw = 1;
  Epilogue act;  // activation only (the bias comes from `bias`)
};

// Output rows [row_begin, row_end) of the rows enumerated as (sample, group, block, oy).
// `block` of the packed weights must be convDirectBlock(isa).
namespace conv_direct_baseline {
int block();
void rows(const ConvDirectArgs& a, int64_t row_begin, int64_t row_end);
}  // namespace conv_direct_baseline
namespace conv_direct_avx2 {
int block();
void rows(const ConvDirectArgs& a, int64_t row_begin, int64_t row_end);
}  // namespace conv_direct_avx2
namespace conv_direct_avx512 {
int block();
void rows(const ConvDirectArgs& a, int64_t row_begin, int64_t row_end);
}  // namespace conv_direct_avx512

}  // namespace nnc::exec
