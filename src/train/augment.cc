#include "nncompress/train/augment.h"

#include <algorithm>
#include <random>
#include <vector>

namespace nnc::train {
namespace {

struct Draw {
  int dy = 0, dx = 0;
  bool flip = false;
};

Draw drawFor(const AugmentOptions& o, uint64_t seed, uint64_t key) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)};
  std::mt19937 rng(seq);
  Draw d;
  if (o.max_shift > 0) {
    std::uniform_int_distribution<int> shift(-o.max_shift, o.max_shift);
    d.dy = shift(rng);
    d.dx = shift(rng);
  }
  if (o.flip) d.flip = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  return d;
}

// out(y, x) = in(clamp(y - dy), clamp(x' - dx)) with x' = W - 1 - x when flipped.
void transformPlane(float* plane, int64_t h, int64_t w, const Draw& d, std::vector<float>& tmp) {
  tmp.assign(plane, plane + h * w);
  for (int64_t y = 0; y < h; ++y) {
    const int64_t sy = std::clamp<int64_t>(y - d.dy, 0, h - 1);
    for (int64_t x = 0; x < w; ++x) {
      const int64_t fx = d.flip ? w - 1 - x : x;
      const int64_t sx = std::clamp<int64_t>(fx - d.dx, 0, w - 1);
      plane[y * w + x] = tmp[sy * w + sx];
    }
  }
}

}  // namespace

void augmentImages(Tensor& batch, const AugmentOptions& options, uint64_t seed,
                   std::span<const uint64_t> sample_keys) {
  if (!options.active() || batch.rank() != 4 || batch.dtype() != DType::kFloat32) return;
  const int64_t n = batch.dim(0), c = batch.dim(1), h = batch.dim(2), w = batch.dim(3);
  auto data = batch.mutableData<float>();
  std::vector<float> tmp;
  for (int64_t i = 0; i < n && i < static_cast<int64_t>(sample_keys.size()); ++i) {
    const Draw d = drawFor(options, seed, sample_keys[i]);
    if (d.dy == 0 && d.dx == 0 && !d.flip) continue;
    for (int64_t ch = 0; ch < c; ++ch)
      transformPlane(data.data() + (i * c + ch) * h * w, h, w, d, tmp);
  }
}

}  // namespace nnc::train
