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
  // (depthwisePlanes: raw weights [m, kh*kw] in w, raw bias [m] or nullptr in bias)
  int64_t k = 0;       // cg * kh * kw
  float* y = nullptr;  // output [n, m, oh, ow]
  int64_t m = 0, groups = 1, blocks = 1, oh = 0, ow = 0, sh = 1, sw = 1;
  Epilogue act;  // activation only (the bias comes from `bias`)
  // A block of at most half a vector of channels (24 = 16 + 8 with AVX-512) in half-width
  // vectors: as many multiply-adds per cycle as full ones where 512-bit operations are split
  // (Zen 4), and a quarter fewer for such a layer. Every packing sets it (the executor's Conv
  // and the training tape's input gradients): ResNet fixture inference is about 11% faster.
  bool half_tail = false;
};

// The weight gradient of a convolution (the training tape's Conv backward), vectorised over
// output channels like the forward:  dw[oc, r] += sum_k D[k][oc] * x[pos[k] + off[r]]
// D is dY packed per block of output channels, [blocks][k][block] (zero past m); pos[k] is the
// offset of position k's window in x (sample and row included); off[r] the offset of im2col row r
// (channel and tap) from a window. No im2col: every row is an offset into x, like `taps` above.
struct ConvWeightGradArgs {
  const float* d = nullptr;  // packed dY
  int64_t k = 0, m = 0, blocks = 0;
  const int64_t* pos = nullptr;  // [k]
  const float* x = nullptr;
  const int64_t* off = nullptr;  // [rows]
  int64_t rows = 0;
  int run =
      1;  // 9: rows are (channel, i, j) of a 3x3 kernel, off[9c + 3i + j] = off[9c] + i*rs + j
  float* dw = nullptr;  // [m, rows], added to
};

// rows: output rows [row_begin, row_end) of the rows enumerated as (sample, group, block, oy);
// `block` of the packed weights must be block() of the same ISA.
// depthwisePlanes: a depthwise convolution (groups == c, m = c * multiplier, sh == sw) of the
// output planes [plane_begin, plane_end) enumerated as (sample, oc). Each plane is computed as if
// its rows were as wide as the padded input's (xw), so output position q = oy*xw + ox reads
// x[q*sw + tap]: one vector covers consecutive positions across rows; the columns past ow are
// dropped when the plane is copied from `scratch` (oh*xw + block() floats) to y. Reads past the
// padded input's end: the caller leaves (sh*xw + block()*sw) * 2 floats of slack after it.
namespace conv_direct_baseline {
int block();
void weightGrad(const ConvWeightGradArgs& a);
void rows(const ConvDirectArgs& a, int64_t row_begin, int64_t row_end);
void depthwisePlanes(const ConvDirectArgs& a, float* scratch, int64_t plane_begin,
                     int64_t plane_end);
}  // namespace conv_direct_baseline
namespace conv_direct_avx2 {
int block();
void weightGrad(const ConvWeightGradArgs& a);
void rows(const ConvDirectArgs& a, int64_t row_begin, int64_t row_end);
void depthwisePlanes(const ConvDirectArgs& a, float* scratch, int64_t plane_begin,
                     int64_t plane_end);
}  // namespace conv_direct_avx2
namespace conv_direct_avx512 {
int block();
void weightGrad(const ConvWeightGradArgs& a);
void rows(const ConvDirectArgs& a, int64_t row_begin, int64_t row_end);
void depthwisePlanes(const ConvDirectArgs& a, float* scratch, int64_t plane_begin,
                     int64_t plane_end);
}  // namespace conv_direct_avx512

}  // namespace nnc::exec
