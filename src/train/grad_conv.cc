// Conv and ConvTranspose backward, samples split over the threads (each thread keeps its own
// dW/dB, summed at the end).
//   Conv:  dW_g += dY_{n,g} im2col(X_{n,g})^T by the executor's direct weight-gradient kernel (the
//          im2col rows are offsets into X, never built), dX_{n,g} = col2im(W_g^T dY_{n,g}),
//          dB += sum over n and positions of dY
//          With stride 1, dX is itself a convolution, run by the executor's direct kernel:
//          dX = Conv(dY, W'), W'[g*Cg + c, m, i, j] = W[g*Mg + m, c, kh-1-i, kw-1-j],
//          pads' = (k-1)*d - pads (same dilation and groups)
//          With strides (dilation 1), dX is one such convolution per phase (grad_conv_phases.h)
//   ConvTranspose: dcol = im2col(dY_{n,g}) (the forward's col2im read backwards),
//          dX_{n,g} = W_g dcol,  dW_g += X_{n,g} dcol^T

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "backward.h"
#include "conv_grad_bf16.h"
#include "direct_conv.h"
#include "gemm.h"
#include "grad_conv_phases.h"
#include "kernel_util.h"
#include "nncompress/ir/batch_norm.h"
#include "nncompress/ir/conv_geometry.h"

