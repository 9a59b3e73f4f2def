#pragma once
// Preprocess: how raw samples become the float32 tensors a model sees. One set of options for
// every data format (CLI flags --scale --mean --std --size --center-crop --channels).
//
// Per sample, in this order:
//   x = raw * scale                    (scale: 1/255 for 8-bit data, 1 otherwise)
//   x = convert channels               (grey <-> rgb, rgb -> bgr; alpha is dropped)
//   x = bilinear resize                (--size HxW exactly, or --size N: shorter side to N)
//   x = center crop                    (--center-crop HxW)
//   x = (x - mean[c]) / std[c]         (one value, or one per output channel)
// Channel, resize and crop steps need samples shaped [C, H, W] (images are NCHW).

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nncompress/ir/status.h"

namespace nnc::data {

struct Preprocess {
  enum class Channels { kAsIs, kRgb, kBgr, kGrey };

  std::optional<float> scale;               // default: 1/255 for uint8 data and images, 1 otherwise
  std::vector<float> mean;                  // empty (0), one value, or one per output channel
  std::vector<float> std;                   // empty (1), one value, or one per output channel
  std::optional<std::pair<int, int>> size;  // resize to exactly H x W
  std::optional<int> shorter_side;          // or: resize so min(H, W) == N, keep aspect
  std::optional<std::pair<int, int>> center_crop;  // H x W, after any resize
  Channels channels = Channels::kAsIs;
};

// Sets one option from its SPEC text, so every command spells values the same way:
//   "scale" "0.00392" | "mean" "0.485,0.456,0.406" | "std" "0.3530" | "size" "224x224" or "256"
//   "center-crop" "224x224" or "224" | "channels" "rgb" | "bgr" | "grey" (or "gray")
// `name` is the flag name without dashes. kInvalidArgument names the flag and the bad value.
Status setPreprocessOption(Preprocess& preprocess, std::string_view name, std::string_view value);

const char* channelsName(Preprocess::Channels channels);

}  // namespace nnc::data
