#pragma once
// Activation-range equalisation into depthwise convolutions, run on the float model after
// BatchNorm folding and before calibration.
//
// A Conv followed (optionally through a Relu or PRelu) by a depthwise Conv as the only reader:
//   z = DwConv(f(Conv(x)))     f = Relu, PRelu or nothing, DwConv: one input channel per group
// The tensor between them is quantized with one scale for all channels, so a channel whose
// calibrated range r_i is far below the tensor's r_max keeps only a few int8 levels, and the
// depthwise layer (often with a large folded BatchNorm gain) amplifies that error. Channel i of
// the first Conv is multiplied by m_i = min(r_max / r_i, max_multiplier) and the depthwise
// weights of channel i divided by it:
//   W1'[i] = m_i W1[i],  b1'[i] = m_i b1[i],  W2'[i] = W2[i] / m_i
// f(m y) = m f(y) for m > 0 (PRelu's slope stays with its channel), so the float model computes the
// same function; with per-output-channel weight scales neither layer's weight grid changes (each
// scale moves with its channel), while every channel of the tensor between them spans the whole
// int8 grid. Channels that never fire (r_i = 0) are left alone.

#include "nncompress/data/dataset.h"
#include "nncompress/ir/graph.h"

namespace nnc::quant {

struct ActEqualizeOptions {
  int64_t samples = 64;  // calibration samples for the channel ranges
  int64_t batch = 32;
  int threads = 0;
  double max_multiplier = 1000;  // bound on m_i: keeps near-dead channels near dead
};

struct ActEqualizeStats {
  int pairs = 0;                  // Conv -> [Relu] -> depthwise Conv pairs rescaled
  double largest_multiplier = 1;  // max m_i applied
};

StatusOr<ActEqualizeStats> equalizeActivationRanges(Model& model, data::SampleReader& reader,
                                                    const ActEqualizeOptions& options = {});

}  // namespace nnc::quant
