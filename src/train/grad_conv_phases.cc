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
  if (h.pad < 0 || w.pad < 0 || w.stride > 8 || !axisPhases(h, rows) || !axisPhases(w, cols))
    return false;
  h_ = h, w_ = w, cin_ = cin, m_ = m, groups_ = groups;
  phases_.clear();
  offset_.clear();
  // [row phase * w stride + column phase]: the phase's index, or -1 (no taps: zeros)
  std::vector<int> phase_at(static_cast<size_t>(h.stride * w.stride), -1);
  scratch_size_ = 0;
  for (const AxisPhase& r : rows)
    for (const AxisPhase& c : cols) {
      if (r.count == 0 || c.count == 0 || r.taps == 0 || c.taps == 0) continue;
      phase_at[r.first * w.stride + c.first] = static_cast<int>(phases_.size());
      phases_.push_back(Phase{r, c, {}});
      offset_.push_back(scratch_size_);
      scratch_size_ += cin * r.count * c.count;
    }
  row_source_.assign(static_cast<size_t>(h.in * w.stride), RowSource{scratch_size_, 0});
  for (int64_t y = 0; y < h.in; ++y)
    for (int64_t rw = 0; rw < w.stride; ++rw) {
      const int i = phase_at[(y % h.stride) * w.stride + rw];
      if (i < 0) continue;
      const Phase& p = phases_[i];
      row_source_[y * w.stride + rw] = {offset_[i] + (y / h.stride) * p.w.count,
                                        p.h.count * p.w.count};
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

void PhasedInputGrad::sample(const float* dy, float* dx, std::vector<float>& scratch,
                             bool add) const {
  exec::RunContext serial;
  serial.num_threads = 1;
  // One zero row past the phases: what phases without taps read.
  scratch.resize(static_cast<size_t>(scratch_size_ + w_.in));
  std::fill(scratch.begin() + scratch_size_, scratch.end(), 0.f);
  for (size_t i = 0; i < phases_.size(); ++i) {
    const Phase& p = phases_[i];
    exec::DirectConvShape s;
    s.n = 1, s.c = m_, s.ih = h_.out, s.iw = w_.out;
    s.kh = p.h.taps, s.kw = p.w.taps;
    s.pad_top = p.h.pad_lo, s.pad_bottom = p.h.pad_hi;
    s.pad_left = p.w.pad_lo, s.pad_right = p.w.pad_hi;
    s.oh = p.h.count, s.ow = p.w.count;
    exec::directConv(dy, s, p.packed, exec::Epilogue{}, scratch.data() + offset_[i], serial);
  }
  if (add)
    interleave<true>(scratch.data(), dx);
  else
    interleave<false>(scratch.data(), dx);
}

// dX row y, column x is phase (y % sh, x % sw)'s output (y / sh, x / sw): written row by row in
// order (two column phases: pairs of stores the compiler vectorises).
template <bool Add>
void PhasedInputGrad::interleave(const float* scratch, float* dx) const {
  const int64_t sw = w_.stride;
  const float* src[8];
  for (int64_t c = 0; c < cin_; ++c)
    for (int64_t y = 0; y < h_.in; ++y) {
      const RowSource* row = &row_source_[y * sw];
      for (int64_t rw = 0; rw < sw; ++rw)
        src[rw] = scratch + row[rw].start + c * row[rw].channel_step;
      float* dst = dx + (c * h_.in + y) * w_.in;
      if (sw == 2) {
        const float *s0 = src[0], *s1 = src[1];
        const int64_t pairs = w_.in / 2;
        if (Add) {
          for (int64_t b = 0; b < pairs; ++b) dst[2 * b] += s0[b], dst[2 * b + 1] += s1[b];
          if (w_.in % 2) dst[w_.in - 1] += s0[pairs];
        } else {
          for (int64_t b = 0; b < pairs; ++b) dst[2 * b] = s0[b], dst[2 * b + 1] = s1[b];
          if (w_.in % 2) dst[w_.in - 1] = s0[pairs];
        }
      } else {  // setUp: sw <= 8
        for (int64_t x = 0; x < w_.in; ++x) dst[x] = (Add ? dst[x] : 0.f) + src[x % sw][x / sw];
      }
    }
}

}  // namespace nnc::train
