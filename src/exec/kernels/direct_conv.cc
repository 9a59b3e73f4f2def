#include "direct_conv.h"

#include <algorithm>

#include "kernel_util.h"

namespace nnc::exec {
namespace {

using RowsFn = void (*)(const ConvDirectArgs&, int64_t, int64_t);

struct DirectIsa {
  int block;
  RowsFn rows;
};

DirectIsa isaKernels(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::kAvx512:
      return {conv_direct_avx512::block(), conv_direct_avx512::rows};
    case GemmIsa::kAvx2:
      return {conv_direct_avx2::block(), conv_direct_avx2::rows};
    case GemmIsa::kBaseline:
      break;
  }
  return {conv_direct_baseline::block(), conv_direct_baseline::rows};
}

}  // namespace

PackedConvWeights packConvWeights(const float* w, const float* bias, int64_t m, int64_t groups,
                                  int64_t k) {
  return packConvWeightsForIsa(bestGemmIsa(), w, bias, m, groups, k);
}

PackedConvWeights packConvWeightsForIsa(GemmIsa isa, const float* w, const float* bias, int64_t m,
                                        int64_t groups, int64_t k) {
  PackedConvWeights p;
  p.isa = isa;
  p.block = isaKernels(isa).block;
  p.m = m, p.groups = groups, p.k = k;
  const int64_t mg = m / groups;
  p.blocks = (mg + p.block - 1) / p.block;
  p.w.assign(static_cast<size_t>(groups * p.blocks * k * p.block), 0.f);
  p.bias.assign(static_cast<size_t>(groups * p.blocks * p.block), 0.f);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t oc = 0; oc < mg; ++oc) {
      const int64_t b = oc / p.block, lane = oc % p.block;
      float* dst = p.w.data() + (g * p.blocks + b) * k * p.block + lane;
      const float* src = w + (g * mg + oc) * k;
      for (int64_t t = 0; t < k; ++t) dst[t * p.block] = src[t];
      if (bias) p.bias[(g * p.blocks + b) * p.block + lane] = bias[g * mg + oc];
    }
  return p;
}

void directConv(const float* x, const DirectConvShape& s, const PackedConvWeights& packed,
                const Epilogue& act, float* y, const RunContext& ctx) {
  const int64_t xh = s.ih + s.pad_top + s.pad_bottom, xw = s.iw + s.pad_left + s.pad_right;
  const float* xp = x;
  // Zero-padded copy of the input (a ninth of an im2col for 3x3), so no tap needs a bounds check.
  thread_local std::vector<float> padded;
  if (xh != s.ih || xw != s.iw) {
    padded.resize(static_cast<size_t>(s.n * s.c * xh * xw));
    float* const base = padded.data();  // (the workers' thread_local is another vector)
    parallelFor(s.n * s.c, ctx, xh * xw, [&](int64_t plane) {
      float* dst = base + plane * xh * xw;
      const float* src = x + plane * s.ih * s.iw;
      std::fill(dst, dst + s.pad_top * xw, 0.f);
      for (int64_t r = 0; r < s.ih; ++r) {
        float* row = dst + (s.pad_top + r) * xw;
        std::fill(row, row + s.pad_left, 0.f);
        std::copy(src + r * s.iw, src + (r + 1) * s.iw, row + s.pad_left);
        std::fill(row + s.pad_left + s.iw, row + xw, 0.f);
      }
      std::fill(dst + (s.pad_top + s.ih) * xw, dst + xh * xw, 0.f);
    });
    xp = base;
  }
  const int64_t cg = s.c / packed.groups;
  std::vector<int64_t> taps(static_cast<size_t>(packed.k));
  for (int64_t c = 0, t = 0; c < cg; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) taps[t++] = (c * xh + i * s.dh) * xw + j * s.dw;
  ConvDirectArgs a;
  a.x = xp, a.c = s.c, a.xh = xh, a.xw = xw;
  a.w = packed.w.data(), a.bias = packed.bias.data(), a.taps = taps.data(), a.k = packed.k;
  a.y = y, a.m = packed.m, a.groups = packed.groups, a.blocks = packed.blocks;
  a.oh = s.oh, a.ow = s.ow, a.sh = s.sh, a.sw = s.sw;
  a.act = act;
  a.act.row_bias = a.act.col_bias = nullptr;
  // A 1x1 convolution with unit strides and no padding is one long row per channel.
  if (s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && xh == s.ih && xw == s.iw) {
    a.xw = a.ow = s.oh * s.ow;
    a.xh = a.oh = 1;
    for (int64_t c = 0; c < cg; ++c) taps[c] = c * a.xw;
  }
  const RowsFn rows = isaKernels(packed.isa).rows;
  const int64_t total = s.n * packed.groups * packed.blocks * a.oh;
  parallelFor(total, ctx, packed.k * a.ow * packed.block, [&](int64_t r) { rows(a, r, r + 1); });
}

}  // namespace nnc::exec
