// conv_grad_bf16.h with AVX-512 BF16 intrinsics; entered only after convWeightGradBf16Supported.

#include <immintrin.h>

#include "conv_grad_bf16.h"

namespace nnc::exec::conv_grad_bf16 {
namespace {

constexpr int kMaxM = 4, kMaxR = 6;  // 24 accumulators, 4 dY vectors, 1 X vector in registers

// M output channels by R rows over every position of every sample, added to acc's partials.
template <int M, int R>
void tile(const ConvWeightGradBf16Args& a, int64_t oc0, int64_t r0) {
  __m512 acc[M * R];
  for (int u = 0; u < M * R; ++u) acc[u] = _mm512_setzero_ps();
  for (int64_t s = 0; s < a.samples; ++s) {
    const uint16_t* d = a.dy + s * a.dy_sample + oc0 * a.dy_plane;
    const uint16_t* x = a.x + s * a.x_sample;
    for (int64_t t = 0; t < a.dy_plane; t += 32) {
      __m512bh dv[M];
      for (int mm = 0; mm < M; ++mm) dv[mm] = (__m512bh)_mm512_loadu_si512(d + mm * a.dy_plane + t);
      for (int r = 0; r < R; ++r) {
        const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + a.off[r0 + r] + t);
        for (int mm = 0; mm < M; ++mm)
          acc[mm * R + r] = _mm512_dpbf16_ps(acc[mm * R + r], dv[mm], xv);
      }
    }
  }
  for (int mm = 0; mm < M; ++mm)
    for (int r = 0; r < R; ++r) {
      float* p = a.acc + ((oc0 + mm) * a.rows + r0 + r) * 16;
      _mm512_storeu_ps(
          p, a.add ? _mm512_add_ps(_mm512_loadu_ps(p), acc[mm * R + r]) : acc[mm * R + r]);
    }
}

using TileFn = void (*)(const ConvWeightGradBf16Args&, int64_t, int64_t);

template <int M>
constexpr TileFn kRowTiles[kMaxR] = {tile<M, 1>, tile<M, 2>, tile<M, 3>,
                                     tile<M, 4>, tile<M, 5>, tile<M, 6>};
constexpr const TileFn* kTiles[kMaxM] = {kRowTiles<1>, kRowTiles<2>, kRowTiles<3>, kRowTiles<4>};

}  // namespace

void weightGrad(const ConvWeightGradBf16Args& a) {
  for (int64_t oc0 = 0; oc0 < a.m; oc0 += kMaxM) {
    const int64_t m = a.m - oc0 < kMaxM ? a.m - oc0 : kMaxM;
    for (int64_t r0 = 0; r0 < a.rows; r0 += kMaxR) {
      const int64_t r = a.rows - r0 < kMaxR ? a.rows - r0 : kMaxR;
      kTiles[m - 1][r - 1](a, oc0, r0);
    }
  }
}

namespace {

void zeros(uint16_t* out, int64_t n) {  // n >= 0
  for (int64_t j = 0; j < n; j += 32) {
    const __mmask32 k = n - j >= 32 ? __mmask32(~0u) : __mmask32((1u << (n - j)) - 1);
    _mm512_mask_storeu_epi16(out + j, k, _mm512_setzero_si512());
  }
}

__mmask16 firstLanes(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// 16 floats src[0], src[step], ... (the first n of them; zero past).
__m512 loadStrided(const float* src, int64_t n, int64_t step) {
  const __mmask16 k = firstLanes(n);
  if (step == 1) return _mm512_maskz_loadu_ps(k, src);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  if (step == 2) {  // two loads and a shuffle: a gather costs several times more (Zen 4)
    const int64_t used = 2 * (n < 16 ? n : 16) - 1;  // floats spanned
    const __m512 lo = _mm512_maskz_loadu_ps(firstLanes(used), src);
    const __m512 hi = _mm512_maskz_loadu_ps(firstLanes(used - 16 > 0 ? used - 16 : 0), src + 16);
    return _mm512_maskz_permutex2var_ps(k, lo, _mm512_add_epi32(lane, lane), hi);
  }
  const __m512i index = _mm512_mullo_epi32(lane, _mm512_set1_epi32(static_cast<int>(step)));
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, index, src, 4);
}

// dst[j] = bf16(src[j * step]), j < n.
void convertRow(const float* src, int64_t n, int64_t step, uint16_t* dst) {
  for (int64_t j = 0; j < n; j += 16) {
    const __m512 x = loadStrided(src + j * step, n - j, step);
    _mm256_mask_storeu_epi16(dst + j, firstLanes(n - j), (__m256i)_mm512_cvtneps_pbh(x));
  }
}

}  // namespace

void toBf16(const float* in, const Bf16Planes& s, uint16_t* out) {
  const int64_t right = s.out_row - s.left - s.cols;
  for (int64_t p = 0; p < s.planes; ++p) {
    uint16_t* plane = out + p * s.out_stride;
    zeros(plane, s.top * s.out_row + s.left);
    for (int64_t r = 0; r < s.rows; ++r) {
      uint16_t* row = plane + (s.top + r) * s.out_row + s.left;
      convertRow(in + p * s.in_plane + r * s.in_row, s.cols, s.in_col, row);
      // the gap to the next row's data (the last row's: to the plane's end)
      zeros(row + s.cols, r + 1 < s.rows ? right + s.left
                                         : s.out_plane - (s.top + r) * s.out_row - s.left - s.cols);
    }
    if (s.rows == 0)
      zeros(plane + s.top * s.out_row + s.left, s.out_plane - s.top * s.out_row - s.left);
  }
}

void reduceLanes(const float* acc, int64_t n, float* dw) {
  for (int64_t i = 0; i < n; ++i) dw[i] += _mm512_reduce_add_ps(_mm512_loadu_ps(acc + i * 16));
}

}  // namespace nnc::exec::conv_grad_bf16
