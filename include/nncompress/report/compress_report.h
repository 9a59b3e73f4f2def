#pragma once
// HTML report of a compress run (`compress --report out.html`): before/after totals, the
// accuracy-vs-size trajectory of every candidate measured, channels per layer before and after,
// per-layer quantization sensitivity, and the step table.

#include <string>

#include "nncompress/pipeline/compress.h"

namespace nnc {

struct CompressReportInput {
  std::string model_path;
  int64_t original_bytes = 0;
  const Model* original = nullptr;
  const Model* output = nullptr;  // nullptr when no model met the precision demand
  const CompressResult* result = nullptr;
  std::string quality_name = "accuracy";
};

std::string compressReportHtml(const CompressReportInput& input);

// Output channels of every Conv/ConvTranspose/Gemm/MatMul layer of `before` and, by layer name,
// of `after` (0 when the layer is gone); for prune and compress reports.
struct LayerChannels {
  std::string layer;
  int64_t before = 0, after = 0;
};
std::vector<LayerChannels> layerChannels(const Model& before, const Model& after);

}  // namespace nnc
