#pragma once
// Label-free input augmentation for distillation: the teacher and the student see the same
// altered image, so the teacher's output stays the target whatever the alteration; it only
// widens the input distribution the student learns to imitate on (Beyer et al. 2022, "Knowledge
// distillation: a good teacher is patient and consistent").
//
//   per sample (an [N, C, H, W] batch): shift by (dy, dx) drawn uniformly from [-s, s]^2, the
//   uncovered border filled by replicating the nearest edge pixel (the background of most image
//   data, whatever the normalisation); then, with flip, mirror left-right with probability 1/2.
//
// Draws come from (seed, key of the sample) alone, so a run is reproducible and a resumed run
// augments as the uninterrupted one would.

#include <cstdint>
#include <span>

#include "nncompress/ir/tensor.h"

namespace nnc::train {

struct AugmentOptions {
  int max_shift = 0;  // pixels, each axis; 0: none
  bool flip = false;  // horizontal, probability 1/2
  bool active() const { return max_shift > 0 || flip; }
};

// Augments `batch` in place (float32, rank 4; other ranks are left alone). `sample_keys` holds
// one key per sample (e.g. its position in the epoch's order) that, with `seed`, fixes its draw.
void augmentImages(Tensor& batch, const AugmentOptions& options, uint64_t seed,
                   std::span<const uint64_t> sample_keys);

}  // namespace nnc::train
