#include "nncompress/prune/feature_stats.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "nncompress/exec/executor.h"
#include "nncompress/ir/conv_geometry.h"

namespace nnc {

double TensorStats::autocorrAt(int64_t c, int64_t dy, int64_t dx) const {
  if (std::abs(dy) > radius_h || std::abs(dx) > radius_w) return 0.0;
  const int64_t wh = 2 * radius_h + 1, ww = 2 * radius_w + 1;
  return autocorr[(c * wh + dy + radius_h) * ww + dx + radius_w];
}

std::optional<GroupFeatureSource> groupFeatureSource(const ChannelGroup& group) {
  auto oneToOne = [&](const GroupMember& m) {
    return m.role == MemberRole::kActivation && m.mapping.span() == 1 && m.axis == 1 &&
           m.mapping.table.empty();
  };
  const GroupMember* chosen = nullptr;
  // The input of the first consumer layer, when it carries the channels one-to-one.
  for (const GroupMember& c : group.members) {
    if (c.role != MemberRole::kConsumer || !c.node) continue;
    for (const GroupMember& a : group.members)
      if (oneToOne(a) && a.value == c.node->input(0)) {
        chosen = &a;
        break;
      }
    if (chosen) break;
  }
  // Otherwise the last one-to-one activation (e.g. the map before a Flatten).
  if (!chosen)
    for (const GroupMember& a : group.members)
      if (oneToOne(a)) chosen = &a;
  if (!chosen) return std::nullopt;
  GroupFeatureSource s;
  s.value = chosen->value;
  for (int64_t c = 0; c < group.channels; ++c) s.channel.push_back(chosen->mapping.indices({c})[0]);
  return s;
}

std::vector<TensorStatsRequest> statsRequestsFor(const ChannelAnalysis& analysis,
                                                 const StatsNeeds& needs) {
  std::map<const Value*, TensorStatsRequest> merged;
  auto add = [&](const Value* v, int64_t rh, int64_t rw, bool cosine) {
    TensorStatsRequest& r = merged[v];
    r.value = v;
    r.radius_h = std::max(r.radius_h, rh);
    r.radius_w = std::max(r.radius_w, rw);
    r.cosine = r.cosine || cosine;
  };
  for (const ChannelGroup& g : analysis.groups) {
    if (!g.prunable) continue;
    if (auto src = groupFeatureSource(g)) add(src->value, 0, 0, needs.cosine);
    if (!needs.consumers) continue;
    for (const GroupMember& m : g.members) {
      if (m.role != MemberRole::kConsumer || !m.node || !m.node->input(0)) continue;
      int64_t rh = 0, rw = 0;
      const Tensor* w = m.value->constantData();
      if (m.node->isOp("Conv") && w && w->rank() == 4) {
        const ConvWindow window = ConvWindow::of(*m.node);
        rh = (w->dim(2) - 1) * window.dilation(0);
        rw = (w->dim(3) - 1) * window.dilation(1);
      }
      add(m.node->input(0), rh, rw, false);
    }
  }
  std::vector<TensorStatsRequest> out;
  for (auto& [v, r] : merged) out.push_back(r);
  return out;
}

namespace {

// Adds to ac[(dy + rh) * (2 rw + 1) + dx + rw] the sum over y, x of f[y, x] * f[y + dy, x + dx]
// (pairs inside the h x w map), for |dy| <= rh, |dx| <= rw; `sq` is the (0, 0) term. Each sum runs
// over y, then x, ascending; the offsets of one dy are accumulated side by side (independent
// chains instead of one latency-bound chain per offset), which keeps every sum's order.
template <int kRw>
void addRowOffsets(const float* row, const float* other, int64_t w, double* acc) {
  double local[2 * kRw + 1];  // the running sums, in registers
  for (int i = 0; i <= 2 * kRw; ++i) local[i] = acc[i];
  for (int64_t x = 0; x < w; ++x) {
    const double a = row[x];
    for (int dx = -kRw; dx <= kRw; ++dx) {
      const int64_t xs = x + dx;
      if (xs >= 0 && xs < w) local[dx + kRw] += a * other[xs];
    }
  }
  for (int i = 0; i <= 2 * kRw; ++i) acc[i] = local[i];
}

void addRowOffsetsAnyRadius(const float* row, const float* other, int64_t w, int64_t rw,
                            double* acc) {
  for (int64_t x = 0; x < w; ++x)
    for (int64_t dx = -rw; dx <= rw; ++dx) {
      const int64_t xs = x + dx;
      if (xs >= 0 && xs < w) acc[dx + rw] += double(row[x]) * other[xs];
    }
}

void addAutocorrelation(const float* f, int64_t h, int64_t w, int64_t rh, int64_t rw, double sq,
                        double* ac) {
  const int64_t ww = 2 * rw + 1;
  std::vector<double> acc(ww);
  for (int64_t dy = -rh; dy <= rh; ++dy) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t y = std::max<int64_t>(0, -dy); y < std::min(h, h - dy); ++y) {
      const float* row = f + y * w;
      const float* other = f + (y + dy) * w;
      if (rw == 0)
        addRowOffsets<0>(row, other, w, acc.data());
      else if (rw == 1)
        addRowOffsets<1>(row, other, w, acc.data());
      else if (rw == 2)
        addRowOffsets<2>(row, other, w, acc.data());
      else if (rw == 3)
        addRowOffsets<3>(row, other, w, acc.data());
      else
        addRowOffsetsAnyRadius(row, other, w, rw, acc.data());
    }
    for (int64_t dx = -rw; dx <= rw; ++dx)
      ac[(dy + rh) * ww + dx + rw] += (dy == 0 && dx == 0) ? sq : acc[dx + rw];
  }
}

