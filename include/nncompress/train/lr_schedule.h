#pragma once
// Learning-rate schedule for fine-tuning: linear warm-up, then cosine decay to a floor.
//   step s of S total, warm-up W steps, peak lr0, floor f * lr0:
//   s <  W: lr0 * (s + 1) / W
//   s >= W: f lr0 + (1 - f) lr0 * (1 + cos(pi * (s - W) / max(1, S - W))) / 2

#include <cstdint>

namespace nnc::train {

struct CosineSchedule {
  double peak_lr = 1e-3;
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;
  double final_fraction = 0.0;
  double at(int64_t step) const;
};

}  // namespace nnc::train
