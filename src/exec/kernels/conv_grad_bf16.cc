// conv_grad_bf16.h with AVX-512 BF16 intrinsics; entered only after convGradBf16Supported.

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

// CO output channels by PV vectors of 16 positions from t0, over every pair and tap.
template <int CO, int PV>
void convTile(const ConvBf16Args& a, int64_t co0, int64_t t0) {
  __m512 acc[CO * PV];
  for (int u = 0; u < CO * PV; ++u) acc[u] = _mm512_setzero_ps();
  for (int64_t q = 0; q < a.pairs; ++q) {
    const uint32_t* xq = a.x + q * a.x_plane + t0;
    const uint32_t* wq = a.w + q * a.ntaps * a.co + co0;
    for (int64_t k = 0; k < a.ntaps; ++k) {
      __m512bh xv[PV];
      for (int p = 0; p < PV; ++p) xv[p] = (__m512bh)_mm512_loadu_si512(xq + a.taps[k] + p * 16);
      for (int c = 0; c < CO; ++c) {
        const __m512bh wv = (__m512bh)_mm512_set1_epi32(static_cast<int>(wq[k * a.co + c]));
        for (int p = 0; p < PV; ++p) acc[c * PV + p] = _mm512_dpbf16_ps(acc[c * PV + p], xv[p], wv);
      }
    }
  }
  for (int c = 0; c < CO; ++c)
    for (int p = 0; p < PV; ++p)
      _mm512_storeu_ps(a.y + (co0 + c) * a.y_plane + t0 + p * 16, acc[c * PV + p]);
}

constexpr int kConvCo = 4, kConvPv = 6;  // 24 accumulators, 6 input vectors, 1 weight pair
using ConvTileFn = void (*)(const ConvBf16Args&, int64_t, int64_t);
template <int CO>
constexpr ConvTileFn kConvRow[kConvPv] = {convTile<CO, 1>, convTile<CO, 2>, convTile<CO, 3>,
                                          convTile<CO, 4>, convTile<CO, 5>, convTile<CO, 6>};
constexpr const ConvTileFn* kConvTiles[kConvCo] = {kConvRow<1>, kConvRow<2>, kConvRow<3>,
                                                   kConvRow<4>};

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

namespace {

// Every element of each plane: zeros around rows [top, top + rows) x [left, left + cols), which
// row(p, r, dst) writes. T: uint16_t (bf16) or uint32_t (a pair).
template <typename T, typename RowFn>
void writePlanes(const Bf16Planes& s, T* out, RowFn&& row) {
  auto zero = [](T* p, int64_t n) {  // n >= 0
    constexpr int64_t kPer = 64 / sizeof(T);
    for (int64_t j = 0; j < n; j += kPer) {
      const uint64_t k = n - j >= kPer ? ~uint64_t{0} : (uint64_t{1} << (n - j)) - 1;
      if constexpr (sizeof(T) == 2)
        _mm512_mask_storeu_epi16(p + j, static_cast<__mmask32>(k), _mm512_setzero_si512());
      else
        _mm512_mask_storeu_epi32(p + j, static_cast<__mmask16>(k), _mm512_setzero_si512());
    }
  };
  const int64_t start = s.top * s.out_row + s.left;  // of the first row's data
  for (int64_t p = 0; p < s.planes; ++p) {
    T* plane = out + p * s.out_stride;
    zero(plane, s.rows > 0 ? start : s.out_plane);
    for (int64_t r = 0; r < s.rows; ++r) {
      T* dst = plane + start + r * s.out_row;
      row(p, r, dst);
      // the gap to the next row's data (the last row's: to the plane's end)
      const int64_t end = r + 1 < s.rows ? start + (r + 1) * s.out_row : s.out_plane;
      zero(dst + s.cols, end - (start + r * s.out_row + s.cols));
    }
  }
}

}  // namespace

void toBf16(const float* in, const Bf16Planes& s, uint16_t* out) {
  writePlanes(s, out, [&](int64_t p, int64_t r, uint16_t* dst) {
    convertRow(in + p * s.in_plane + r * s.in_row, s.cols, s.in_col, dst);
  });
}

void conv(const ConvBf16Args& a) {
  const int64_t vectors = a.y_plane / 16;
  for (int64_t co0 = 0; co0 < a.co; co0 += kConvCo) {
    const int64_t co = a.co - co0 < kConvCo ? a.co - co0 : kConvCo;
    for (int64_t v0 = 0; v0 < vectors; v0 += kConvPv) {
      const int64_t pv = vectors - v0 < kConvPv ? vectors - v0 : kConvPv;
      kConvTiles[co - 1][pv - 1](a, co0, v0 * 16);
    }
  }
}

namespace {

// 16 pairs (a[j], b[j]) as bf16, a in the low half of each 32-bit lane.
__m512i pairsOf(__m512 a, __m512 b) {
  const __m512i halves = (__m512i)_mm512_cvtne2ps_pbh(b, a);  // a's 16, then b's 16
  const __m512i interleave =
      _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(interleave, halves);
}

}  // namespace

void toBf16Pairs(const float* in, int64_t channels, const Bf16Planes& s, uint32_t* out) {
  writePlanes(s, out, [&](int64_t q, int64_t r, uint32_t* dst) {
    const float* a = in + 2 * q * s.in_plane + r * s.in_row;
    const bool has_b = 2 * q + 1 < channels;
    for (int64_t j = 0; j < s.cols; j += 16) {
      const __mmask16 k = firstLanes(s.cols - j);
      const __m512 va = _mm512_maskz_loadu_ps(k, a + j);
      const __m512 vb = has_b ? _mm512_maskz_loadu_ps(k, a + s.in_plane + j) : _mm512_setzero_ps();
      _mm512_mask_storeu_epi32(dst + j, k, pairsOf(va, vb));
    }
  });
}

void toBf16(const float* in, int64_t n, uint16_t* out) { convertRow(in, n, 1, out); }

void reduceLanes(const float* acc, int64_t n, float* dw) {
  for (int64_t i = 0; i < n; ++i) dw[i] += _mm512_reduce_add_ps(_mm512_loadu_ps(acc + i * 16));
}

}  // namespace nnc::exec::conv_grad_bf16
