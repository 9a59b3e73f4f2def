#include "nncompress/pipeline/taylor_stats.h"

#include <algorithm>

#include "nncompress/train/distill_loss.h"
#include "nncompress/train/tape.h"

namespace nnc {
namespace {

// dLoss/dy: cross-entropy against `labels` (given, or the model's own top-1) for a classifier,
// the normalised output energy otherwise.
StatusOr<std::vector<Tensor>> taylorLossGradient(const std::vector<Tensor>& outputs,
                                                 const std::vector<int64_t>* labels,
                                                 int64_t first) {
  if (train::isClassifierOutput(outputs)) {
    const int64_t n = outputs[0].dim(0), k = outputs[0].dim(1);
    std::vector<int64_t> y(n);
    for (int64_t i = 0; i < n; ++i) {
      if (labels) {
        y[i] = (*labels)[first + i];
      } else {
        const auto row = outputs[0].data<float>().subspan(i * k, k);
        y[i] = std::max_element(row.begin(), row.end()) - row.begin();
      }
    }
    train::DistillLossOptions o;
    o.kind = train::LossKind::kKlDivergence;
    o.temperature = 1.0;
    o.label_weight = 1.0;
    // Teacher = the model itself: the KL term and its gradient are zero, the CE term remains.
    NNC_ASSIGN_OR_RETURN(train::LossResult r, train::distillationLoss(outputs, outputs, &y, o));
    return std::move(r.gradients);
  }
  std::vector<Tensor> grads;
  for (const Tensor& out : outputs) {
    const auto v = out.data<float>();
    double mean = 0, var = 0;
    for (float x : v) mean += x;
    mean /= std::max<size_t>(1, v.size());
    for (float x : v) var += (x - mean) * (x - mean);
    var = v.empty() ? 1.0 : var / v.size();
    const double scale = 1.0 / (std::max<size_t>(1, v.size()) * (var > 1e-12 ? var : 1.0));
    Tensor g(DType::kFloat32, out.shape());
    auto gd = g.mutableData<float>();
    for (size_t i = 0; i < v.size(); ++i) gd[i] = static_cast<float>(v[i] * scale);
    grads.push_back(std::move(g));
  }
  return grads;
}

// s_c = sum over samples and positions of g * a, for a [N, C, ...] tensor.
std::vector<double> channelProducts(const Tensor& a, const Tensor& g) {
  const int64_t n = a.dim(0), c = a.rank() > 1 ? a.dim(1) : 1;
  const int64_t inner = a.numel() / std::max<int64_t>(1, n * c);
  std::vector<double> s(c, 0.0);
  const auto ad = a.data<float>(), gd = g.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch) {
      const int64_t base = (i * c + ch) * inner;
      double acc = 0;
      for (int64_t p = 0; p < inner; ++p) acc += double(ad[base + p]) * gd[base + p];
      s[ch] += acc;
    }
  return s;
}

}  // namespace

Status collectTaylorStats(const Model& model, const std::vector<const Value*>& values,
                          const CalibrationSource& calibration, FeatureStats& stats,
                          const std::vector<int64_t>* labels) {
  if (!calibration.reader) return invalidArgument("taylor needs calibration data");
  train::TapeOptions to;
  to.num_threads = calibration.num_threads;
  to.default_trainable = false;  // activation gradients only
  for (const Value* v : values) to.keep_activation_grads.push_back(v->name());
  NNC_ASSIGN_OR_RETURN(auto tape, train::GradientTape::create(model, to));
  const int64_t total = std::min(calibration.count, calibration.reader->size());
  if (labels && static_cast<int64_t>(labels->size()) < total)
    return invalidArgument("fewer labels than calibration samples");
  std::map<const Value*, std::vector<double>> sums;
  int64_t batches = 0;
  for (int64_t start = 0; start < total; start += calibration.batch, ++batches) {
    const int64_t n = std::min(calibration.batch, total - start);
    NNC_ASSIGN_OR_RETURN(Tensor x, calibration.reader->readBatch(start, n));
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> y, tape->forward({std::move(x)}));
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> dy, taylorLossGradient(y, labels, start));
    NNC_RETURN_IF_ERROR(tape->backward(std::move(dy)));
    for (const Value* v : values) {
      const Tensor* a = tape->activation(v->name());
      const Tensor* g = tape->activationGrad(v->name());
      if (!a) return internalError("taylor: no activation kept for '" + v->name() + "'");
      std::vector<double>& acc = sums[v];
      const int64_t channels = a->rank() > 1 ? a->dim(1) : 1;
      acc.resize(channels, 0.0);
      if (!g) continue;  // no gradient reached it: the loss does not depend on it
      const std::vector<double> s = channelProducts(*a, *g);
      for (int64_t c = 0; c < channels; ++c) acc[c] += s[c] * s[c];
    }
  }
  for (auto& [v, acc] : sums) {
    TensorStats& ts = stats.mutableStats()[v];
    ts.channels = static_cast<int64_t>(acc.size());
    for (double& x : acc) x /= std::max<int64_t>(1, batches);
    ts.taylor = std::move(acc);
  }
  return Status::ok();
}

GradientStatsFn taylorStatsFn(const std::vector<int64_t>* labels) {
  return [labels](const Model& model, const std::vector<const Value*>& values,
                  const CalibrationSource& calibration, FeatureStats& stats) {
    return collectTaylorStats(model, values, calibration, stats, labels);
  };
}

}  // namespace nnc
