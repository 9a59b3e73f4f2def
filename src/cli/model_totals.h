#pragma once
// The `before` / `after` objects of prune, quantize and compress (params, MACs, file bytes).

#include <nlohmann/json.hpp>

#include "nncompress/analysis/model_stats.h"

namespace nnc::cli {

struct Totals {
  int64_t params = 0, macs = 0, file_bytes = 0;
  nlohmann::ordered_json json() const {
    return {{"params", params}, {"macs", macs}, {"file_bytes", file_bytes}};
  }
};

inline Totals totalsOf(const Model& m, int64_t file_bytes) {
  const ModelStats s = computeModelStats(*m.graph);
  return {s.params, s.macs, file_bytes};
}

}  // namespace nnc::cli
