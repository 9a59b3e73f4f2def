#pragma once
// Convolution gradients for the training tape with bf16 products and float32 sums (AVX-512 BF16,
// VDPBF16PS: two multiply-adds per lane per instruction, twice the float32 FMA rate), both
// vectorised over output positions, so neither needs a transpose. Plain C++: the AVX-512
// translation unit includes it; call only when convGradBf16Supported().
//
// The weight gradient (of a stride-1 window; strides come as phase planes, see grad_conv.cc):
//   acc[oc][r][lane] += sum_t dy[oc][t] * x[off[r] + t]   (lane = t / 2 mod 16, pairs summed)
// dY planes are `wide`: row y of the output at y * wp, where wp is the row stride of X's padded
// planes, zero in columns past ow and to the plane's end; so position t reads X at t + off[r] for
// every row of every window (a stride-1 window moves by one column and one row of wp). The caller
// reduces each acc's 16 lanes once per batch.

#include <cstdint>

namespace nnc::exec {

struct ConvWeightGradBf16Args {
  const uint16_t* dy = nullptr;  // bf16 [samples][m planes of dy_plane], dy_plane % 32 == 0
  int64_t dy_sample = 0, dy_plane = 0, m = 0;
  const uint16_t* x = nullptr;  // bf16 [samples][x_sample]: every off[r] + dy_plane inside
  int64_t x_sample = 0;
  const int64_t* off = nullptr;  // [rows]
  int64_t rows = 0, samples = 0;
  float* acc = nullptr;  // [m][rows][16] lane partial sums
  bool add = true;       // add to acc, else overwrite it
};

// A stride-1 convolution with bf16 products and float32 sums, vectorised over output positions
// (the training tape's input gradient: dY convolved with the flipped weights):
//   y[co][t] = sum_{q, k} x[q][t + taps[k]] . w[q][k][co]   (t < y_plane)
// x holds the padded input's channels in pairs, interleaved (x[q][pos] = channels 2q and 2q+1 at
// pos, bf16), in wide planes whose rows are one padded row (wp) apart, so a tap is one offset and
// the output is wide too (row y at y * wp; the caller drops the columns past the real width).
// w[q][k][co] is the pair of weights (channels 2q, 2q+1) of tap k for output channel co.
struct ConvBf16Args {
  const uint32_t* x = nullptr;  // [pairs][x_plane]: every taps[k] + y_plane inside
  int64_t x_plane = 0, pairs = 0;
  const uint32_t* w = nullptr;  // [pairs][ntaps][co]
  const int64_t* taps = nullptr;
  int64_t ntaps = 0, co = 0;
  float* y = nullptr;  // [co][y_plane], y_plane % 16 == 0
  int64_t y_plane = 0;
};

// True when this CPU runs the bf16 kernels (AVX-512 F/BW/VL/BF16) and NNC_GEMM_ISA does not cap
// the instruction set below AVX-512.
bool convGradBf16Supported();

namespace conv_grad_bf16 {
void weightGrad(const ConvWeightGradBf16Args& a);
// Every element of planes out_plane long (out_stride apart), rows out_row apart:
// bf16(in[p*in_plane + r*in_row + j*in_col]) (nearest even) at
// out[p*out_stride + (top + r)*out_row + left + j] for r < rows, j < cols, and zero elsewhere (no
// fill first). Needs left + cols <= out_row, (top + rows)*out_row <= out_plane <= out_stride.
struct Bf16Planes {
  int64_t planes = 0, rows = 0, cols = 0, in_plane = 0, in_row = 0, in_col = 1;
  int64_t out_plane = 0, out_stride = 0, out_row = 0, top = 0, left = 0;
};
void toBf16(const float* in, const Bf16Planes& shape, uint16_t* out);
void conv(const ConvBf16Args& a);
// x's pair planes from float planes: out[q][(top + r)*out_row + left + j] = (bf16 of channel 2q,
// of channel 2q + 1; 0 past `channels`) at in[ch*in_plane + r*in_row + j], zero elsewhere in the
// out_plane pairs of each plane (no fill first).
void toBf16Pairs(const float* in, int64_t channels, const Bf16Planes& shape, uint32_t* out);
// bf16 of `n` floats (nearest even, as the kernels' conversions).
void toBf16(const float* in, int64_t n, uint16_t* out);
// dw[i] += the 16 lanes of acc[i] summed, i < n.
void reduceLanes(const float* acc, int64_t n, float* dw);
}  // namespace conv_grad_bf16

}  // namespace nnc::exec
