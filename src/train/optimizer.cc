#include "nncompress/train/optimizer.h"

#include <cmath>

namespace nnc::train {

StatusOr<OptimizerKind> parseOptimizerKind(const std::string& name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adamw") return OptimizerKind::kAdamW;
  return invalidArgument("unknown optimizer '" + name + "' (sgd, adamw)");
}

Optimizer::Optimizer(std::vector<Tensor*> params, const OptimizerOptions& options)
    : params_(std::move(params)), options_(options) {
  const int per_param = options_.kind == OptimizerKind::kAdamW ? 2 : 1;
  for (int k = 0; k < per_param; ++k)
    for (const Tensor* p : params_) state_.emplace_back(DType::kFloat32, p->shape());
}

StatusOr<double> Optimizer::step(const std::vector<const Tensor*>& grads, double lr) {
  if (grads.size() != params_.size())
    return invalidArgument(std::to_string(grads.size()) + " gradients for " +
                           std::to_string(params_.size()) + " parameters");
  double sq = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i] || grads[i]->shape() != params_[i]->shape() ||
        grads[i]->dtype() != DType::kFloat32)
      return invalidArgument("gradient " + std::to_string(i) + " does not match its parameter");
    for (float g : grads[i]->data<float>()) sq += double(g) * g;
  }
  const double norm = std::sqrt(sq);
  const double clip = options_.max_grad_norm > 0 && norm > options_.max_grad_norm
                          ? options_.max_grad_norm / norm
                          : 1.0;
  ++steps_;
  const size_t n = params_.size();
  const double wd = options_.weight_decay;
  for (size_t i = 0; i < n; ++i) {
    auto w = params_[i]->mutableData<float>();
    const auto g = grads[i]->data<float>();
    const bool decay = params_[i]->rank() >= 2;
    if (options_.kind == OptimizerKind::kSgd) {
      auto v = state_[i].mutableData<float>();
      for (size_t j = 0; j < w.size(); ++j) {
        const double gj = clip * g[j] + (decay ? wd * w[j] : 0.0);
        v[j] = static_cast<float>(options_.momentum * v[j] + gj);
        w[j] = static_cast<float>(w[j] - lr * v[j]);
      }
    } else {
      auto m = state_[i].mutableData<float>();
      auto v = state_[n + i].mutableData<float>();
      const double b1 = options_.beta1, b2 = options_.beta2;
      const double c1 = 1 - std::pow(b1, double(steps_)), c2 = 1 - std::pow(b2, double(steps_));
      for (size_t j = 0; j < w.size(); ++j) {
        const double gj = clip * g[j];
        m[j] = static_cast<float>(b1 * m[j] + (1 - b1) * gj);
        v[j] = static_cast<float>(b2 * v[j] + (1 - b2) * gj * gj);
        const double update = (m[j] / c1) / (std::sqrt(v[j] / c2) + options_.eps);
        w[j] = static_cast<float>(w[j] - lr * update - (decay ? lr * wd * w[j] : 0.0));
      }
    }
  }
  return norm;
}

}  // namespace nnc::train