namespace nnc::train {
namespace {

struct Geometry {
  int64_t c = 0, ih = 1, iw = 1;  // image being im2col'd: channels, height, width
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1, pt = 0, pl = 0;
  int64_t oh = 1, ow = 1;  // positions (columns of col)
  int64_t rows() const { return c * kh * kw; }
  int64_t cols() const { return oh * ow; }
  bool identity() const {  // col == image
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && ih == oh && iw == ow;
  }
};

// First output column whose tap x*sw + off is at or past iw.
inline int64_t iwLimit(const Geometry& g, int64_t off) {
  const int64_t room = g.iw - off;  // taps x*sw < room
  return room <= 0 ? 0 : (room + g.sw - 1) / g.sw;
}

// Output columns [lo, hi) of a row whose taps x*sw + off land inside [0, iw).
inline void validColumns(const Geometry& g, int64_t off, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
  hi = iwLimit(g, off);
  lo = std::min(lo, g.ow), hi = std::clamp(hi, lo, g.ow);
}

// col[(c*kh + i)*kw + j, y*ow + x] = img[c, y*sh - pt + i*dh, x*sw - pl + j*dw] (0 outside).
// Plain loops, not memset/memcpy: rows are a few dozen floats, where a library call per edge and
// per row costs more than the copy.
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void im2col(const float* img,
                                                                          const Geometry& g,
                                                                          float* col) {
  for (int64_t r = 0; r < g.rows(); ++r) {
    const int64_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
    const float* src = img + c * g.ih * g.iw;
    float* dst = col + r * g.cols();
    const int64_t off = j * g.dw - g.pl;
    int64_t lo, hi;
    validColumns(g, off, lo, hi);
    for (int64_t y = 0; y < g.oh; ++y) {
      const int64_t sy = y * g.sh - g.pt + i * g.dh;
      float* row = dst + y * g.ow;
      if (sy < 0 || sy >= g.ih) {
        for (int64_t x = 0; x < g.ow; ++x) row[x] = 0.f;
        continue;
      }
      const float* line = src + sy * g.iw + off;
      for (int64_t x = 0; x < lo; ++x) row[x] = 0.f;
      if (g.sw == 1) {
        for (int64_t x = lo; x < hi; ++x) row[x] = line[x];
      } else {
        for (int64_t x = lo; x < hi; ++x) row[x] = line[x * g.sw];
      }
      for (int64_t x = hi; x < g.ow; ++x) row[x] = 0.f;
    }
  }
}

// The adjoint of im2col: img = scatter-add of col (img zeroed first).
void col2im(const float* col, const Geometry& g, float* img) {
  std::fill(img, img + g.c * g.ih * g.iw, 0.f);
  for (int64_t r = 0; r < g.rows(); ++r) {
    const int64_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
    float* dst = img + c * g.ih * g.iw;
    const float* src = col + r * g.cols();
    const int64_t off = j * g.dw - g.pl;
    int64_t lo, hi;
    validColumns(g, off, lo, hi);
    for (int64_t y = 0; y < g.oh; ++y) {
      const int64_t sy = y * g.sh - g.pt + i * g.dh;
      if (sy < 0 || sy >= g.ih) continue;
      float* line = dst + sy * g.iw + off;
      const float* row = src + y * g.ow;
      if (g.sw == 1) {
        for (int64_t x = lo; x < hi; ++x) line[x] += row[x];
      } else {
        for (int64_t x = lo; x < hi; ++x) line[x * g.sw] += row[x];
      }
    }
  }
}

// C[m, n] = A * B with row-major operands (optionally transposed), one thread.
void gemm(int64_t m, int64_t n, int64_t k, const float* a, bool ta, const float* b, bool tb,
          float* c) {
  exec::GemmArgs g;
  g.m = m, g.n = n, g.k = k;
  g.a = a, g.lda = ta ? m : k, g.trans_a = ta;
  g.b = b, g.ldb = tb ? k : n, g.trans_b = tb;
  g.c = c, g.ldc = n;
  g.threads = 1;
  exec::sgemm(g);
}

// Per-thread partial sums of dW and dB, added up after the parallel loop.
struct Partials {
  int64_t wsize, bsize;
  std::vector<std::vector<float>> dw, db;
  Partials(int threads, int64_t wsize, int64_t bsize)
      : wsize(wsize), bsize(bsize), dw(threads), db(threads) {}
  // Called by thread t in its sample loop: the zeroing is not serial work.
  void zero(int t) {
    dw[t].assign(static_cast<size_t>(wsize), 0.f);
    db[t].assign(static_cast<size_t>(bsize), 0.f);
  }
  // Element i of the sum over the threads that had samples, in thread order (deterministic
  // whatever the scheduling); 0 when none had any.
  static float sumAt(const std::vector<std::vector<float>>& parts, int64_t i) {
    float v = 0.f;
    bool first = true;
    for (const std::vector<float>& p : parts) {
      if (p.empty()) continue;
      v = first ? p[i] : v + p[i];
      first = false;
    }
    return v;
  }
  float dwAt(int64_t i) const { return sumAt(dw, i); }
  float dbAt(int64_t i) const { return sumAt(db, i); }
  void sumInto(Tensor* w, Tensor* b) const {
    if (w) std::generate_n(fdata(*w), wsize, [&, i = int64_t{0}]() mutable { return dwAt(i++); });
    if (b) std::generate_n(fdata(*b), bsize, [&, i = int64_t{0}]() mutable { return dbAt(i++); });
  }
};

// Runs fn(thread, first_sample, end_sample) over contiguous sample ranges, one per thread.
template <typename Fn>
void perThreadSamples(int64_t n, const exec::RunContext& ctx, int threads, Fn&& fn) {
  const int64_t chunk = (n + threads - 1) / threads;
  exec::parallelRun(threads, ctx, [&](int64_t t) {
    const int64_t s0 = std::min(n, t * chunk), s1 = std::min(n, s0 + chunk);
    if (s1 > s0) fn(static_cast<int>(t), s0, s1);
  });
}

// Forward geometry of a Conv: X [n, c, ih, iw] -> positions of dY.
Geometry convGeometry(const Node& node, const Shape& x, const Shape& w, const Shape& y) {
  const bool one_d = x.size() == 3;
  const size_t rank = one_d ? 1 : 2, last = rank - 1;
  const ConvWindow window = ConvWindow::of(node);
  Geometry g;
  g.ih = one_d ? 1 : x[2], g.iw = x.back();
  g.kh = one_d ? 1 : w[2], g.kw = w.back();
  g.oh = one_d ? 1 : y[2], g.ow = y.back();
  g.sh = one_d ? 1 : window.stride(0), g.sw = window.stride(last);
  g.dh = one_d ? 1 : window.dilation(0), g.dw = window.dilation(last);
  // The forward ran with this geometry (ir/conv_geometry.h), so it is valid.
  auto pad = [&](size_t axis, int64_t in, int64_t k) {
    const auto a = convAxis(window, axis, rank, in, k);
    return a.isOk() ? a->pad_begin : int64_t{0};
  };
  if (!one_d) g.pt = pad(0, g.ih, g.kh);
  g.pl = pad(last, g.iw, g.kw);
  return g;
}

Status checkConvShapes(const BackwardContext& c) {
  const Shape& x = c.input_shapes[0];
  if (x.size() < 3 || x.size() > 4 || c.input_shapes[1].size() != x.size())
    return unsupported("only 1-D and 2-D convolutions have a backward");
  return Status::ok();
}

// Where the weight gradient's windows read X: X itself when every window lies inside it (no
// padding on the read side), else a zero-padded copy of hp x wp per channel.
struct WindowSource {
  int64_t hp = 0, wp = 0;  // rows and columns the windows span
  bool padded = false;
  explicit WindowSource(const Geometry& g)
      : hp((g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1),
        wp((g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1),
        padded(g.pt > 0 || g.pl > 0 || hp > g.ih || wp > g.iw) {
    if (!padded) hp = g.ih, wp = g.iw;
  }
};

// xpad[c][r][q] = img[c][r - pt][q - pl] (0 outside), hp x wp per channel.
// Every element written once (no fill first): zero rows above and below, zero columns left and
// right, the image row between. Plain loops, as in im2col: rows are a few dozen floats.
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void padImage(const float* img,
                                                                            const Geometry& g,
                                                                            const WindowSource& e,
                                                                            float* xpad) {
  const int64_t q0 = std::clamp<int64_t>(g.pl, 0, e.wp);  // first column from the image
  const int64_t q1 = std::clamp<int64_t>(g.pl + g.iw, q0, e.wp);
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t r = 0; r < e.hp; ++r) {
      const int64_t y = r - g.pt;
      float* dst = xpad + (c * e.hp + r) * e.wp;
      if (y < 0 || y >= g.ih) {
        for (int64_t q = 0; q < e.wp; ++q) dst[q] = 0.f;
        continue;
      }
      const float* src = img + (c * g.ih + y) * g.iw - g.pl;
      for (int64_t q = 0; q < q0; ++q) dst[q] = 0.f;
      for (int64_t q = q0; q < q1; ++q) dst[q] = src[q];
      for (int64_t q = q1; q < e.wp; ++q) dst[q] = 0.f;
    }
}

typedef float Float4 __attribute__((vector_size(16)));
typedef int Int4 __attribute__((vector_size(16)));

inline Float4 load4(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, Float4 v) { std::memcpy(p, &v, sizeof v); }

// out[q*lanes + l] = rows[l][q] for q < p, l < used (0 for l in [used, lanes)): four rows by four
// positions at a time, transposed in registers; the positions of a lane group are written in
// order (strided scalar stores touched a cache line per element).
void packLanes(const float* const* rows, int64_t used, int64_t lanes, int64_t p, float* out) {
  const int64_t l4 = used & ~int64_t{3}, p4 = p & ~int64_t{3};
  for (int64_t l = 0; l < l4; l += 4) {
    const float *r0 = rows[l], *r1 = rows[l + 1], *r2 = rows[l + 2], *r3 = rows[l + 3];
    float* o = out + l;
    for (int64_t q = 0; q < p4; q += 4) {
      const Float4 a = load4(r0 + q), b = load4(r1 + q), c = load4(r2 + q), d = load4(r3 + q);
      const Float4 ab01 = __builtin_shuffle(a, b, Int4{0, 4, 1, 5});
      const Float4 ab23 = __builtin_shuffle(a, b, Int4{2, 6, 3, 7});
      const Float4 cd01 = __builtin_shuffle(c, d, Int4{0, 4, 1, 5});
      const Float4 cd23 = __builtin_shuffle(c, d, Int4{2, 6, 3, 7});
      store4(o + q * lanes, __builtin_shuffle(ab01, cd01, Int4{0, 1, 4, 5}));
      store4(o + (q + 1) * lanes, __builtin_shuffle(ab01, cd01, Int4{2, 3, 6, 7}));
      store4(o + (q + 2) * lanes, __builtin_shuffle(ab23, cd23, Int4{0, 1, 4, 5}));
      store4(o + (q + 3) * lanes, __builtin_shuffle(ab23, cd23, Int4{2, 3, 6, 7}));
    }
    for (int64_t q = p4; q < p; ++q)
      for (int64_t j = 0; j < 4; ++j) o[q * lanes + j] = rows[l + j][q];
  }
  for (int64_t q = 0; q < p; ++q) {
    float* o = out + q * lanes;
    for (int64_t l = l4; l < used; ++l) o[l] = rows[l][q];
    for (int64_t l = used; l < lanes; ++l) o[l] = 0.f;
  }
}

// dX of a stride-1 Conv with bf16 products (exec::conv_grad_bf16::conv): dY convolved with the
// flipped weights, dY's channels in interleaved bf16 pairs placed at the transposed convolution's
// pads, rows wx apart, so dX comes out wide (rows wx apart) and is cropped. Set up every batch
// (the weights train).
struct Bf16InputGrad {
  int64_t top = 0, left = 0, wx = 0, x_plane = 0, y_plane = 0, pairs = 0;
  std::vector<int64_t> taps;
  std::vector<uint32_t> w;  // per group [pairs][taps][cg]
};

// One Conv gradient for samples [s0, s1) of one thread.
struct ConvGrad {
  const BackwardContext& c;
  Geometry g;  // per group: g.c = input channels of a group
  int64_t n, cin, m, groups, mg, kk, p;
  const float *x, *w, *dy;  // w: the weights dX is taken with (scaled when a BN is folded in)
  float* dx;
  bool want_w, want_b;          // dW (unscaled when a BN is folded in), per-channel sums of dY
  bool add_dx = false;          // dx is BackwardContext::input0_grad_sum: add into it
  float* dy_mut = nullptr;      // dy, this backward's own copy, when masked in place
  const float* mask = nullptr;  // a folded BN's Relu output: dY is zero where it is not > 0
  const PhasedInputGrad* phased = nullptr;  // dX by phases (strided Conv), else nullptr
  bool dw_bf16 = false;                     // dW by weightGradBf16
  const Bf16InputGrad* dx_bf16 = nullptr;   // dX by inputGradBf16, else nullptr

