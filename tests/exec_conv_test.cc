// The direct convolution (src/exec/kernels/direct_conv.h) of every instruction set this CPU has,
// and the depthwise one, against a plain double-precision loop, on random shapes: groups, strides,
// asymmetric pads, dilations, batch > 1, bias or none, each activation; output pre-filled with NaN.
// Each case also with a half-width last block of channels (ConvDirectArgs::half_tail).

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "../src/exec/kernels/direct_conv.h"

namespace nnc::exec {
namespace {

struct Case {
  int64_t n, c, ih, iw, m, groups, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
  bool bias;
  Epilogue::Act act;
};

double activate(double v, const Epilogue& e) {
  switch (e.act) {
    case Epilogue::kNone:
      return v;
    case Epilogue::kRelu:
      return v > 0 ? v : 0;
    case Epilogue::kClip:
      return std::min<double>(std::max<double>(v, e.lo), e.hi);
    case Epilogue::kLeakyRelu:
      return v < 0 ? v * e.alpha : v;
  }
  return v;
}

// Depthwise when groups == c (then m is a multiple of c and sh == sw): directDepthwiseConv, else
// directConv (packed for a half-width last block when half_tail).
void checkCase(const Case& t, GemmIsa isa, std::mt19937& rng, bool half_tail) {
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  const int64_t cg = t.c / t.groups, mg = t.m / t.groups, k = cg * t.kh * t.kw;
  DirectConvShape s;
  s.n = t.n, s.c = t.c, s.ih = t.ih, s.iw = t.iw, s.kh = t.kh, s.kw = t.kw;
  s.sh = t.sh, s.sw = t.sw, s.dh = t.dh, s.dw = t.dw;
  s.pad_top = t.pt, s.pad_left = t.pl, s.pad_bottom = t.pb, s.pad_right = t.pr;
  s.oh = (t.ih + t.pt + t.pb - ((t.kh - 1) * t.dh + 1)) / t.sh + 1;
  s.ow = (t.iw + t.pl + t.pr - ((t.kw - 1) * t.dw + 1)) / t.sw + 1;
  std::vector<float> x(t.n * t.c * t.ih * t.iw), w(t.m * k), b(t.m);
  for (float& v : x) v = dist(rng);
  for (float& v : w) v = dist(rng);
  for (float& v : b) v = dist(rng);
  Epilogue e;
  e.act = t.act;
  e.lo = -0.5f, e.hi = 0.75f, e.alpha = 0.1f;
  std::vector<float> y(t.n * t.m * s.oh * s.ow, std::numeric_limits<float>::quiet_NaN());
  RunContext ctx;
  if (t.groups == t.c) {
    directDepthwiseConv(isa, x.data(), s, w.data(), t.bias ? b.data() : nullptr, t.m, e, y.data(),
                        ctx);
  } else {
    PackedConvWeights packed =
        packConvWeightsForIsa(isa, w.data(), t.bias ? b.data() : nullptr, t.m, t.groups, k);
    packed.half_tail = half_tail;
    directConv(x.data(), s, packed, e, y.data(), ctx);
  }
  for (int64_t sn = 0; sn < t.n; ++sn)
    for (int64_t oc = 0; oc < t.m; ++oc)
      for (int64_t oy = 0; oy < s.oh; ++oy)
        for (int64_t ox = 0; ox < s.ow; ++ox) {
          const int64_t g = oc / mg;
          double acc = t.bias ? b[oc] : 0.0;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t i = 0; i < t.kh; ++i)
              for (int64_t j = 0; j < t.kw; ++j) {
                const int64_t sy = oy * t.sh - t.pt + i * t.dh, sx = ox * t.sw - t.pl + j * t.dw;
                if (sy < 0 || sy >= t.ih || sx < 0 || sx >= t.iw) continue;
                acc += double(x[((sn * t.c + g * cg + ci) * t.ih + sy) * t.iw + sx]) *
                       w[((oc * cg + ci) * t.kh + i) * t.kw + j];
              }
          const double want = activate(acc, e);
          const float got = y[((sn * t.m + oc) * s.oh + oy) * s.ow + ox];
          ASSERT_NEAR(got, want, 1e-4 * (1 + std::abs(want)))
              << gemmIsaName(isa) << (half_tail ? " half tail" : "") << " at sample " << sn
              << " channel " << oc << " (" << oy << ", " << ox << ")";
        }
}

TEST(DirectConvTest, EveryIsaMatchesReference) {
  const std::vector<Case> fixed = {
      // n  c  ih  iw  m  g kh kw sh sw dh dw pt pl pb pr bias act
      {1, 1, 28, 28, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true, Epilogue::kRelu},
      {2, 16, 14, 14, 32, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true, Epilogue::kNone},
      {3, 32, 7, 7, 64, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, Epilogue::kClip},
      {2, 24, 7, 7, 40, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, true, Epilogue::kLeakyRelu},  // 1x1
      {2, 6, 9, 11, 9, 3, 3, 2, 2, 3, 1, 1, 2, 0, 1, 3, false, Epilogue::kRelu},       // groups
      {1, 4, 12, 10, 5, 1, 3, 3, 1, 1, 2, 3, 2, 3, 2, 3, true, Epilogue::kNone},       // dilation
      {2, 3, 1, 40, 17, 1, 1, 5, 1, 2, 1, 1, 0, 2, 0, 1, true, Epilogue::kRelu},       // 1-D
      {1, 2, 30, 31, 3, 1, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, true, Epilogue::kRelu},       // stem
      {2, 16, 14, 14, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true, Epilogue::kClip},    // depthwise
      {2, 64, 14, 14, 64, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, true, Epilogue::kRelu},
      {3, 5, 19, 37, 10, 5, 3, 5, 3, 3, 2, 1, 2, 0, 1, 2, false, Epilogue::kLeakyRelu},
      {1, 7, 5, 3, 21, 7, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0, true, Epilogue::kNone},
  };
  std::mt19937 rng(11);
  std::vector<Case> cases = fixed;
  std::uniform_int_distribution<int> pick(0, 1 << 20);
  for (int r = 0; r < 40; ++r) {
    Case t{};
    t.groups = 1 + pick(rng) % 3;
    t.n = 1 + pick(rng) % 3;
    t.c = t.groups * (1 + pick(rng) % 5);
    if (r % 4 == 3) t.groups = t.c;  // depthwise
    t.m = t.groups * (1 + pick(rng) % 20);
    t.kh = 1 + pick(rng) % 4, t.kw = 1 + pick(rng) % 4;
    t.sh = 1 + pick(rng) % 3, t.sw = 1 + pick(rng) % 3;
    if (t.groups == t.c) t.sw = t.sh;  // the depthwise kernel's precondition
    t.dh = 1 + pick(rng) % 2, t.dw = 1 + pick(rng) % 2;
    t.pt = pick(rng) % 3, t.pl = pick(rng) % 3, t.pb = pick(rng) % 3, t.pr = pick(rng) % 3;
    t.ih = (t.kh - 1) * t.dh + 1 + pick(rng) % 20;
    t.iw = (t.kw - 1) * t.dw + 1 + pick(rng) % 40;
    t.bias = pick(rng) % 2;
    t.act = static_cast<Epilogue::Act>(pick(rng) % 4);
    cases.push_back(t);
  }
  for (GemmIsa isa : {GemmIsa::kBaseline, GemmIsa::kAvx2, GemmIsa::kAvx512}) {
    if (!gemmIsaSupported(isa)) continue;
    for (size_t i = 0; i < cases.size(); ++i) {
      SCOPED_TRACE("case " + std::to_string(i));
      for (bool half_tail : {false, true}) {
        checkCase(cases[i], isa, rng, half_tail);
        if (HasFatalFailure()) return;
      }
    }
  }
}

}  // namespace
}  // namespace nnc::exec
