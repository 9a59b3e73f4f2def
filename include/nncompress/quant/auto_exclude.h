#pragma once
// Automatic float fallback: the fewest quantized layers to keep in float so that the model's
// outputs stay within an SQNR target of the float model on calibration data.
//
//   1. Quantize every target (as quantizeModel will) and measure the output SQNR
//        SQNR = min over samples s and outputs o of 10 log10(sum y_so^2 / sum (y_so - y~_so)^2)
//      on the first `samples` calibration samples (per sample: one bad input is not averaged
//      away). Target met: nothing is excluded.
//   2. Otherwise measure each layer's harm alone: the output SQNR with only that layer quantized.
//   3. Greedy, most harmful (lowest solo SQNR) first: keep in float the shortest prefix of that
//      order for which the SQNR with every other layer quantized meets the target (found by
//      doubling, then bisection: O(log L) trials; every layer float always meets it).
//   4. That prefix can hold layers the target does not need once the most harmful are float
//      (harm does not add up exactly): each, least harmful first, is quantized again when the
//      output still meets the target without it (one trial per layer kept float).
// QDQ runs steps 3-4 twice, so that the file keeps as many quantized weights as it can:
//   a. with every layer's input float (int8 weights only), the whole layers kept float that the
//      weights' own error needs (usually none);
//   b. with those float, the layers kept with a float input but quantized weights (the
//      classifier's form): activation error is what sensitive models suffer from.
// The reference outputs are computed once and held for `samples` samples (bounded memory).

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nncompress/data/dataset.h"
#include "nncompress/ir/graph.h"
#include "nncompress/quant/calibration.h"
#include "nncompress/quant/quantize.h"

namespace nnc::quant {

struct AutoExcludeOptions {
  double min_sqnr_db = 30.0;
  int64_t samples = 64;  // calibration samples the SQNR is measured on
  int64_t batch = 32;
  int threads = 0;
  // Trials are measured on the model as it is written: compactModel with this float16 storage
  // (the CLI's default; --fp32-storage turns it off).
  bool float16_storage = true;
};

struct ExcludedLayer {
  std::string name;
  std::string op;
  double solo_sqnr_db = 0;  // output SQNR when only this layer is quantized
  std::string reason;
  bool weights_quantized =
      false;  // only its input is kept float (QuantizeOptions::float_activations)
};

struct AutoExcludeResult {
  double sqnr_all_db = 0;    // every target quantized
  double sqnr_final_db = 0;  // after the exclusions
  bool target_met = false;
  std::vector<ExcludedLayer> excluded;  // in the order they were kept in float
};

// `float_model` is the model quantizeModel would rewrite (BatchNorms folded); it is not changed.
// `ranges` must cover every activation the targets of `options` read.
StatusOr<AutoExcludeResult> chooseFloatLayers(const Model& float_model,
                                              const QuantizeOptions& options,
                                              const std::map<std::string, Range>& ranges,
                                              data::SampleReader& reader,
                                              const AutoExcludeOptions& auto_options);

// Step 4 on its own: `trial` gives the output SQNR with exactly the named layers kept float.
// Drops from `kept` (most harmful first) every layer the target does not need, last first, and
// sets `sqnr_db` to the SQNR of what is left.
using FloatSetTrial = std::function<StatusOr<double>(const std::vector<std::string>&)>;
Status quantizeUnneededFloatLayers(std::vector<ExcludedLayer>& kept, double& sqnr_db,
                                   const FloatSetTrial& trial, double min_sqnr_db);

}  // namespace nnc::quant
