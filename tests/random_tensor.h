#pragma once
// Seeded uniform random float tensors for the tests.

#include <random>

#include "nncompress/ir/tensor.h"

namespace nnc::testing {

// Draws from `rng`, so several tensors can come from one stream.
inline Tensor randomTensor(Shape shape, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  Tensor t(DType::kFloat32, std::move(shape));
  for (float& x : t.mutableData<float>()) x = d(rng);
  return t;
}

inline Tensor randomTensor(Shape shape, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  return randomTensor(std::move(shape), rng, lo, hi);
}

}  // namespace nnc::testing