  // dW by the executor's direct weight-gradient kernel (no im2col): dY packed per block of
  // output channels, each im2col row an offset into X (or its padded copy), a few samples a call.
  void weightGradDirect(int t, int64_t s0, int64_t s1, Partials& part) const {
    thread_local std::vector<float> xpad, packed;
    thread_local std::vector<int64_t> pos, off;
    const WindowSource src(g);
    const int64_t lanes = exec::convWeightGradBlock(), blocks = (mg + lanes - 1) / lanes;
    const int64_t plane = src.hp * src.wp, chunk = std::min<int64_t>(4, s1 - s0);
    off.resize(static_cast<size_t>(kk));
    for (int64_t r = 0; r < kk; ++r) {
      const int64_t ch = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
      off[r] = ch * plane + i * g.dh * src.wp + j * g.dw;
    }
    if (src.padded) xpad.resize(static_cast<size_t>(chunk * g.c * plane));
    packed.resize(static_cast<size_t>(blocks * chunk * p * lanes));
    pos.resize(static_cast<size_t>(chunk * p));
    for (int64_t b0 = s0; b0 < s1; b0 += chunk) {
      const int64_t bn = std::min(chunk, s1 - b0);
      const int64_t sample_stride = src.padded ? g.c * plane : cin * plane;
      for (int64_t si = 0; si < bn; ++si)
        for (int64_t y = 0; y < g.oh; ++y)
          for (int64_t xx = 0; xx < g.ow; ++xx)
            pos[(si * g.oh + y) * g.ow + xx] = si * sample_stride + y * g.sh * src.wp + xx * g.sw;
      for (int64_t gi = 0; gi < groups; ++gi) {
        const float* xs = x + (b0 * cin + gi * g.c) * g.ih * g.iw;
        if (src.padded) {
          for (int64_t si = 0; si < bn; ++si)
            padImage(xs + si * cin * g.ih * g.iw, g, src, xpad.data() + si * g.c * plane);
          xs = xpad.data();
        }
        packDy(b0, bn, gi, lanes, blocks, packed.data());
        exec::ConvWeightGradArgs a;
        a.d = packed.data(), a.k = bn * p, a.m = mg, a.blocks = blocks;
        a.pos = pos.data(), a.x = xs, a.off = off.data(), a.rows = kk;
        a.run = g.kh == 3 && g.kw == 3 && g.dw == 1 ? 9 : 1;
        a.dw = part.dw[t].data() + gi * mg * kk;
        exec::convWeightGrad(a);
      }
    }
  }

  // Samples per bf16 kernel call: enough for 256 vectors of positions per tile (its set-up and
  // partial sums cost as much as ~7 of them: 14x14 maps ran at half speed one sample a call),
  // at most 8 MiB of converted planes.
  static int64_t bf16Chunk(int64_t samples, int64_t plane, int64_t elems_per_sample) {
    const int64_t by_work = (256 * 32 + plane - 1) / plane;
    const int64_t by_memory = (int64_t{8} << 20) / (2 * elems_per_sample);
    return std::clamp<int64_t>(std::min(by_work, by_memory), 1, samples);
  }

