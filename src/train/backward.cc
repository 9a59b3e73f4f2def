#include "backward.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

namespace nnc::train {

const BackwardRegistry& BackwardRegistry::builtin() {
  static const BackwardRegistry registry = [] {
    BackwardRegistry r;
    registerConvBackward(r);
    registerMatMulBackward(r);
    registerElementwiseBackward(r);
    registerTensorBackward(r);
    registerPoolBackward(r);
    return r;
  }();
  return registry;
}

const BackwardOp* BackwardRegistry::find(const Node& node) const {
  if (!node.isDefaultDomain()) return nullptr;
  auto it = ops_.find(node.opType());
  return it == ops_.end() ? nullptr : &it->second;
}

std::vector<std::string> BackwardRegistry::opTypes() const {
  std::vector<std::string> ops;
  for (const auto& [op, b] : ops_) ops.push_back(op);
  std::sort(ops.begin(), ops.end());
  return ops;
}

bool isNonDifferentiable(const Node& node) {
  static const std::unordered_set<std::string> ops = {
      "Shape",
      "Size",
      "ArgMax",
      "ArgMin",
      "NonZero",
      "Equal",
      "Less",
      "LessOrEqual",
      "Greater",
      "GreaterOrEqual",
      "Not",
      "And",
      "Or",
      "Xor",
      "IsNaN",
      "IsInf",
      "ConstantOfShape",
      "Range",
      "EyeLike",
      "RandomNormal",
      "RandomUniform",
      "RandomNormalLike",
      "RandomUniformLike",
      "Multinomial",
      "Bernoulli",
  };
  return node.isDefaultDomain() && ops.count(node.opType()) > 0;
}

Tensor takeOutputGrad(const BackwardContext& c, size_t o) {
  if (o < c.owned_output_grads.size() && c.owned_output_grads[o])
    return std::move(*c.owned_output_grads[o]);
  return *c.output_grads[o];
}

Tensor zeros(const Shape& shape, const exec::RunContext* ctx) {
  if (!ctx) return Tensor(DType::kFloat32, shape);  // zero-filled storage
  Tensor t = ctx->newTensor(DType::kFloat32, shape);
  std::fill_n(fdata(t), t.numel(), 0.f);
  return t;
}

Tensor reshaped(Tensor t, const Shape& shape) {
  auto r = Tensor::fromBytes(DType::kFloat32, shape, t.releaseBytes());
  NNC_CHECK(r.isOk(), "reshaped: element count");
  return std::move(r).value();
}

const float* fdata(const Tensor& t) { return t.data<float>().data(); }
float* fdata(Tensor& t) { return t.mutableData<float>().data(); }

}  // namespace nnc::train
