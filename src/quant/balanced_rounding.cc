#include "nncompress/quant/balanced_rounding.h"

#include <algorithm>
#include <cmath>

namespace nnc::quant {
namespace {

// Moves `count` of the group's roundings one step in `direction` (-1: down, +1: up), choosing
// those rounded the other way by the most (their error is nearest half a step, so moving them
// adds the least squared error) and staying inside [-qmax, qmax].
void flipRoundings(const std::vector<int64_t>& members, const std::vector<double>& ratio,
                   int direction, int64_t count, int qmax, std::vector<int>& q) {
  std::vector<std::pair<double, int64_t>> candidates;  // (error against the direction, index)
  for (int64_t i : members) {
    const double err = double(q[i]) - ratio[i];  // > 0: rounded up
    const bool movable = direction < 0 ? err > 0 && q[i] > -qmax : err < 0 && q[i] < qmax;
    if (movable) candidates.push_back({std::abs(err), i});
  }
  count = std::min<int64_t>(count, int64_t(candidates.size()));
  std::partial_sort(candidates.begin(), candidates.begin() + count, candidates.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  for (int64_t j = 0; j < count; ++j) q[candidates[j].second] += direction;
}

}  // namespace

std::vector<int> roundWeights(std::span<const float> w, std::span<const float> scale,
                              const std::function<int64_t(int64_t)>& group_of, int qmax,
                              bool balanced) {
  const int64_t n = int64_t(w.size());
  std::vector<int> q(n);
  std::vector<double> ratio(n);
  std::vector<double> error_sum(scale.size(), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = group_of(i);
    ratio[i] = double(w[i]) / double(scale[g]);
    q[i] = int(std::clamp<double>(std::nearbyint(ratio[i]), -qmax, qmax));
    error_sum[g] += double(q[i]) - ratio[i];
  }
  if (!balanced) return q;
  std::vector<std::vector<int64_t>> members(scale.size());
  bool any = false;
  for (double e : error_sum) any = any || std::abs(e) > 0.5;
  if (!any) return q;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = group_of(i);
    if (std::abs(error_sum[g]) > 0.5) members[g].push_back(i);
  }
  for (size_t g = 0; g < scale.size(); ++g) {
    const int64_t flips = std::llround(std::abs(error_sum[g]));
    if (flips > 0) flipRoundings(members[g], ratio, error_sum[g] > 0 ? -1 : 1, flips, qmax, q);
  }
  return q;
}

}  // namespace nnc::quant