  // dW with bf16 products (exec/kernels/conv_grad_bf16.h). X's padded planes are split into
  // sh x sw phases, phase (a, b) holding rows a, a + sh, ... and columns b, b + sw, ...: a
  // window tap (u, v) = (i dh, j dw) reads phase (u % sh, v % sw) at (y + u / sh, x + v / sw),
  // so every stride reads like stride 1. dY's planes are wide (rows a phase row apart), so each
  // row of the im2col is one offset. Per chunk of samples, converted to bf16; lane partial sums
  // per thread, reduced once at the end.
  void weightGradBf16(int t, int64_t s0, int64_t s1, Partials& part) const {
    thread_local std::vector<uint16_t> xb, db;
    thread_local std::vector<float> acc;
    thread_local std::vector<int64_t> off;
    const int64_t phases = g.sh * g.sw;
    const int64_t hq = g.oh + (g.kh - 1) * g.dh / g.sh, wq = g.ow + (g.kw - 1) * g.dw / g.sw;
    const int64_t plane = (g.oh * wq + 31) / 32 * 32;
    const int64_t xs = ((g.kh - 1) * g.dh / g.sh * wq + (g.kw - 1) * g.dw / g.sw + plane + 31) /
                       32 * 32;  // one phase
    const int64_t chunk = bf16Chunk(s1 - s0, plane, cin * phases * xs + m * plane);
    off.resize(static_cast<size_t>(kk));
    for (int64_t r = 0; r < kk; ++r) {
      const int64_t ch = r / (g.kh * g.kw), u = (r / g.kw) % g.kh * g.dh, v = r % g.kw * g.dw;
      off[r] = (ch * phases + u % g.sh * g.sw + v % g.sw) * xs + u / g.sh * wq + v / g.sw;
    }
    growTo(xb, chunk * cin * phases * xs), growTo(db, chunk * m * plane), growTo(acc, m * kk * 16);
    for (int64_t b0 = s0; b0 < s1; b0 += chunk) {
      const int64_t bn = std::min(chunk, s1 - b0);
      for (int64_t a = 0; a < g.sh; ++a)
        for (int64_t b = 0; b < g.sw; ++b)
          if (phaseRead(a, b)) convertPhase(b0, bn, a, b, hq, wq, xs, xb.data());
      exec::conv_grad_bf16::toBf16(dy + b0 * m * p,
                                   {.planes = bn * m,
                                    .rows = g.oh,
                                    .cols = g.ow,
                                    .in_plane = p,
                                    .in_row = g.ow,
                                    .out_plane = plane,
                                    .out_stride = plane,
                                    .out_row = wq},
                                   db.data());
      for (int64_t gi = 0; gi < groups; ++gi) {
        exec::ConvWeightGradBf16Args a;
        a.dy = db.data() + gi * mg * plane, a.dy_sample = m * plane, a.dy_plane = plane, a.m = mg;
        a.x = xb.data() + gi * g.c * phases * xs, a.x_sample = cin * phases * xs;
        a.off = off.data(), a.rows = kk, a.samples = bn;
        a.acc = acc.data() + gi * mg * kk * 16, a.add = b0 > s0;
        exec::conv_grad_bf16::weightGrad(a);
      }
    }
    exec::conv_grad_bf16::reduceLanes(acc.data(), m * kk, part.dw[t].data());
  }

  bool phaseRead(int64_t a, int64_t b) const {  // by some tap (a 1x1 stride-2 Conv: one of four)
    bool rows = false, cols = false;
    for (int64_t i = 0; i < g.kh; ++i) rows |= i * g.dh % g.sh == a;
    for (int64_t j = 0; j < g.kw; ++j) cols |= j * g.dw % g.sw == b;
    return rows && cols;
  }

  // Phase (a, b) of X's padded planes, hq x wq, in bf16: padded row a + sh y' is image row
  // a + sh y' - pt, so image rows from a - pt in steps of sh (likewise columns).
  void convertPhase(int64_t b0, int64_t bn, int64_t a, int64_t b, int64_t hq, int64_t wq,
                    int64_t xs, uint16_t* out) const {
    auto firstInside = [](int64_t phase, int64_t pad, int64_t step) {  // y' with a+sh y'-pt >= 0
      return pad > phase ? (pad - phase + step - 1) / step : 0;
    };
    auto countInside = [](int64_t first, int64_t phase, int64_t pad, int64_t step, int64_t size,
                          int64_t limit) {  // y' >= first with a + sh y' - pt < size, y' < limit
      const int64_t end = std::min(limit, (size + pad - phase + step - 1) / step);
      return std::max<int64_t>(0, end - first);
    };
    const int64_t top = std::min(firstInside(a, g.pt, g.sh), hq);
    const int64_t left = std::min(firstInside(b, g.pl, g.sw), wq);
    const int64_t rows = countInside(top, a, g.pt, g.sh, g.ih, hq);
    const int64_t cols = countInside(left, b, g.pl, g.sw, g.iw, wq);
    const int64_t phases = g.sh * g.sw;
    const float* in = x + b0 * cin * g.ih * g.iw;
    if (rows > 0 && cols > 0) in += (a + g.sh * top - g.pt) * g.iw + (b + g.sw * left - g.pl);
    exec::conv_grad_bf16::toBf16(in,
                                 {.planes = bn * cin,
                                  .rows = rows,
                                  .cols = cols,
                                  .in_plane = g.ih * g.iw,
                                  .in_row = g.sh * g.iw,
                                  .in_col = g.sw,
                                  .out_plane = xs,
                                  .out_stride = phases * xs,
                                  .out_row = wq,
                                  .top = top,
                                  .left = left},
                                 out + (a * g.sw + b) * xs);
  }

  template <typename T>
  static void growTo(std::vector<T>& v, int64_t n) {  // no fill of what a bigger layer left
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  }

  // packed[b][si*p + q][l] = dY[b0 + si][gi*mg + b*lanes + l][q] (0 past the group's channels).
  void packDy(int64_t b0, int64_t bn, int64_t gi, int64_t lanes, int64_t blocks,
              float* packed) const {
    const int64_t k = bn * p;
    const float* rows[64];
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t used = std::min(lanes, mg - b * lanes);
      for (int64_t si = 0; si < bn; ++si) {
        for (int64_t l = 0; l < used; ++l)
          rows[l] = dy + ((b0 + si) * m + gi * mg + b * lanes + l) * p;
        packLanes(rows, used, lanes, p, packed + b * k * lanes + si * p * lanes);
      }
    }
  }

  void run(int t, int64_t s0, int64_t s1, Partials& part) const {
    if (mask) maskDy(t, s0, s1, part);  // with the channel sums in the same pass
    if (want_w && dw_bf16) weightGradBf16(t, s0, s1, part);
    if (want_w && !dw_bf16) weightGradDirect(t, s0, s1, part);
    if (want_b && !mask) biasGrad(t, s0, s1, part);
    if (!dx) return;
    if (dx_bf16) return inputGradBf16(s0, s1);
    if (phased) {
      thread_local std::vector<float> scratch;
      for (int64_t s = s0; s < s1; ++s)
        phased->sample(dy + s * m * p, dx + s * cin * g.ih * g.iw, scratch, add_dx);
      return;
    }
    gemmInputGrad(s0, s1);
  }