// Adds one batch of tensor `t` to `s` (allocating on first sight).
Status accumulate(const TensorStatsRequest& req, const Tensor& t, TensorStats& s) {
  if (t.dtype() != DType::kFloat32 || t.rank() < 2)
    return unsupported("feature statistics need a float tensor of rank >= 2: '" +
                       req.value->name() + "'");
  const int64_t n = t.dim(0), c = t.dim(1);
  int64_t h = 1, w = 1;
  if (t.rank() == 3) w = t.dim(2);
  if (t.rank() == 4) h = t.dim(2), w = t.dim(3);
  if (t.rank() > 4) return unsupported("feature statistics of a rank > 4 tensor");
  if (s.samples == 0) {
    s.channels = c, s.height = h, s.width = w;
    s.radius_h = std::min(req.radius_h, h - 1);
    s.radius_w = std::min(req.radius_w, w - 1);
    s.mean_std.assign(c, 0.0);
    s.mean_abs.assign(c, 0.0);
    s.autocorr.assign(c * (2 * s.radius_h + 1) * (2 * s.radius_w + 1), 0.0);
    if (req.cosine) s.mean_cosine.assign(c * c, 0.0);
  } else if (s.channels != c || s.height != h || s.width != w) {
    return shapeMismatch("feature map '" + req.value->name() + "' changed shape between batches");
  }
  const int64_t hw = h * w, wh = 2 * s.radius_h + 1, ww = 2 * s.radius_w + 1;
  const float* base = t.data<float>().data();
  for (int64_t i = 0; i < n; ++i) {
    const float* sample = base + i * c * hw;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float* f = sample + ch * hw;
      double sum = 0, sq = 0, abs_sum = 0;
      for (int64_t q = 0; q < hw; ++q)
        sum += f[q], sq += double(f[q]) * f[q], abs_sum += std::abs(f[q]);
      const double mean = sum / hw;
      s.mean_std[ch] += std::sqrt(std::max(0.0, sq / hw - mean * mean));
      s.mean_abs[ch] += abs_sum / hw;
      addAutocorrelation(f, h, w, s.radius_h, s.radius_w, sq, s.autocorr.data() + ch * wh * ww);
    }
    if (req.cosine) {
      using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      Eigen::Map<const RowMajor> fm(sample, c, hw);
      const Eigen::MatrixXf gram = fm * fm.transpose();
      for (int64_t j = 0; j < c; ++j)
        for (int64_t k = 0; k < c; ++k) {
          const double nj = gram(j, j), nk = gram(k, k);
          const double cosine = (nj <= 0 || nk <= 0) ? 1.0 : gram(j, k) / std::sqrt(nj * nk);
          s.mean_cosine[j * c + k] += cosine;
        }
    }
  }
  s.samples += n;
  return Status::ok();
}

}  // namespace

StatusOr<FeatureStats> collectFeatureStats(const Model& model,
                                           const std::vector<TensorStatsRequest>& requests,
                                           const CalibrationSource& calibration,
                                           const std::function<void(int64_t, int64_t)>& progress) {
  if (!calibration.reader) return invalidArgument("feature statistics need calibration data");
  exec::ExecutorOptions eo;
  eo.num_threads = calibration.num_threads;
  NNC_ASSIGN_OR_RETURN(auto executor, exec::Executor::create(model, eo));
  std::map<const Value*, const TensorStatsRequest*> wanted;
  for (const TensorStatsRequest& r : requests) wanted[r.value] = &r;
  FeatureStats stats;
  Status failed = Status::ok();
  const int64_t total = std::min(calibration.count, calibration.reader->size());
  const int64_t batch = std::max<int64_t>(1, calibration.batch);
  for (int64_t start = 0; start < total; start += batch) {
    const int64_t count = std::min(batch, total - start);
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> inputs, calibration.reader->readFeeds(start, count));
    auto observer = [&](const Value& v, const Tensor& t) {
      auto it = wanted.find(&v);
      if (it == wanted.end() || !failed.isOk()) return;
      failed = accumulate(*it->second, t, stats.mutableStats()[&v]);
    };
    auto out = executor->run(std::move(inputs), observer);
    if (!out.isOk()) return out.status();
    NNC_RETURN_IF_ERROR(failed);
    if (progress) progress(start + count, total);
  }
  for (auto& [v, s] : stats.mutableStats()) {
    const double inv = s.samples ? 1.0 / s.samples : 0.0;
    for (double& x : s.mean_std) x *= inv;
    for (double& x : s.mean_abs) x *= inv;
    for (double& x : s.autocorr) x *= inv;
    for (double& x : s.mean_cosine) x *= inv;
  }
  for (const TensorStatsRequest& r : requests)
    if (!stats.find(r.value))
      return internalError("feature map '" + r.value->name() + "' was never produced");
  return stats;
}

}  // namespace nnc
