#include "nncompress/quant/calibration.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "nncompress/exec/executor.h"

namespace nnc::quant {

StatusOr<CalibMethod> parseCalibMethod(const std::string& name) {
  if (name == "minmax") return CalibMethod::kMinMax;
  if (name == "percentile") return CalibMethod::kPercentile;
  if (name == "entropy") return CalibMethod::kEntropy;
  if (name == "mse") return CalibMethod::kMse;
  return invalidArgument("unknown calibration method '" + name +
                         "' (expected minmax, percentile, entropy or mse)");
}

const char* calibMethodName(CalibMethod method) {
  switch (method) {
    case CalibMethod::kMinMax:
      return "minmax";
    case CalibMethod::kPercentile:
      return "percentile";
    case CalibMethod::kEntropy:
      return "entropy";
    case CalibMethod::kMse:
      return "mse";
  }
  return "?";
}

QParams chooseQParams(Range range, bool symmetric, int bits) {
  QParams q;
  if (symmetric) {
    q.qmax = (1 << (bits - 1)) - 1;
    q.qmin = -q.qmax;
    const double amax = std::max(std::abs(double(range.lo)), std::abs(double(range.hi)));
    q.scale = amax > 0 ? float(amax / q.qmax) : 1.f;
    q.zero_point = 0;
    return q;
  }
  q.qmin = 0;
  q.qmax = (1 << bits) - 1;
  const double lo = std::min(0.0, double(range.lo)), hi = std::max(0.0, double(range.hi));
  if (hi - lo <= 0) {
    q.scale = 1.f;
    q.zero_point = 0;
    return q;
  }
  q.scale = float((hi - lo) / q.qmax);
  q.zero_point = std::clamp(int32_t(std::nearbyint(-lo / q.scale)), q.qmin, q.qmax);
  return q;
}

float fakeQuantize(float x, const QParams& q) {
  const float r = std::nearbyint(x / q.scale) + float(q.zero_point);
  return (std::clamp(r, float(q.qmin), float(q.qmax)) - float(q.zero_point)) * q.scale;
}

void TensorHistogram::add(std::span<const float> values) {
  if (values.empty()) return;
  // NaN and +-inf (an overflowing layer, a corrupt sample) say nothing about the range: counted
  // apart so the caller can report them, never part of min, max or the bins.
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  int64_t finite = 0;
  for (float v : values) {
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    ++finite;
  }
  non_finite_ += int64_t(values.size()) - finite;
  if (finite == 0) return;
  if (count_ == 0) {
    min_ = lo;
    max_ = hi;
    bins_.assign(kHistogramBins, 0.0);
    half_range_ = std::max<double>({std::abs(lo), std::abs(hi), 1e-12});
  } else {
    min_ = std::min(min_, lo);
    max_ = std::max(max_, hi);
  }
  const double amax = std::max(std::abs(double(lo)), std::abs(double(hi)));
  while (amax > half_range_) {  // double the range: pairs of bins merge into the middle half
    std::vector<double> merged(kHistogramBins, 0.0);
    for (int j = 0; j < kHistogramBins / 2; ++j)
      merged[kHistogramBins / 4 + j] = bins_[2 * j] + bins_[2 * j + 1];
    bins_ = std::move(merged);
    half_range_ *= 2;
  }
  const double to_bin = kHistogramBins / (2 * half_range_);
  for (float v : values) {
    if (!std::isfinite(v)) continue;
    if (v == 0.f) {  // kept apart: exact in every quantizer, and a ReLU spike that would
      ++zeros_;      // dominate the entropy search
      continue;
    }
    const int b = std::clamp(int((v + half_range_) * to_bin), 0, kHistogramBins - 1);
    bins_[b] += 1;
  }
  count_ += finite;
}

Range TensorHistogram::clipTo(double threshold) const {
  return {float(std::max(double(min_), -threshold)), float(std::min(double(max_), threshold))};
}

std::vector<double> TensorHistogram::binsWithZeros() const {
  std::vector<double> all = bins_;
  all[kHistogramBins / 2] += double(zeros_);
  return all;
}

Range TensorHistogram::percentileRange(double percentile) const {
  const std::vector<double> bins = binsWithZeros();
  double total = 0;
  for (double b : bins) total += b;
  const double width = 2 * half_range_ / kHistogramBins;
  const double tail = total * (100.0 - percentile) / 100.0;
  double cum = 0;
  int lo_bin = 0;
  for (; lo_bin < kHistogramBins; ++lo_bin) {
    cum += bins[lo_bin];
    if (cum > tail) break;
  }
  cum = 0;
  int hi_bin = kHistogramBins - 1;
  for (; hi_bin >= 0; --hi_bin) {
    cum += bins[hi_bin];
    if (cum > tail) break;
  }
  const double lo = -half_range_ + lo_bin * width, hi = -half_range_ + (hi_bin + 1) * width;
  return {float(std::max(double(min_), lo)), float(std::min(double(max_), hi))};
}

namespace {

// TensorRT's search: the number of leading bins i (>= levels) whose clipped distribution P (the
// tail beyond bin i added to bin i - 1) is best approximated, in KL divergence, by its
// quantization Q to `levels` levels (each level's mass spread over its non-empty bins).
int bestKlBins(const std::vector<double>& hist, int levels) {
  const int n = static_cast<int>(hist.size());
  if (n <= levels) return n;
  double best_kl = std::numeric_limits<double>::infinity();
  int best_i = n;
  std::vector<double> p, q;
  double outliers = 0;
  for (int k = levels; k < n; ++k) outliers += hist[k];
  for (int i = levels; i <= n; ++i) {
    if (i > levels) outliers -= hist[i - 1];
    p.assign(hist.begin(), hist.begin() + i);
    p[i - 1] += outliers;
    q.assign(i, 0.0);
    for (int j = 0; j < levels; ++j) {
      const int start = int(int64_t(j) * i / levels), end = int(int64_t(j + 1) * i / levels);
      double sum = 0;
      int nonzero = 0;
      for (int k = start; k < end; ++k) {
        sum += hist[k];
        nonzero += hist[k] != 0;
      }
      if (nonzero == 0) continue;
      for (int k = start; k < end; ++k)
        if (hist[k] != 0) q[k] = sum / nonzero;
    }
    double p_sum = 0, q_sum = 0;
    for (int k = 0; k < i; ++k) p_sum += p[k], q_sum += q[k];
    if (p_sum <= 0 || q_sum <= 0) continue;
    double kl = 0;
    for (int k = 0; k < i; ++k) {
      if (p[k] <= 0) continue;
      const double pk = p[k] / p_sum, qk = std::max(q[k] / q_sum, 1e-12);
      kl += pk * std::log(pk / qk);
    }
    if (kl < best_kl) best_kl = kl, best_i = i;
  }
  return best_i;
}

}  // namespace

Range TensorHistogram::entropyRange(bool symmetric, int bits) const {
  const int n = kHistogramBins / 2;
  const double width = half_range_ / n;
  if (symmetric) {  // |x|, 2^(bits-1) levels
    std::vector<double> abs_bins(n);
    for (int k = 0; k < n; ++k) abs_bins[k] = bins_[n + k] + bins_[n - 1 - k];
    return clipTo((bestKlBins(abs_bins, 1 << (bits - 1)) + 0.5) * width);
  }
  // Asymmetric: the range starts at min; search its upper end with 2^bits levels.
  const int first = std::clamp(int((min_ + half_range_) / width), 0, kHistogramBins - 1);
  std::vector<double> tail(bins_.begin() + first, bins_.end());
  const int i = bestKlBins(tail, 1 << bits);
  const double hi = -half_range_ + (first + i + 0.5) * width;
  return {min_, float(std::min(double(max_), hi))};
}

double TensorHistogram::mseThreshold(bool symmetric, int bits) const {
  const std::vector<double> bins = binsWithZeros();
  const int n = kHistogramBins / 2;
  const double width = half_range_ / n;
  const double amax = std::max(std::abs(double(min_)), std::abs(double(max_)));
  double best_err = std::numeric_limits<double>::infinity(), best_t = amax;
  std::vector<double> candidates;
  for (int step = 1; step <= 200; ++step) candidates.push_back(amax * step / 200.0);
  for (double t = amax; t > 4 * width; t *= 0.95) candidates.push_back(t);
  for (const double t : candidates) {
    const QParams qp = chooseQParams(clipTo(t), symmetric, bits);
    double err = 0;
    for (int b = 0; b < kHistogramBins; ++b) {
      if (bins[b] == 0) continue;
      const double c = -half_range_ + (b + 0.5) * width;
      const double d = c - fakeQuantize(float(c), qp);
      err += bins[b] * d * d;
    }
    if (err < best_err) best_err = err, best_t = t;
  }
  return best_t;
}

Range TensorHistogram::range(CalibMethod method, bool symmetric, int bits,
                             double percentile) const {
  if (count_ == 0) return {};
  switch (method) {
    case CalibMethod::kMinMax:
      return {min_, max_};
    case CalibMethod::kPercentile:
      return percentileRange(percentile);
    case CalibMethod::kEntropy:
      return entropyRange(symmetric, bits);
    case CalibMethod::kMse:
      return clipTo(mseThreshold(symmetric, bits));
  }
  return {min_, max_};
}

StatusOr<std::map<std::string, TensorHistogram>> collectHistograms(
    const Model& model, data::SampleReader& reader, const std::vector<std::string>& value_names,
    const CalibrationOptions& options) {
  std::map<std::string, TensorHistogram> histograms;
  for (const std::string& name : value_names) {
    const Value* v = model.graph->findValue(name);
    if (v == nullptr) return invalidArgument("calibration: no value named '" + name + "'");
    histograms[name];
  }
  exec::ExecutorOptions eo;
  eo.num_threads = options.threads;
  NNC_ASSIGN_OR_RETURN(auto executor, exec::Executor::create(model, eo));
  const int64_t total =
      std::min(options.calib_size < 0 ? reader.size() : options.calib_size, reader.size());
  if (total <= 0) return invalidArgument("calibration data holds no samples");
  auto observer = [&](const Value& value, const Tensor& tensor) {
    auto it = histograms.find(value.name());
    if (it == histograms.end() || tensor.dtype() != DType::kFloat32) return;
    it->second.add(tensor.data<float>());
  };
  for (int64_t start = 0; start < total; start += options.batch) {
    const int64_t count = std::min(options.batch, total - start);
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> feeds, reader.readFeeds(start, count));
    // The model inputs are no node's output: the observer does not see them.
    for (size_t i = 0; i < feeds.size() && i < executor->inputs().size(); ++i)
      observer(*executor->inputs()[i], feeds[i]);
    NNC_ASSIGN_OR_RETURN(auto outputs, executor->run(std::move(feeds), observer));
    (void)outputs;
  }
  for (const auto& [name, h] : histograms) {
    if (h.count() == 0 && h.nonFinite() > 0)
      return invalidModel("calibration: every value of tensor '" + name + "' was NaN or inf (" +
                          std::to_string(h.nonFinite()) + " values)");
    if (h.count() == 0) return internalError("calibration never saw tensor '" + name + "'");
  }
  return histograms;
}

}  // namespace nnc::quant