  // dY where the fused Relu's output is > 0, else 0 (in place: dy_mut is this backward's own),
  // and biasGrad's sums when wanted.
  void maskDy(int t, int64_t s0, int64_t s1, Partials& part) const {
    for (int64_t s = s0; s < s1; ++s)
      for (int64_t j = 0; j < m; ++j) {
        float* row = dy_mut + (s * m + j) * p;
        const float* keep = mask + (s * m + j) * p;
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int64_t q = 0; q < p; ++q) {
          const float v = keep[q] > 0.f ? row[q] : 0.f;
          row[q] = v, sum += v;
        }
        if (want_b) part.db[t][j] += sum;
      }
  }

  void biasGrad(int t, int64_t s0, int64_t s1, Partials& part) const {
    for (int64_t s = s0; s < s1; ++s)
      for (int64_t j = 0; j < m; ++j) {
        float sum = 0.f;
        const float* row = dy + (s * m + j) * p;
#pragma omp simd reduction(+ : sum)
        for (int64_t q = 0; q < p; ++q) sum += row[q];
        part.db[t][j] += sum;
      }
  }

  void inputGradBf16(int64_t s0, int64_t s1) const {
    thread_local std::vector<uint32_t> xi;
    thread_local std::vector<float> yw;
    const Bf16InputGrad& st = *dx_bf16;
    const int64_t taps = g.kh * g.kw;
    growTo(xi, st.pairs * st.x_plane), growTo(yw, g.c * st.y_plane);
    for (int64_t s = s0; s < s1; ++s)
      for (int64_t gi = 0; gi < groups; ++gi) {
        exec::conv_grad_bf16::toBf16Pairs(dy + (s * m + gi * mg) * p, mg,
                                          {.planes = st.pairs,
                                           .rows = g.oh,
                                           .cols = g.ow,
                                           .in_plane = p,
                                           .in_row = g.ow,
                                           .out_plane = st.x_plane,
                                           .out_stride = st.x_plane,
                                           .out_row = st.wx,
                                           .top = st.top,
                                           .left = st.left},
                                          xi.data());
        exec::ConvBf16Args a;
        a.x = xi.data(), a.x_plane = st.x_plane, a.pairs = st.pairs;
        a.w = st.w.data() + gi * st.pairs * taps * g.c;
        a.taps = st.taps.data(), a.ntaps = taps, a.co = g.c;
        a.y = yw.data(), a.y_plane = st.y_plane;
        exec::conv_grad_bf16::conv(a);
        for (int64_t c = 0; c < g.c; ++c)  // the wide rows cropped to iw
          for (int64_t r = 0; r < g.ih; ++r) {
            const float* src = yw.data() + c * st.y_plane + r * st.wx;
            float* dst = dx + ((s * cin + gi * g.c + c) * g.ih + r) * g.iw;
            if (add_dx) {
#pragma omp simd
              for (int64_t j = 0; j < g.iw; ++j) dst[j] += src[j];
            } else {
              std::copy(src, src + g.iw, dst);
            }
          }
      }
  }

