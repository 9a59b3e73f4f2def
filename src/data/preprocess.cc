#include "nncompress/data/preprocess.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include "pipeline.h"

namespace nnc::data {
namespace {

std::string quoted(std::string_view text) {
  std::string out = "'";
  out.append(text);
  out += '\'';
  return out;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  return text;
}

std::optional<float> parseFloat(std::string_view text) {
  text = trim(text);
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  float value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  if (!std::isfinite(value)) return std::nullopt;
  return value;
}

std::optional<int> parseDim(std::string_view text) {
  text = trim(text);
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  if (value <= 0 || value > (1 << 16)) return std::nullopt;
  return value;
}

// "HxW" -> {H, W}; nullopt for anything else.
std::optional<std::pair<int, int>> parseHxW(std::string_view text) {
  const size_t x = text.find_first_of("xX");
  if (x == std::string_view::npos) return std::nullopt;
  const auto h = parseDim(text.substr(0, x));
  const auto w = parseDim(text.substr(x + 1));
  if (!h || !w) return std::nullopt;
  return std::make_pair(*h, *w);
}

StatusOr<std::vector<float>> parseFloatList(std::string_view name, std::string_view text,
                                            bool nonzero) {
  std::vector<float> values;
  size_t begin = 0;
  while (true) {
    const size_t comma = text.find(',', begin);
    const std::string_view item = text.substr(
        begin, comma == std::string_view::npos ? std::string_view::npos : comma - begin);
    const auto value = parseFloat(item);
    if (!value) {
      return invalidArgument("--" + std::string(name) + " " + quoted(text) + ": " +
                             quoted(trim(item)) + " is not a finite number");
    }
    if (nonzero && *value == 0.f)
      return invalidArgument("--" + std::string(name) + " " + quoted(text) + ": must not be 0");
    values.push_back(*value);
    if (comma == std::string_view::npos) break;
    begin = comma + 1;
  }
  return values;
}

}  // namespace

const char* channelsName(Preprocess::Channels channels) {
  switch (channels) {
    case Preprocess::Channels::kAsIs:
      return "as-is";
    case Preprocess::Channels::kRgb:
      return "rgb";
    case Preprocess::Channels::kBgr:
      return "bgr";
    case Preprocess::Channels::kGrey:
      return "grey";
  }
  return "?";
}

Status setPreprocessOption(Preprocess& preprocess, std::string_view name, std::string_view value) {
  const std::string flag = "--" + std::string(name) + " " + quoted(value);
  if (name == "scale") {
    // A number or a fraction such as 1/255.
    const size_t slash = value.find('/');
    std::optional<float> scale;
    if (slash == std::string_view::npos) {
      scale = parseFloat(value);
    } else {
      const auto num = parseFloat(value.substr(0, slash));
      const auto den = parseFloat(value.substr(slash + 1));
      if (num && den && *den != 0.f) scale = *num / *den;
    }
    if (!scale) return invalidArgument(flag + ": expected a number such as 0.5 or 1/255");
    preprocess.scale = *scale;
    return Status::ok();
  }
  if (name == "mean") {
    NNC_ASSIGN_OR_RETURN(preprocess.mean, parseFloatList(name, value, /*nonzero=*/false));
    return Status::ok();
  }
  if (name == "std") {
    NNC_ASSIGN_OR_RETURN(preprocess.std, parseFloatList(name, value, /*nonzero=*/true));
    return Status::ok();
  }
  if (name == "size") {
    if (const auto hw = parseHxW(value)) {
      preprocess.size = *hw;
      preprocess.shorter_side.reset();
      return Status::ok();
    }
    if (const auto n = parseDim(value)) {
      preprocess.shorter_side = *n;
      preprocess.size.reset();
      return Status::ok();
    }
    return invalidArgument(flag + ": expected HxW (resize to exactly H x W) or N (resize the " +
                           "shorter side to N), with positive integers");
  }
  if (name == "center-crop") {
    if (const auto hw = parseHxW(value)) {
      preprocess.center_crop = *hw;
      return Status::ok();
    }
    if (const auto n = parseDim(value)) {
      preprocess.center_crop = std::make_pair(*n, *n);
      return Status::ok();
    }
    return invalidArgument(flag + ": expected HxW or N (N x N), with positive integers");
  }
  if (name == "channels") {
    std::string lower(trim(value));
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower == "rgb") {
      preprocess.channels = Preprocess::Channels::kRgb;
    } else if (lower == "bgr") {
      preprocess.channels = Preprocess::Channels::kBgr;
    } else if (lower == "grey" || lower == "gray") {
      preprocess.channels = Preprocess::Channels::kGrey;
    } else {
      return invalidArgument(flag + ": expected rgb, bgr or grey");
    }
    return Status::ok();
  }
  return invalidArgument("unknown preprocessing option --" + std::string(name) +
                         " (expected scale, mean, std, size, center-crop or channels)");
}

