#pragma once
// Activation calibration: streaming statistics of chosen tensors over calibration batches, and
// the clipping range each method picks from them.
//
// Every observed tensor gets one fixed-size histogram (kHistogramBins bins, symmetric around 0)
// plus its exact min and max. When a value falls outside the histogram's range the range doubles
// and neighbouring bins merge, so one pass suffices and memory does not grow with the number of
// calibration images. Methods (given the histogram):
//   minmax      [min, max]
//   percentile  the p-th and (100-p)-th percentiles (default p = 99.99)
//   entropy     (exact zeros left out: they are exact after quantization) the |x| threshold T
//   minimising KL(P || Q) between the clipped reference
//               distribution P and its quantized version Q (TensorRT's calibrator; symmetric:
//               |x| with 128 levels; asymmetric: the range starts at min and only its upper
//               end is searched, with 256 levels)
//   mse         the threshold minimising the expected squared quantization error of the
//               histogram (rounding plus clipping), searched over a grid of thresholds
// A threshold T clips to [max(min, -T), min(max, T)].

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "nncompress/data/dataset.h"
#include "nncompress/ir/graph.h"

namespace nnc::quant {

enum class CalibMethod { kMinMax, kPercentile, kEntropy, kMse };
StatusOr<CalibMethod> parseCalibMethod(const std::string& name);
const char* calibMethodName(CalibMethod method);

struct Range {
  float lo = 0, hi = 0;
};

// Scale and zero point of an affine quantizer q = clamp(round(x / scale) + zero_point, qmin, qmax).
struct QParams {
  float scale = 1;
  int32_t zero_point = 0;
  int32_t qmin = 0, qmax = 255;
};
// Asymmetric: unsigned [0, 2^bits - 1], the range widened to include 0 (so 0 is exact).
// Symmetric: signed [-(2^(bits-1) - 1), 2^(bits-1) - 1], zero point 0.
QParams chooseQParams(Range range, bool symmetric, int bits);
float fakeQuantize(float x, const QParams& q);

class TensorHistogram {
 public:
  static constexpr int kHistogramBins = 4096;
  void add(std::span<const float> values);
  int64_t count() const { return count_; }           // finite values seen
  int64_t nonFinite() const { return non_finite_; }  // NaN and +-inf values skipped
  float min() const { return min_; }
  float max() const { return max_; }
  double halfRange() const { return half_range_; }
  // Counts of non-zero values per bin; exact zeros are counted apart.
  const std::vector<double>& bins() const { return bins_; }
  int64_t zeros() const { return zeros_; }
  // The clipping range this method picks.
  Range range(CalibMethod method, bool symmetric, int bits, double percentile = 99.99) const;

 private:
  Range percentileRange(double percentile) const;
  Range entropyRange(bool symmetric, int bits) const;
  double mseThreshold(bool symmetric, int bits) const;
  Range clipTo(double threshold) const;
  std::vector<double> binsWithZeros() const;

  std::vector<double> bins_;
  double half_range_ = 0;  // bins cover [-half_range_, half_range_]
  float min_ = 0, max_ = 0;
  int64_t count_ = 0;
  int64_t zeros_ = 0;  // exact zeros, not in bins_
  int64_t non_finite_ = 0;
};

struct CalibrationOptions {
  int64_t calib_size = 512;  // samples (the first N of the reader)
  int64_t batch = 32;
  int threads = 0;
};

// Runs `model` over the calibration samples and returns a histogram for every named value
// (graph inputs included). Fails if a name is not a float value of the model.
StatusOr<std::map<std::string, TensorHistogram>> collectHistograms(
    const Model& model, data::SampleReader& reader, const std::vector<std::string>& value_names,
    const CalibrationOptions& options);

}  // namespace nnc::quant