  // dX_{n,g} = col2im(W_g^T dY_{n,g}) (geometries without a direct form).
  void gemmInputGrad(int64_t s0, int64_t s1) const {
    thread_local std::vector<float> dcol;
    const bool same = g.identity();
    if (!same) dcol.resize(static_cast<size_t>(kk * p));
    for (int64_t s = s0; s < s1; ++s)
      for (int64_t gi = 0; gi < groups; ++gi) {
        const float* dys = dy + (s * m + gi * mg) * p;
        float* out = same ? dx + (s * cin + gi * g.c) * g.ih * g.iw : dcol.data();
        gemm(kk, p, mg, w + gi * mg * kk, true, dys, false, out);
        if (!same) col2im(dcol.data(), g, dx + (s * cin + gi * g.c) * g.ih * g.iw);
      }
  }
};

// dX of a stride-1 Conv as a Conv of dY, built once per shape: the executor's direct kernel run
// here with W' packed for a half-width last block (exec::ConvDirectArgs::half_tail) when it is a
// 2-D grouped or dense convolution, else the executor's Conv kernel (depthwise, 1-D).
struct DirectInputGrad : BackwardState {
  Shape x_shape, w_shape;
  Graph graph;
  std::unique_ptr<exec::Kernel> kernel;
  Tensor flipped;               // W' (rebuilt every batch: the weights train)
  bool own = false;             // run exec::directConv with `shape` instead of `kernel`
  exec::DirectConvShape shape;  // n set per run
};

// Fills st.shape and sets st.own when dX = Conv(dY, W') can run on exec::directConv directly.
void setUpOwnDirect(DirectInputGrad& st, const Geometry& g, const std::vector<int64_t>& pads,
                    int64_t m, int64_t groups) {
  if (pads.size() != 4 || (groups > 1 && groups == m && m / groups == 1)) return;
  exec::DirectConvShape& s = st.shape;
  s.c = m, s.ih = g.oh, s.iw = g.ow, s.kh = g.kh, s.kw = g.kw, s.dh = g.dh, s.dw = g.dw;
  s.pad_top = pads[0], s.pad_left = pads[1], s.pad_bottom = pads[2], s.pad_right = pads[3];
  s.oh = g.ih, s.ow = g.iw;
  st.own = true;
}

// The transposed-convolution pads, or false when the forward's geometry has no such form.
bool directInputGradPads(const Geometry& g, std::vector<int64_t>& pads, bool one_d) {
  if (g.sh != 1 || g.sw != 1) return false;
  const int64_t top = (g.kh - 1) * g.dh - g.pt, left = (g.kw - 1) * g.dw - g.pl;
  const int64_t bottom = g.ih + g.pt - g.oh, right = g.iw + g.pl - g.ow;
  if (top < 0 || left < 0 || bottom < 0 || right < 0) return false;
  pads = one_d ? std::vector<int64_t>{left, right} : std::vector<int64_t>{top, left, bottom, right};
  return true;
}

StatusOr<DirectInputGrad*> directInputGrad(const BackwardContext& c, const Geometry& g,
                                           int64_t groups) {
  const Shape &xs = c.input_shapes[0], &ws = c.input_shapes[1];
  auto* st = dynamic_cast<DirectInputGrad*>(c.state->get());
  if (st && st->x_shape == xs && st->w_shape == ws) return st;
  const bool one_d = xs.size() == 3;
  std::vector<int64_t> pads;
  if (!directInputGradPads(g, pads, one_d)) return static_cast<DirectInputGrad*>(nullptr);
  auto fresh = std::make_unique<DirectInputGrad>();
  fresh->x_shape = xs, fresh->w_shape = ws;
  Graph& graph = fresh->graph;
  Node* conv =
      graph.addNode("Conv", {graph.createUniqueValue("dy"), graph.createUniqueValue("w")}, {"dx"});
  conv->setAttribute(Attribute::makeInt("group", groups));
  conv->setAttribute(Attribute::makeInts("pads", pads));
  conv->setAttribute(Attribute::makeInts(
      "dilations", one_d ? std::vector<int64_t>{g.dw} : std::vector<int64_t>{g.dh, g.dw}));
  const exec::KernelFactory* factory = exec::KernelRegistry::builtin().find(*conv);
  if (!factory) return internalError("no Conv kernel");
  NNC_ASSIGN_OR_RETURN(fresh->kernel, (*factory)(exec::KernelBuildContext{*conv, 13}));
  Shape flipped_shape = ws;
  flipped_shape[0] = xs[1], flipped_shape[1] = ws[0] / groups;
  fresh->flipped = Tensor(DType::kFloat32, flipped_shape);
  setUpOwnDirect(*fresh, g, pads, ws[0], groups);
  *c.state = std::move(fresh);
  return static_cast<DirectInputGrad*>(c.state->get());
}

Status runDirectInputGrad(const BackwardContext& c, DirectInputGrad& st, const Geometry& g,
                          int64_t groups, const float* w, const Tensor& dy, Tensor& dx) {
  const Shape& ws = c.input_shapes[1];
  const int64_t m = ws[0], mg = m / groups, cg = ws[1], taps = g.kh * g.kw;
  float* f = fdata(st.flipped);
  for (int64_t gi = 0; gi < groups; ++gi)
    for (int64_t mm = 0; mm < mg; ++mm)
      for (int64_t cc = 0; cc < cg; ++cc) {
        const float* src = w + ((gi * mg + mm) * cg + cc) * taps;
        float* dst = f + ((gi * cg + cc) * mg + mm) * taps;
        for (int64_t t = 0; t < taps; ++t) dst[t] = src[taps - 1 - t];
      }
  if (st.own) {
    exec::PackedConvWeights packed =
        exec::packConvWeights(f, nullptr, st.flipped.dim(0), groups, mg * taps);
    packed.half_tail = true;
    exec::DirectConvShape s = st.shape;
    s.n = dy.dim(0);
    dx = c.ctx.newTensor(DType::kFloat32, c.input_shapes[0]);
    exec::directConv(fdata(dy), s, packed, exec::Epilogue{}, fdata(dx), c.ctx);
    return Status::ok();
  }
  const Tensor* in[] = {&dy, &st.flipped};
  Tensor out[1];
  NNC_RETURN_IF_ERROR(st.kernel->run(in, out, c.ctx));
  dx = std::move(out[0]);
  return Status::ok();
}

// dX of a strided Conv by phases (grad_conv_phases.h), set up once per shape.
struct PhasedState : BackwardState {
  Shape x_shape, w_shape;
  bool applies = false;
  PhasedInputGrad grad;
};

// The phased input gradient with this batch's weights packed, or nullptr when the geometry has
// no phase form (dilations, crops).
PhasedInputGrad* phasedInputGrad(const BackwardContext& c, const Geometry& g, int64_t groups,
                                 const float* w) {
  const Shape &xs = c.input_shapes[0], &ws = c.input_shapes[1];
  auto* st = dynamic_cast<PhasedState*>(c.state->get());
  if (!st || st->x_shape != xs || st->w_shape != ws) {
    auto fresh = std::make_unique<PhasedState>();
    fresh->x_shape = xs, fresh->w_shape = ws;
    fresh->applies = g.dh == 1 && g.dw == 1 &&
                     fresh->grad.setUp({g.ih, g.oh, g.kh, g.sh, g.pt},
                                       {g.iw, g.ow, g.kw, g.sw, g.pl}, xs[1], ws[0], groups);
    st = fresh.get();
    *c.state = std::move(fresh);
  }
  if (!st->applies) return nullptr;
  st->grad.pack(w);
  return &st->grad;
}

// dW and dB (and a folded BN's dgamma and dbeta) from the per-thread partials, in one pass over
// the output channels split among the threads. With a BN folded in, the partials are sums over
// the BN's output gradient g: dWraw = sum g x col, s = sum g. Then dW = a dWraw, dB = a s,
// dbeta = s, and since the BN's input is W col + B,
// dgamma = sum g (x - mean) / sqrt(var + eps) = (<W, dWraw> + (B - mean) s) / sqrt(var + eps):
// no division by gamma.
void finishConvGrads(const BackwardContext& c, const Partials& part, FoldedBatchNorm* bn,
                     const std::vector<double>& a, std::span<Tensor> grads) {
  const Shape& ws = c.input_shapes[1];
  const int64_t m = ws[0], per = shapeNumel(ws) / m;
  const bool want_dw = c.needs_grad[1], want_db = c.needs_grad.size() > 2 && c.needs_grad[2];
  const bool want_gamma = bn && bn->want_gamma, want_beta = bn && bn->want_beta;
  Tensor dw = want_dw ? c.ctx.newTensor(DType::kFloat32, ws) : Tensor();
  Tensor db = want_db ? c.ctx.newTensor(DType::kFloat32, {m}) : Tensor();
  if (want_gamma) bn->dgamma = Tensor(DType::kFloat32, {m});
  if (want_beta) bn->dbeta = Tensor(DType::kFloat32, {m});
  const float* w = fdata(*c.inputs[1]);
  const float* b = c.inputs.size() > 2 && c.inputs[2] ? fdata(*c.inputs[2]) : nullptr;
  float* dwd = want_dw ? fdata(dw) : nullptr;
  exec::parallelFor(m, c.ctx, per * 4, [&](int64_t oc) {
    const float s = part.bsize > 0 ? part.dbAt(oc) : 0.f;
    const double k = bn ? a[oc] : 1.0;
    double dot = want_gamma ? (double(b ? b[oc] : 0.f) - bn->mean[oc]) * s : 0.0;
    if (want_gamma || want_dw)
      for (int64_t j = oc * per; j < (oc + 1) * per; ++j) {
        const float raw = part.dwAt(j);
        if (want_gamma) dot += double(w[j]) * raw;
        if (dwd) dwd[j] = bn ? static_cast<float>(raw * k) : raw;
      }
    if (want_gamma)
      fdata(bn->dgamma)[oc] =
          static_cast<float>(dot / std::sqrt(double(bn->var[oc]) + double(bn->epsilon)));
    if (want_beta) fdata(bn->dbeta)[oc] = s;
    if (want_db) fdata(db)[oc] = bn ? static_cast<float>(s * k) : s;
  });
  if (want_dw) grads[1] = std::move(dw);
  if (want_db) grads[2] = reshaped(std::move(db), c.input_shapes[2]);
}

// Null when the geometry has no such form (strides; crops), or for depthwise (a channel a group:
// half of every pair would be zero).
std::unique_ptr<Bf16InputGrad> bf16InputGrad(const Geometry& g, int64_t m, int64_t groups,
                                             const float* w, bool one_d) {
  std::vector<int64_t> pads;
  const int64_t mg = m / groups, cg = g.c, taps = g.kh * g.kw;
  if (mg < 2 || !directInputGradPads(g, pads, one_d)) return nullptr;
  auto st = std::make_unique<Bf16InputGrad>();
  st->top = one_d ? 0 : pads[0], st->left = one_d ? pads[0] : pads[1];
  st->wx = g.iw + (g.kw - 1) * g.dw;
  st->y_plane = (g.ih * st->wx + 15) / 16 * 16;
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) st->taps.push_back(i * g.dh * st->wx + j * g.dw);
  st->x_plane = (st->y_plane + st->taps.back() + 15) / 16 * 16;
  st->pairs = (mg + 1) / 2;
  std::vector<uint16_t> half(static_cast<size_t>(m * cg * taps));
  exec::conv_grad_bf16::toBf16(w, m * cg * taps, half.data());
  st->w.assign(static_cast<size_t>(groups * st->pairs * taps * cg), 0);
  for (int64_t oc = 0; oc < m; ++oc)  // W'[c][oc][k] = W[oc][c][taps - 1 - k]
    for (int64_t c = 0; c < cg; ++c)
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t gi = oc / mg, q = oc % mg / 2, hi = oc % mg % 2;
        const uint32_t v = half[(oc * cg + c) * taps + taps - 1 - k];
        st->w[((gi * st->pairs + q) * taps + k) * cg + c] |= v << (16 * hi);
      }
  return st;
}

