#pragma once
// Element-wise comparisons of float32 tensors for the tests.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "nncompress/ir/tensor.h"

namespace nnc::testing {

inline float maxAbs(const Tensor& t) {
  float m = 0;
  for (float v : t.data<float>()) m = std::max(m, std::abs(v));
  return m;
}

// The largest |a - b| over the elements (the shapes must match).
inline float maxAbsDiff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  float m = 0;
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i)
    m = std::max(m, std::abs(a.data<float>()[i] - b.data<float>()[i]));
  return m;
}

}  // namespace nnc::testing
