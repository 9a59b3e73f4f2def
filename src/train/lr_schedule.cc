#include "nncompress/train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace nnc::train {

double CosineSchedule::at(int64_t step) const {
  if (step < warmup_steps) return peak_lr * double(step + 1) / double(warmup_steps);
  const double span = double(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = std::clamp(double(step - warmup_steps) / span, 0.0, 1.0);
  const double floor = final_fraction * peak_lr;
  return floor + (peak_lr - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace nnc::train