// dX in bf16 (`bf16` holds its set-up), a direct convolution of dY (stride 1), else by phases or
// im2col inside the sample loop.
StatusOr<DirectInputGrad*> setUpInputGrad(const BackwardContext& c, ConvGrad& cg, Tensor& dx,
                                          std::unique_ptr<Bf16InputGrad>& bf16) {
  if (!c.needs_grad[0]) return static_cast<DirectInputGrad*>(nullptr);
  if (cg.dw_bf16)
    bf16 =  // the one switch for dW and dX
        bf16InputGrad(cg.g, cg.m, cg.groups, cg.w, c.input_shapes[0].size() == 3);
  DirectInputGrad* direct = nullptr;
  if (!bf16) {
    NNC_ASSIGN_OR_RETURN(direct, directInputGrad(c, cg.g, cg.groups));
    if (direct) return direct;
  }
  cg.dx_bf16 = bf16.get();
  if (!bf16) cg.phased = phasedInputGrad(c, cg.g, cg.groups, cg.w);
  // phases and the bf16 crop add into the sum so far
  cg.add_dx = (cg.phased || bf16) && c.input0_grad_sum;
  if (!cg.add_dx) dx = c.ctx.newTensor(DType::kFloat32, c.input_shapes[0]);
  cg.dx = fdata(cg.add_dx ? *c.input0_grad_sum : dx);
  return direct;
}

// With a BN folded in (c.folded_bn), dY is the BN's output gradient (masked first by its Relu's
// output, c.relu_mask); dX, dW and dB are taken as for the Conv whose weights are W * a.
Status convBackward(const BackwardContext& c, std::span<Tensor> grads) {
  NNC_RETURN_IF_ERROR(checkConvShapes(c));
  if (!c.inputs[1]) return internalError("Conv weight not available");
  FoldedBatchNorm* bn = c.folded_bn;
  Tensor dy_own;  // dY masked in place by a folded BN's Relu
  if (c.relu_mask) dy_own = takeOutputGrad(c, 0);
  const Tensor& dy = c.relu_mask ? dy_own : *c.output_grads[0];
  if (c.relu_mask && c.relu_mask->numel() != dy.numel()) return internalError("Relu mask shape");
  const Shape &xs = c.input_shapes[0], &ws = c.input_shapes[1];
  const int64_t groups = c.node.intAttr("group", 1);
  ConvGrad cg{c, convGeometry(c.node, xs, ws, dy.shape())};
  cg.n = xs[0], cg.cin = xs[1], cg.m = ws[0], cg.groups = groups, cg.mg = cg.m / groups;
  cg.g.c = cg.cin / groups;
  cg.kk = cg.g.c * cg.g.kh * cg.g.kw, cg.p = cg.g.oh * cg.g.ow;
  cg.want_w = c.needs_grad[1] || (bn && bn->want_gamma);
  cg.want_b =
      (c.needs_grad.size() > 2 && c.needs_grad[2]) || (bn && (bn->want_gamma || bn->want_beta));
  if (cg.want_w && !c.inputs[0]) return internalError("Conv input not kept");
  cg.x = cg.want_w ? fdata(*c.inputs[0]) : nullptr;
  std::vector<double> scale;
  thread_local std::vector<float> scaled_w;
  cg.w = fdata(*c.inputs[1]);
  if (bn) {  // a = gamma / sqrt(var + eps) and W * a, as the forward folded them
    scale = batchNormAffine(bn->gamma, bn->beta, bn->mean, bn->var, cg.m, bn->epsilon).scale;
    scaled_w.resize(static_cast<size_t>(shapeNumel(ws)));
    scaleOutputChannels(scale, cg.w, cg.kk, scaled_w.data());
    cg.w = scaled_w.data();
  }
  cg.dy = fdata(dy);
  cg.dw_bf16 = c.bf16_conv_grads && exec::convGradBf16Supported();
  if (c.relu_mask) cg.dy_mut = fdata(dy_own), cg.mask = fdata(*c.relu_mask);
  cg.dx = nullptr;
  Tensor dx;
  std::unique_ptr<Bf16InputGrad> dx_bf16;
  NNC_ASSIGN_OR_RETURN(DirectInputGrad * direct, setUpInputGrad(c, cg, dx, dx_bf16));
  const int threads = static_cast<int>(std::min<int64_t>(c.ctx.num_threads, cg.n));
  Partials part(threads, cg.want_w ? shapeNumel(ws) : 0, cg.want_b ? cg.m : 0);
  perThreadSamples(cg.n, c.ctx, threads, [&](int t, int64_t s0, int64_t s1) {
    part.zero(t);
    cg.run(t, s0, s1, part);
  });
  if (direct) NNC_RETURN_IF_ERROR(runDirectInputGrad(c, *direct, cg.g, groups, cg.w, dy, dx));
  finishConvGrads(c, part, bn, scale, grads);
  if (c.needs_grad[0] && !cg.add_dx) grads[0] = std::move(dx);
  if (c.relu_mask && c.ctx.pool) c.ctx.pool->give(dy_own.releaseBytes());
  return Status::ok();
}

