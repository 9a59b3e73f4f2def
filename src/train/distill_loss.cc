#include "nncompress/train/distill_loss.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace nnc::train {
namespace {

// Row-wise log-softmax of logits / temperature, in double.
std::vector<double> logSoftmax(std::span<const float> z, int64_t rows, int64_t k, double t) {
  std::vector<double> out(z.size());
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = z.data() + r * k;
    double mx = -INFINITY;
    for (int64_t j = 0; j < k; ++j) mx = std::max(mx, row[j] / t);
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += std::exp(row[j] / t - mx);
    const double log_sum = mx + std::log(sum);
    for (int64_t j = 0; j < k; ++j) out[r * k + j] = row[j] / t - log_sum;
  }
  return out;
}

// KL over the last axis: every row (all other axes) is one distribution; the mean is over rows.
StatusOr<LossResult> klLoss(const Tensor& s, const Tensor& t, const std::vector<int64_t>* labels,
                            const DistillLossOptions& o) {
  const int64_t k = s.dim(s.rank() - 1), n = k > 0 ? s.numel() / k : 0;
  const double temp = o.temperature;
  const auto ls = logSoftmax(s.data<float>(), n, k, temp);
  const auto lt = logSoftmax(t.data<float>(), n, k, temp);
  LossResult r;
  Tensor grad(DType::kFloat32, s.shape());
  auto g = grad.mutableData<float>();
  double kl = 0;
  for (int64_t i = 0; i < n * k; ++i) {
    const double pt = std::exp(lt[i]), ps = std::exp(ls[i]);
    kl += pt * (lt[i] - ls[i]);
    g[i] = static_cast<float>(temp * (ps - pt) / n);
  }
  r.distill = temp * temp * kl / n;
  r.loss = r.distill;
  if (labels) {
    const auto l1 = temp == 1.0 ? ls : logSoftmax(s.data<float>(), n, k, 1.0);
    double ce = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t y = (*labels)[i];
      if (y < 0 || y >= k)
        return invalidArgument("label " + std::to_string(y) + " of sample " + std::to_string(i) +
                               " is outside the model's " + std::to_string(k) + " classes");
      ce -= l1[i * k + y];
      for (int64_t j = 0; j < k; ++j)
        g[i * k + j] += static_cast<float>(o.label_weight *
                                           (std::exp(l1[i * k + j]) - (j == y ? 1.0 : 0.0)) / n);
    }
    r.cross_entropy = ce / n;
    r.loss += o.label_weight * r.cross_entropy;
  }
  r.gradients.push_back(std::move(grad));
  return r;
}

// KL over the last axis of every output (a classifier's [N, K] logits, the logits before a final
// Softmax, several classification heads), summed over outputs.
StatusOr<LossResult> lastAxisKl(const std::vector<Tensor>& student,
                                const std::vector<Tensor>& teacher,
                                const std::vector<int64_t>* labels, const DistillLossOptions& o) {
  if (labels && !isClassifierOutput(student))
    return invalidArgument("labels need one output of shape [N, classes]");
  if (labels && static_cast<int64_t>(labels->size()) != student[0].dim(0))
    return invalidArgument(std::to_string(labels->size()) + " labels for a batch of " +
                           std::to_string(student[0].dim(0)));
  LossResult total;
  for (size_t i = 0; i < student.size(); ++i) {
    if (student[i].rank() < 2 || student[i].dim(student[i].rank() - 1) < 2)
      return invalidArgument("output " + std::to_string(i) + " of shape " +
                             shapeToString(student[i].shape()) +
                             " has no classes on its last axis: the KL loss needs [N, ..., K] "
                             "with K > 1 (use the mse loss)");
    NNC_ASSIGN_OR_RETURN(LossResult r, klLoss(student[i], teacher[i], labels, o));
    total.loss += r.loss;
    total.distill += r.distill;
    total.cross_entropy += r.cross_entropy;
    total.gradients.push_back(std::move(r.gradients[0]));
  }
  return total;
}

LossResult mseLoss(const std::vector<Tensor>& student, const std::vector<Tensor>& teacher) {
  LossResult r;
  for (size_t o = 0; o < student.size(); ++o) {
    const auto s = student[o].data<float>();
    const auto t = teacher[o].data<float>();
    const double count = std::max<double>(1, double(s.size()));
    double mean = 0, var = 0;
    for (float v : t) mean += v;
    mean /= count;
    for (float v : t) var += (v - mean) * (v - mean);
    var /= count;
    // A constant teacher output (e.g. a batch of one) has no scale: plain MSE then.
    const double scale = var > 1e-12 ? var : 1.0;
    Tensor grad(DType::kFloat32, student[o].shape());
    auto g = grad.mutableData<float>();
    double sum = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      const double d = double(s[i]) - t[i];
      sum += d * d;
      g[i] = static_cast<float>(2 * d / (count * scale));
    }
    r.distill += sum / (count * scale);
    r.gradients.push_back(std::move(grad));
  }
  r.loss = r.distill;
  return r;
}

}  // namespace

bool isClassifierOutput(const std::vector<Tensor>& outputs) {
  return outputs.size() == 1 && outputs[0].rank() == 2 && outputs[0].dim(1) > 1;
}

LossKind resolveLossKind(LossKind kind, const std::vector<Tensor>& outputs, bool softmax_logits) {
  if (kind != LossKind::kAuto) return kind;
  return softmax_logits || isClassifierOutput(outputs) ? LossKind::kKlDivergence
                                                       : LossKind::kNormalisedMse;
}

const char* lossKindName(LossKind kind) {
  switch (kind) {
    case LossKind::kKlDivergence:
      return "kl";
    case LossKind::kNormalisedMse:
      return "mse";
    case LossKind::kAuto:
      break;
  }
  return "auto";
}

StatusOr<LossKind> parseLossKind(const std::string& name) {
  for (LossKind k : {LossKind::kAuto, LossKind::kKlDivergence, LossKind::kNormalisedMse})
    if (name == lossKindName(k)) return k;
  return invalidArgument("unknown loss '" + name + "' (auto, kl, mse)");
}

StatusOr<LossResult> distillationLoss(const std::vector<Tensor>& student,
                                      const std::vector<Tensor>& teacher,
                                      const std::vector<int64_t>* labels,
                                      const DistillLossOptions& options) {
  if (student.size() != teacher.size() || student.empty())
    return invalidArgument("the student has " + std::to_string(student.size()) +
                           " outputs, the teacher " + std::to_string(teacher.size()));
  for (size_t o = 0; o < student.size(); ++o) {
    if (student[o].shape() != teacher[o].shape())
      return invalidArgument("output " + std::to_string(o) + ": student shape " +
                             shapeToString(student[o].shape()) + ", teacher shape " +
                             shapeToString(teacher[o].shape()));
    if (student[o].dtype() != DType::kFloat32 || teacher[o].dtype() != DType::kFloat32)
      return invalidArgument("output " + std::to_string(o) + " is not float32");
  }
  const LossKind kind = resolveLossKind(options.kind, student, options.softmax_logits);
  if (kind == LossKind::kKlDivergence) {
    if (options.temperature <= 0) return invalidArgument("the temperature must be positive");
    return lastAxisKl(student, teacher, labels, options);
  }
  if (labels) return invalidArgument("labels are only used with a classifier's logits");
  return mseLoss(student, teacher);
}

}  // namespace nnc::train
