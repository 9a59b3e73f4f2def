#pragma once
// Internal to train: the input gradient of a strided Conv (dilation 1) as stride-1 direct
// convolutions of dY, one per phase. Output row y = r + sh*a of phase r only meets the taps
// i = i0 + sh*u with i0 = (r + pad_top) mod sh, at dY row a + e - u (e = (r + pad_top - i0) / sh),
// so the rows of phase r are a stride-1 convolution of dY with the flipped sub-kernel
// W[.., i0 + sh*(U-1-u')] (U taps), padded by U-1-e above. Columns likewise; a phase without taps
// (1x1 kernel, stride 2) contributes zeros. Every multiply-add of the im2col/GEMM form is done
// once, by the executor's direct kernel, with no column matrix and no scatter-add.

#include <vector>

#include "direct_conv.h"

namespace nnc::train {

// Along one axis of the forward: input length, output length, kernel, stride, leading pad.
struct ConvAxisGeometry {
  int64_t in = 1, out = 1, k = 1, stride = 1, pad = 0;
};

// One phase r along one axis: input positions r, r + stride, ... (`count` of them).
struct AxisPhase {
  int64_t first = 0;                // r: the first input position of the phase
  int64_t first_tap = 0, taps = 0;  // forward taps first_tap + stride*u, u < taps
  int64_t pad_lo = 0, pad_hi = 0;   // zero padding of dY for the stride-1 convolution
  int64_t count = 0;                // outputs of the stride-1 convolution
};

// The phases of one axis, or false when one would need dY cropped (a negative pad).
bool axisPhases(const ConvAxisGeometry& g, std::vector<AxisPhase>& phases);

class PhasedInputGrad {
 public:
  // False when the geometry has no phase form (then nothing is set up).
  bool setUp(const ConvAxisGeometry& h, const ConvAxisGeometry& w, int64_t cin, int64_t m,
             int64_t groups);
  // Packs the flipped sub-kernels of the weights [m, cin/groups, kh, kw] (every batch: they train).
  void pack(const float* w);
  // dX of one sample [cin, ih, iw] from its dY [m, oh, ow], one thread; scratch is reused. Every
  // phase is computed into scratch, then each row of dX is written once, its phases interleaved
  // (zeros for phases without taps). With `add`, dX is added into dx instead.
  void sample(const float* dy, float* dx, std::vector<float>& scratch, bool add = false) const;

 private:
  struct Phase {
    AxisPhase h, w;
    exec::PackedConvWeights packed;
  };
  ConvAxisGeometry h_, w_;
  int64_t cin_ = 0, m_ = 0, groups_ = 1;
  template <bool Add>
  void interleave(const float* scratch, float* dx) const;

  std::vector<Phase> phases_;    // with taps on both axes
  std::vector<int64_t> offset_;  // of each phase's output in scratch
  // Where row y of dX channel 0 finds column phase rw's values in scratch, and the step to the
  // next channel (the zero row and step 0 for phases without taps): [y * w stride + rw]. Set up
  // once, so interleaving does no division per row.
  struct RowSource {
    int64_t start = 0, channel_step = 0;
  };
  std::vector<RowSource> row_source_;
  int64_t scratch_size_ = 0;
};

}  // namespace nnc::train