// Geometry of dY read as the image of an im2col whose columns are X's positions.
Geometry convTransposeGeometry(const Node& node, const Shape& x, const Shape& w, const Shape& y) {
  const bool one_d = x.size() == 3;
  const size_t rank = one_d ? 1 : 2, last = rank - 1;
  const ConvWindow window = ConvWindow::of(node);
  Geometry g;
  g.ih = one_d ? 1 : y[2], g.iw = y.back();  // the image is dY
  g.oh = one_d ? 1 : x[2], g.ow = x.back();  // the positions are X's
  g.kh = one_d ? 1 : w[2], g.kw = w.back();
  g.sh = one_d ? 1 : window.stride(0), g.sw = window.stride(last);
  g.dh = one_d ? 1 : window.dilation(0), g.dw = window.dilation(last);
  auto pad = [&](size_t a, int64_t in, int64_t k) {
    return convTransposeAxis(window, a, rank, in, k).pad_begin;
  };
  if (!one_d) g.pt = pad(0, g.oh, g.kh);
  g.pl = pad(last, g.ow, g.kw);
  return g;
}

Status convTransposeBackward(const BackwardContext& c, std::span<Tensor> grads) {
  NNC_RETURN_IF_ERROR(checkConvShapes(c));
  const Tensor& dy = *c.output_grads[0];
  const Shape &xs = c.input_shapes[0], &ws = c.input_shapes[1];
  const int64_t groups = c.node.intAttr("group", 1), n = xs[0], cin = xs[1], cg = cin / groups;
  const int64_t mg = ws[1], m = mg * groups;
  Geometry g = convTransposeGeometry(c.node, xs, ws, dy.shape());
  g.c = mg;
  const int64_t kk = g.rows(), pin = g.cols(), pout = g.ih * g.iw;
  const bool want_w = c.needs_grad[1], want_b = c.needs_grad.size() > 2 && c.needs_grad[2];
  if (want_w && !c.inputs[0]) return internalError("ConvTranspose input not kept");
  const float* x = want_w ? fdata(*c.inputs[0]) : nullptr;
  const float* w = fdata(*c.inputs[1]);
  const float* dyd = fdata(dy);
  Tensor dx;
  if (c.needs_grad[0]) dx = zeros(xs, &c.ctx);
  float* dxd = c.needs_grad[0] ? fdata(dx) : nullptr;
  const int threads = static_cast<int>(std::min<int64_t>(c.ctx.num_threads, n));
  Partials part(threads, want_w ? shapeNumel(ws) : 0, want_b ? m : 0);
  perThreadSamples(n, c.ctx, threads, [&](int t, int64_t s0, int64_t s1) {
    part.zero(t);
    std::vector<float> dcol(static_cast<size_t>(kk * pin)), tmp(static_cast<size_t>(cg * kk));
    for (int64_t s = s0; s < s1; ++s)
      for (int64_t gi = 0; gi < groups; ++gi) {
        const float* dys = dyd + (s * m + gi * mg) * pout;
        im2col(dys, g, dcol.data());
        if (dxd)
          gemm(cg, pin, kk, w + gi * cg * kk, false, dcol.data(), false,
               dxd + (s * cin + gi * cg) * pin);
        if (want_w) {
          gemm(cg, kk, pin, x + (s * cin + gi * cg) * pin, false, dcol.data(), true, tmp.data());
          float* acc = part.dw[t].data() + gi * cg * kk;
          for (int64_t i = 0; i < cg * kk; ++i) acc[i] += tmp[i];
        }
        if (want_b)
          for (int64_t j = 0; j < mg; ++j) {
            float sum = 0.f;
            for (int64_t q = 0; q < pout; ++q) sum += dys[j * pout + q];
            part.db[t][gi * mg + j] += sum;
          }
      }
  });
  if (want_w) grads[1] = Tensor(DType::kFloat32, ws);
  if (want_b) grads[2] = Tensor(DType::kFloat32, c.input_shapes[2]);
  part.sumInto(want_w ? &grads[1] : nullptr, want_b ? &grads[2] : nullptr);
  if (dxd) grads[0] = std::move(dx);
  return Status::ok();
}

}  // namespace

void registerConvBackward(BackwardRegistry& r) {
  r.add("Conv", {convBackward, /*keep_inputs=*/0b011, 0});  // W: an Identity output too
  r.add("ConvTranspose", {convTransposeBackward, 0b011, 0});
}

}  // namespace nnc::train
