#include "grad_conv_phases.h"

#include <algorithm>

namespace nnc::train {

bool axisPhases(const ConvAxisGeometry& g, std::vector<AxisPhase>& phases) {
  phases.clear();
  for (int64_t r = 0; r < g.stride; ++r) {
    AxisPhase p;
    p.first = r;
    p.first_tap = (r + g.pad) % g.stride;
    p.taps = p.first_tap < g.k ? (g.k - p.first_tap + g.stride - 1) / g.stride : 0;
    p.count = r < g.in ? (g.in - r + g.stride - 1) / g.stride : 0;
    const int64_t e = (r + g.pad - p.first_tap) / g.stride;  // dY row of tap u = 0 at a = 0
    p.pad_lo = p.taps - 1 - e;
    p.pad_hi = std::max<int64_t>(0, p.count + e - g.out);
    if (p.taps > 0 && p.count > 0 && p.pad_lo < 0) return false;
    phases.push_back(p);
  }
  return true;
}

bool PhasedInputGrad::setUp(const ConvAxisGeometry& h, const ConvAxisGeometry& w, int64_t cin,
                            int64_t m, int64_t groups) {
  std::vector<AxisPhase> rows, cols;
  if (h.pad < 0 || w.pad < 0 || !axisPhases(h, rows) || !axisPhases(w, cols)) return false;
  h_ = h, w_ = w, cin_ = cin, m_ = m, groups_ = groups;
  phases_.clear();
  gaps_ = false;
  for (const AxisPhase& r : rows)
    for (const AxisPhase& c : cols) {
      if (r.count == 0 || c.count == 0) continue;
      if (r.taps == 0 || c.taps == 0) {
        gaps_ = true;
        continue;
      }
      phases_.push_back(Phase{r, c, {}});
    }
  return true;
}

void PhasedInputGrad::pack(const float* w) {
  const int64_t mg = m_ / groups_, cg = cin_ / groups_;
  std::vector<float> flipped;
  for (Phase& p : phases_) {
    const int64_t u_n = p.h.taps, v_n = p.w.taps, k = mg * u_n * v_n;
    flipped.resize(static_cast<size_t>(cin_ * k));
    for (int64_t g = 0; g < groups_; ++g)
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t mm = 0; mm < mg; ++mm) {
          const float* src = w + ((g * mg + mm) * cg + c) * h_.k * w_.k;
          float* dst = flipped.data() + (g * cg + c) * k + mm * u_n * v_n;
          for (int64_t u = 0; u < u_n; ++u)
            for (int64_t v = 0; v < v_n; ++v) {
              const int64_t i = p.h.first_tap + h_.stride * (u_n - 1 - u);
              const int64_t j = p.w.first_tap + w_.stride * (v_n - 1 - v);
              dst[u * v_n + v] = src[i * w_.k + j];
            }
        }
    p.packed = exec::packConvWeights(flipped.data(), nullptr, cin_, groups_, k);
    p.packed.half_tail = true;  // exec::ConvDirectArgs::half_tail
  }
}

void PhasedInputGrad::sample(const float* dy, float* dx, std::vector<float>& scratch) const {
  if (gaps_) std::fill(dx, dx + cin_ * h_.in * w_.in, 0.f);
  exec::RunContext serial;
  serial.num_threads = 1;
  for (const Phase& p : phases_) {
    exec::DirectConvShape s;
    s.n = 1, s.c = m_, s.ih = h_.out, s.iw = w_.out;
    s.kh = p.h.taps, s.kw = p.w.taps;
    s.pad_top = p.h.pad_lo, s.pad_bottom = p.h.pad_hi;
    s.pad_left = p.w.pad_lo, s.pad_right = p.w.pad_hi;
    s.oh = p.h.count, s.ow = p.w.count;
    const int64_t plane = s.oh * s.ow;
    scratch.resize(static_cast<size_t>(cin_ * plane));
    exec::directConv(dy, s, p.packed, exec::Epilogue{}, scratch.data(), serial);
    // Interleave: phase position (a, b) is input position (first + stride*a, first + stride*b).
    for (int64_t c = 0; c < cin_; ++c)
      for (int64_t a = 0; a < s.oh; ++a) {
        const float* src = scratch.data() + c * plane + a * s.ow;
        float* dst = dx + (c * h_.in + p.h.first + h_.stride * a) * w_.in + p.w.first;
        for (int64_t b = 0; b < s.ow; ++b) dst[b * w_.stride] = src[b];
      }
  }
}

}  // namespace nnc::train
