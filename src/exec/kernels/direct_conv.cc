#include "direct_conv.h"

#include "conv_grad_bf16.h"

#include <algorithm>

#include "kernel_util.h"

namespace nnc::exec {
namespace {

using RowsFn = void (*)(const ConvDirectArgs&, int64_t, int64_t);

using PlanesFn = void (*)(const ConvDirectArgs&, float*, int64_t, int64_t);

using GradFn = void (*)(const ConvWeightGradArgs&);

struct DirectIsa {
  int block;
  RowsFn rows;
  PlanesFn depthwise;
  GradFn weight_grad;
};

DirectIsa isaKernels(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::kAvx512:
      return {conv_direct_avx512::block(), conv_direct_avx512::rows,
              conv_direct_avx512::depthwisePlanes, conv_direct_avx512::weightGrad};
    case GemmIsa::kAvx2:
      return {conv_direct_avx2::block(), conv_direct_avx2::rows, conv_direct_avx2::depthwisePlanes,
              conv_direct_avx2::weightGrad};
    case GemmIsa::kBaseline:
      break;
  }
  return {conv_direct_baseline::block(), conv_direct_baseline::rows,
          conv_direct_baseline::depthwisePlanes, conv_direct_baseline::weightGrad};
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

namespace {

// The zero-padded copy of the input (a ninth of an im2col for 3x3) so no tap needs a bounds check,
// followed by `slack` zero floats; the input itself when neither is needed.
const float* padInput(const float* x, const DirectConvShape& s, int64_t slack,
                      const RunContext& ctx) {
  const int64_t xh = s.ih + s.pad_top + s.pad_bottom, xw = s.iw + s.pad_left + s.pad_right;
  if (xh == s.ih && xw == s.iw && slack == 0) return x;
  thread_local std::vector<float> padded;
  const size_t size = static_cast<size_t>(s.n * s.c * xh * xw);
  padded.resize(size + static_cast<size_t>(slack));
  float* const base = padded.data();  // (the workers' thread_local is another vector)
  std::fill(base + size, base + size + slack, 0.f);
  parallelFor(s.n * s.c, ctx, xh * xw, [&](int64_t plane) {
    // One memset per plane and one copy per row: these planes are small, calls are the cost.
    float* dst = base + plane * xh * xw;
    const float* src = x + plane * s.ih * s.iw;
    std::fill(dst, dst + xh * xw, 0.f);
    for (int64_t r = 0; r < s.ih; ++r)
      std::copy(src + r * s.iw, src + (r + 1) * s.iw, dst + (s.pad_top + r) * xw + s.pad_left);
  });
  return base;
}

}  // namespace

namespace {

// Runs fn(sample, ctx) for every sample: whole samples per thread when there are enough of them
// (each pads into its own buffer), else one sample after the other with the threads inside it.
// Sample by sample, the padded input and the output stay in cache; a padded copy of the whole
// batch did not at batch 8.
template <typename Fn>
void forEachSample(int64_t n, int64_t work_per_sample, const RunContext& ctx, Fn&& fn) {
  if (ctx.num_threads > 1 && n >= ctx.num_threads) {
    RunContext serial = ctx;
    serial.num_threads = 1;
    parallelFor(n, ctx, work_per_sample, [&](int64_t sample) { fn(sample, serial); });
  } else {
    for (int64_t sample = 0; sample < n; ++sample) fn(sample, ctx);
  }
}

}  // namespace

void directConv(const float* x, const DirectConvShape& s, const PackedConvWeights& packed,
                const Epilogue& act, float* y, const RunContext& ctx) {
  const int64_t xh = s.ih + s.pad_top + s.pad_bottom, xw = s.iw + s.pad_left + s.pad_right;
  const int64_t cg = s.c / packed.groups;
  std::vector<int64_t> taps(static_cast<size_t>(packed.k));
  for (int64_t c = 0, t = 0; c < cg; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) taps[t++] = (c * xh + i * s.dh) * xw + j * s.dw;
  ConvDirectArgs a;
  a.c = s.c, a.xh = xh, a.xw = xw;
  a.w = packed.w.data(), a.bias = packed.bias.data(), a.taps = taps.data(), a.k = packed.k;
  a.m = packed.m, a.groups = packed.groups, a.blocks = packed.blocks;
  a.oh = s.oh, a.ow = s.ow, a.sh = s.sh, a.sw = s.sw;
  a.act = act;
  a.act.row_bias = a.act.col_bias = nullptr;
  a.half_tail = packed.half_tail;
  // A 1x1 convolution with unit strides and no padding is one long row per channel (unless the
  // caller asks for fewer outputs than inputs: the training tape's phased input gradients).
  if (s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && xh == s.ih && xw == s.iw &&
      s.oh == s.ih && s.ow == s.iw) {
    a.xw = a.ow = s.oh * s.ow;
    a.xh = a.oh = 1;
    for (int64_t c = 0; c < cg; ++c) taps[c] = c * a.xw;
  }
  const RowsFn rows = isaKernels(packed.isa).rows;
  const int64_t rows_per_sample = packed.groups * packed.blocks * a.oh;
  const int64_t work_per_row = packed.k * a.ow * packed.block;
  DirectConvShape one = s;
  one.n = 1;
  forEachSample(
      s.n, rows_per_sample * work_per_row, ctx, [&](int64_t sample, const RunContext& inner) {
        ConvDirectArgs as = a;
        as.x = padInput(x + sample * s.c * s.ih * s.iw, one, 0, inner);
        as.y = y + sample * packed.m * s.oh * s.ow;
        parallelFor(rows_per_sample, inner, work_per_row, [&](int64_t r) { rows(as, r, r + 1); });
      });
}

void directDepthwiseConv(GemmIsa isa, const float* x, const DirectConvShape& s, const float* w,
                         const float* bias, int64_t m, const Epilogue& act, float* y,
                         const RunContext& ctx) {
  const DirectIsa kernels = isaKernels(isa);
  ConvDirectArgs a;
  a.c = s.c, a.xh = s.ih + s.pad_top + s.pad_bottom, a.xw = s.iw + s.pad_left + s.pad_right;
  std::vector<int64_t> taps;
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t j = 0; j < s.kw; ++j) taps.push_back(i * s.dh * a.xw + j * s.dw);
  a.taps = taps.data(), a.k = s.kh * s.kw;
  a.w = w, a.bias = bias, a.m = m, a.groups = s.c;
  a.oh = s.oh, a.ow = s.ow, a.sh = s.sh, a.sw = s.sw;
  a.act = act;
  a.act.row_bias = a.act.col_bias = nullptr;
  const size_t scratch_size = static_cast<size_t>(a.oh * a.xw + kernels.block);
  const int64_t work_per_plane = a.k * a.oh * a.xw,
                slack = (s.sh * a.xw + kernels.block * s.sw) * 2;
  DirectConvShape one = s;
  one.n = 1;
  forEachSample(s.n, m * work_per_plane, ctx, [&](int64_t sample, const RunContext& inner) {
    ConvDirectArgs as = a;
    as.x = padInput(x + sample * s.c * s.ih * s.iw, one, slack, inner);
    as.y = y + sample * m * s.oh * s.ow;
    parallelFor(m, inner, work_per_plane, [&](int64_t plane) {
      thread_local std::vector<float> scratch;
      if (scratch.size() < scratch_size) scratch.resize(scratch_size);
      kernels.depthwise(as, scratch.data(), plane, plane + 1);
    });
  });
}

void directDepthwiseConv(const float* x, const DirectConvShape& s, const float* w,
                         const float* bias, int64_t m, const Epilogue& act, float* y,
                         const RunContext& ctx) {
  directDepthwiseConv(bestGemmIsa(), x, s, w, bias, m, act, y, ctx);
}

bool convGradBf16Supported() {
  static const bool ok = bestGemmIsa() == GemmIsa::kAvx512 && [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
  }();
  return ok;
}

int convWeightGradBlock() { return isaKernels(bestGemmIsa()).block; }

void convWeightGrad(const ConvWeightGradArgs& a) { isaKernels(bestGemmIsa()).weight_grad(a); }

}  // namespace nnc::exec