namespace internal {
namespace {

std::string hwText(int64_t h, int64_t w) { return std::to_string(h) + "x" + std::to_string(w); }

// Bilinear resize of each channel plane, half-pixel centres and edge clamping (PyTorch
// interpolate(mode="bilinear", align_corners=False, antialias=False), OpenCV INTER_LINEAR):
//   src = (dst + 0.5) * in / out - 0.5, clamped to >= 0; neighbours clamped to the last pixel.
void resizeBilinear(const std::vector<float>& in, int64_t c, int64_t ih, int64_t iw, int64_t oh,
                    int64_t ow, std::vector<float>& out) {
  out.assign(static_cast<size_t>(c * oh * ow), 0.f);
  struct Tap {
    int64_t i0, i1;
    float frac;
  };
  auto taps = [](int64_t in_size, int64_t out_size) {
    std::vector<Tap> t(static_cast<size_t>(out_size));
    const double ratio = static_cast<double>(in_size) / static_cast<double>(out_size);
    for (int64_t o = 0; o < out_size; ++o) {
      const double src = std::max(0.0, (static_cast<double>(o) + 0.5) * ratio - 0.5);
      const int64_t i0 = std::min(static_cast<int64_t>(src), in_size - 1);
      t[o] = {i0, std::min(i0 + 1, in_size - 1), static_cast<float>(src - static_cast<double>(i0))};
    }
    return t;
  };
  const std::vector<Tap> ys = taps(ih, oh);
  const std::vector<Tap> xs = taps(iw, ow);
  for (int64_t ch = 0; ch < c; ++ch) {
    const float* plane = in.data() + ch * ih * iw;
    float* dst = out.data() + ch * oh * ow;
    for (int64_t y = 0; y < oh; ++y) {
      const float* r0 = plane + ys[y].i0 * iw;
      const float* r1 = plane + ys[y].i1 * iw;
      const float fy = ys[y].frac;
      for (int64_t x = 0; x < ow; ++x) {
        const Tap& t = xs[x];
        const float top = r0[t.i0] + (r0[t.i1] - r0[t.i0]) * t.frac;
        const float bottom = r1[t.i0] + (r1[t.i1] - r1[t.i0]) * t.frac;
        dst[y * ow + x] = top + (bottom - top) * fy;
      }
    }
  }
}

// Size after the resize step (torchvision Resize(N) rounding for the shorter-side form).
std::pair<int64_t, int64_t> resizedHW(const Plan& plan, int64_t h, int64_t w) {
  if (plan.size) return {plan.size->first, plan.size->second};
  if (plan.shorter_side) {
    const int64_t n = *plan.shorter_side;
    if (h <= w) return {n, std::max<int64_t>(1, n * w / h)};
    return {std::max<int64_t>(1, n * h / w), n};
  }
  return {h, w};
}

int64_t outputChannels(const Plan& plan, int64_t c) {
  if (plan.channels == 0) return c;
  return plan.channels;
}

}  // namespace

StatusOr<Plan> makePlan(const Preprocess& preprocess, bool eight_bit) {
  Plan plan;
  plan.scale = preprocess.scale.value_or(eight_bit ? 1.f / 255.f : 1.f);
  if (!std::isfinite(plan.scale)) return invalidArgument("--scale must be a finite number");
  switch (preprocess.channels) {
    case Preprocess::Channels::kAsIs:
      break;
    case Preprocess::Channels::kGrey:
      plan.channels = 1;
      break;
    case Preprocess::Channels::kRgb:
      plan.channels = 3;
      break;
    case Preprocess::Channels::kBgr:
      plan.channels = 3;
      plan.bgr = true;
      break;
  }
  for (float s : preprocess.std) {
    if (s == 0.f || !std::isfinite(s)) return invalidArgument("--std values must be non-zero");
  }
  plan.size = preprocess.size;
  plan.shorter_side = preprocess.shorter_side;
  if (plan.size && plan.shorter_side)
    return invalidArgument("--size: give either HxW or N (shorter side), not both");
  plan.crop = preprocess.center_crop;
  plan.mean = preprocess.mean;
  plan.std = preprocess.std;
  return plan;
}

StatusOr<Shape> planOutputShape(const Plan& plan, const Shape& raw, const std::string& source) {
  Shape out = raw;
  if (plan.needsImageLayout()) {
    if (raw.size() != 3) {
      return invalidArgument(source + ": --channels, --size and --center-crop need samples " +
                             "shaped [C,H,W], but its samples are " + shapeToString(raw));
    }
    const int64_t c = raw[0];
    if (plan.channels != 0 && (c < 1 || c > 4)) {
      return invalidArgument(source + ": --channels needs 1 to 4 channels (grey, grey+alpha, " +
                             "rgb, rgba), but its samples have " + std::to_string(c));
    }
    if (raw[1] <= 0 || raw[2] <= 0) return invalidArgument(source + ": empty image");
    const auto [h, w] = resizedHW(plan, raw[1], raw[2]);
    out = {outputChannels(plan, c), h, w};
    if (plan.crop) {
      if (plan.crop->first > h || plan.crop->second > w) {
        return invalidArgument(source + ": --center-crop " +
                               hwText(plan.crop->first, plan.crop->second) +
                               " is larger than the image (" + hwText(h, w) +
                               (plan.size || plan.shorter_side ? " after resize)" : ")"));
      }
      out[1] = plan.crop->first;
      out[2] = plan.crop->second;
    }
  }
  const int64_t channels = out.empty() ? 1 : out[0];
  for (const auto* values : {&plan.mean, &plan.std}) {
    const size_t n = values->size();
    if (n > 1 && static_cast<int64_t>(n) != channels) {
      return invalidArgument(source + ": --" + (values == &plan.mean ? "mean" : "std") + " has " +
                             std::to_string(n) + " values but samples " + shapeToString(out) +
                             " have " + std::to_string(channels) +
                             " channels (give one value, or one per channel)");
    }
  }
  return out;
}

void applyPlan(const Plan& plan, const Shape& raw, std::vector<float>& sample, float* out) {
  const float scale = plan.scale;
  auto normalise = [&](const std::vector<float>& src, int64_t channels, int64_t plane_size,
                       int64_t top, int64_t left, int64_t src_w, int64_t h, int64_t w) {
    for (int64_t c = 0; c < channels; ++c) {
      const float mean = plan.mean.empty() ? 0.f : plan.mean[plan.mean.size() == 1 ? 0 : c];
      const float inv_std = plan.std.empty() ? 1.f : 1.f / plan.std[plan.std.size() == 1 ? 0 : c];
      for (int64_t y = 0; y < h; ++y) {
        const float* row = src.data() + c * plane_size + (top + y) * src_w + left;
        float* dst = out + (c * h + y) * w;
        for (int64_t x = 0; x < w; ++x) dst[x] = (row[x] - mean) * inv_std;
      }
    }
  };

  if (!plan.needsImageLayout()) {
    // Any rank: scale, then normalise per index of axis 0.
    const int64_t n = static_cast<int64_t>(sample.size());
    const int64_t channels = raw.empty() ? 1 : raw[0];
    const int64_t per_channel = channels == 0 ? 0 : n / channels;
    for (float& v : sample) v *= scale;
    normalise(sample, channels, per_channel, 0, 0, per_channel, 1, per_channel);
    return;
  }

  int64_t c = raw[0], h = raw[1], w = raw[2];
  for (float& v : sample) v *= scale;

  if (plan.channels != 0) {
    const int64_t plane = h * w;
    std::vector<float> converted(static_cast<size_t>(plan.channels * plane));
    const float* src = sample.data();
    if (plan.channels == 1) {
      if (c >= 3) {  // ITU-R BT.601 luma, as PIL's convert("L")
        for (int64_t i = 0; i < plane; ++i)
          converted[i] = 0.299f * src[i] + 0.587f * src[plane + i] + 0.114f * src[2 * plane + i];
      } else {
        std::copy(src, src + plane, converted.begin());
      }
    } else {
      for (int64_t k = 0; k < 3; ++k) {
        const float* from = src + (c >= 3 ? k : 0) * plane;
        const int64_t to = plan.bgr ? 2 - k : k;
        std::copy(from, from + plane, converted.begin() + to * plane);
      }
    }
    sample.swap(converted);
    c = plan.channels;
  }

  const auto [rh, rw] = resizedHW(plan, h, w);
  if (rh != h || rw != w) {
    std::vector<float> resized;
    resizeBilinear(sample, c, h, w, rh, rw, resized);
    sample.swap(resized);
    h = rh;
    w = rw;
  }

  int64_t top = 0, left = 0, oh = h, ow = w;
  if (plan.crop) {
    oh = plan.crop->first;
    ow = plan.crop->second;
    // torchvision CenterCrop: offsets round((size - crop) / 2), Python rounding (half to even).
    top = static_cast<int64_t>(std::nearbyint(static_cast<double>(h - oh) / 2.0));
    left = static_cast<int64_t>(std::nearbyint(static_cast<double>(w - ow) / 2.0));
  }
  normalise(sample, c, h * w, top, left, w, oh, ow);
}

}  // namespace internal
}  // namespace nnc::data
