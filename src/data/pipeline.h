#pragma once
// The per-sample preprocessing pipeline (see preprocess.h for the order of the steps), with the
// Preprocess defaults resolved for one dataset.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nncompress/data/preprocess.h"
#include "nncompress/ir/status.h"
#include "nncompress/ir/tensor.h"

namespace nnc::data::internal {

struct Plan {
  float scale = 1.f;
  int channels = 0;  // 0: keep; 1: grey; 3: rgb (or bgr)
  bool bgr = false;
  std::optional<std::pair<int, int>> size;
  std::optional<int> shorter_side;
  std::optional<std::pair<int, int>> crop;
  std::vector<float> mean;  // empty, one value, or one per channel
  std::vector<float> std;

  // True when a step needs samples shaped [C, H, W].
  bool needsImageLayout() const { return channels != 0 || size || shorter_side || crop; }
};

// `eight_bit`: the raw data is uint8 (images, uint8 arrays), so the default scale is 1/255.
StatusOr<Plan> makePlan(const Preprocess& preprocess, bool eight_bit);

// Shape of a preprocessed sample whose raw shape is `raw`; kInvalidArgument naming `source` when
// the options do not fit the data (rank, channel count, crop larger than the image, ...).
StatusOr<Shape> planOutputShape(const Plan& plan, const Shape& raw, const std::string& source);

// Preprocesses one sample: `sample` holds its raw values as float (shape `raw`, already checked
// with planOutputShape) and is clobbered; `out` receives numel(planOutputShape(raw)) floats.
void applyPlan(const Plan& plan, const Shape& raw, std::vector<float>& sample, float* out);

}  // namespace nnc::data::internal
