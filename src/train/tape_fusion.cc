// Relu fusion on the tape: a BatchNormalization (frozen statistics) or a same-shape Add whose
// output only a Relu reads runs as one pass, y = max(0, x * a + b) or max(0, a + b), the
// executor's arithmetic exactly. The value between is never stored: the BN backward reads its
// input, the Add backward nothing, the Relu backward its output. In the backward, the Relu's mask
// is applied by the producer's backward (BackwardContext::relu_mask). Saves a pass over each such
// activation forward and another backward.

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernel_util.h"
#include "tape_impl.h"

namespace nnc::train {

void planFusions(GradientTape::Impl& t) {
  std::vector<int> readers(t.slots.size(), 0), reader(t.slots.size(), -1);
  for (size_t i = 0; i < t.steps.size(); ++i)
    for (int s : t.steps[i].input_slots)
      if (s >= 0) ++readers[s], reader[s] = static_cast<int>(i);
  for (TapeStep& step : t.steps) {
    const Node& n = *step.node;
    const bool bn = n.opType() == "BatchNormalization" && n.intAttr("training_mode", 0) == 0 &&
                    step.input_slots.size() == 5;
    const bool add = n.opType() == "Add" && step.input_slots.size() == 2;
    if (!n.isDefaultDomain() || n.outputs().size() != 1 || !(bn || add)) continue;
    const int s = step.output_slots[0];
    if (s < 0 || readers[s] != 1) continue;
    const TapeSlot& slot = t.slots[s];
    if (slot.graph_output || slot.keep_grad || slot.kept) continue;
    const TapeStep& next = t.steps[reader[s]];
    if (!next.node->isDefaultDomain() || next.node->opType() != "Relu" ||
        next.output_slots.size() != 1 || next.output_slots[0] < 0)
      continue;
    step.fused_relu = reader[s];
    TapeStep& relu = t.steps[reader[s]];
    relu.fused_into = static_cast<int>(&step - t.steps.data());
    // The producer's backward reads the Relu output as its mask: free it after that instead.
    auto& later = relu.free_after_backward;
    const auto it = std::find(later.begin(), later.end(), relu.output_slots[0]);
    if (it != later.end()) step.free_after_backward.push_back(*it), later.erase(it);
  }
}

namespace {

// y = max(0, x * mul[c] + add[c]) per (sample, channel) plane.
Status batchNormRelu(const std::vector<const Tensor*>& in, float eps, Tensor& out,
                     const exec::RunContext& ctx) {
  for (const Tensor* t : in)
    if (!t || t->dtype() != DType::kFloat32) return internalError("fused BatchNormalization input");
  const Tensor& x = *in[0];
  if (x.rank() < 2) return internalError("fused BatchNormalization of rank < 2");
  const int64_t c = x.dim(1), planes = x.dim(0) * c,
                inner = x.numel() / std::max<int64_t>(1, planes);
  const float *scale = fdata(*in[1]), *bias = fdata(*in[2]), *mean = fdata(*in[3]),
              *var = fdata(*in[4]);
  std::vector<float> mul(c), add(c);
  for (int64_t i = 0; i < c; ++i) {
    mul[i] = scale[i] / std::sqrt(var[i] + eps);
    add[i] = bias[i] - mean[i] * mul[i];
  }
  out = ctx.newTensor(DType::kFloat32, x.shape());
  const float* xd = fdata(x);
  float* yd = fdata(out);
  exec::parallelFor(planes, ctx, inner, [&](int64_t p) {
    const float a = mul[p % c], b = add[p % c];
    const float* src = xd + p * inner;
    float* dst = yd + p * inner;
    for (int64_t j = 0; j < inner; ++j) {
      const float v = src[j] * a + b;
      dst[j] = v > 0.f ? v : 0.f;
    }
  });
  return Status::ok();
}

// y = max(0, a + b) for a and b of one shape; false (nothing done) when they differ.
bool addRelu(const std::vector<const Tensor*>& in, Tensor& out, const exec::RunContext& ctx) {
  const Tensor *a = in[0], *b = in[1];
  if (!a || !b || a->dtype() != DType::kFloat32 || b->dtype() != DType::kFloat32 ||
      a->shape() != b->shape())
    return false;
  out = ctx.newTensor(DType::kFloat32, a->shape());
  const float *ad = fdata(*a), *bd = fdata(*b);
  float* yd = fdata(out);
  const int64_t n = a->numel(), chunk = 1 << 14;
  exec::parallelFor((n + chunk - 1) / chunk, ctx, chunk, [&](int64_t c) {
    const int64_t end = std::min(n, (c + 1) * chunk);
    for (int64_t i = c * chunk; i < end; ++i) {
      const float v = ad[i] + bd[i];
      yd[i] = v > 0.f ? v : 0.f;
    }
  });
  return true;
}

}  // namespace

StatusOr<bool> runFusedStep(GradientTape::Impl& t, TapeStep& step,
                            const std::vector<const Tensor*>& in, bool record) {
  step.fused_ran = false;
  if (step.fused_relu < 0) return false;
  TapeStep& relu = t.steps[step.fused_relu];
  const int bn_out = step.output_slots[0], relu_out = relu.output_slots[0];
  if (t.fake_quant.count(bn_out) || t.fake_quant.count(relu_out)) return false;
  Tensor y;
  if (step.node->opType() == "Add") {
    if (!addRelu(in, y, t.ctx)) return false;
  } else {
    NNC_RETURN_IF_ERROR(batchNormRelu(in, step.node->floatAttr("epsilon", 1e-5f), y, t.ctx));
  }
  if (record && relu.backward) t.input_shapes[step.fused_relu] = {y.shape()};
  t.owned[relu_out] = std::move(y);
  t.ptrs[relu_out] = &t.owned[relu_out];
  step.fused_ran = true;
  return true;
}

bool passFusedReluGrad(GradientTape::Impl& t, TapeStep& step, std::vector<Tensor>& grads) {
  if (step.fused_into < 0) return false;
  TapeStep& producer = t.steps[step.fused_into];
  producer.relu_mask_slot = -1;
  const int relu_out = step.output_slots[0], mid = producer.output_slots[0];
  if (!producer.fused_ran || !producer.backward || t.slots[relu_out].keep_grad ||
      !t.ptrs[relu_out] || grads[relu_out].byteSize() == 0 || grads[mid].byteSize() > 0)
    return false;
  grads[mid] = std::move(grads[relu_out]);
  producer.relu_mask_slot = relu_out;
  return true;
}

}  // namespace nnc::train
