#include "nncompress/ir/batch_norm.h"

#include <cmath>

namespace nnc {

const Tensor* constantFloat32(const Value* v) {
  if (v == nullptr) return nullptr;
  const Tensor* t = v->constantData();
  return t != nullptr && t->dtype() == DType::kFloat32 ? t : nullptr;
}

std::optional<BatchNormAffine> batchNormAffine(const Node& bn, int64_t channels) {
  if (!bn.isOp("BatchNormalization") || bn.intAttr("training_mode", 0) != 0 || bn.numInputs() < 5)
    return std::nullopt;
  for (size_t i = 1; i < bn.numOutputs(); ++i)
    if (bn.output(i) != nullptr && (bn.output(i)->hasUses() || bn.output(i)->isGraphOutput()))
      return std::nullopt;
  const Tensor* p[4];  // gamma, beta, mean, var
  for (int i = 0; i < 4; ++i) {
    p[i] = constantFloat32(bn.input(i + 1));
    if (p[i] == nullptr) return std::nullopt;
  }
  const int64_t c = p[0]->numel();
  if (channels >= 0 && c != channels) return std::nullopt;
  for (const Tensor* t : p)
    if (t->numel() != c) return std::nullopt;
  const double eps = bn.floatAttr("epsilon", 1e-5f);
  BatchNormAffine a;
  a.scale.resize(c);
  a.shift.resize(c);
  for (int64_t i = 0; i < c; ++i) {
    const double k = p[0]->data<float>()[i] / std::sqrt(double(p[3]->data<float>()[i]) + eps);
    a.scale[i] = k;
    a.shift[i] = p[1]->data<float>()[i] - k * p[2]->data<float>()[i];
  }
  return a;
}

}  // namespace nnc
