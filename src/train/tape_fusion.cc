// Fusion on the tape, two kinds.
// Relu fusion: a BatchNormalization (frozen statistics) or a same-shape Add whose
// output only a Relu reads runs as one pass, y = max(0, x * a + b) or max(0, a + b), the
// executor's arithmetic exactly. The value between is never stored: the BN backward reads its
// input, the Add backward nothing, the Relu backward its output. In the backward, the Relu's mask
// is applied by the producer's backward (BackwardContext::relu_mask). Saves a pass over each such
// activation forward and another backward.
// BatchNormalization folding: a Conv whose output only a frozen BN reads runs with the BN folded
// into its weights and bias (and the BN's fused Relu in its epilogue), the executor's fused plan
// exactly; the Conv output is never stored. Its backward sees the BN's output gradient g (the
// Relu mask applied): dW = a * dWraw, dX = conv^T(g, a * W), and the BN's parameter gradients
// come from sums it forms anyway (grad_conv.cc). Saves the BN's passes forward and backward.

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernel_util.h"
#include "kernels.h"
#include "nncompress/ir/batch_norm.h"
#include "tape_impl.h"

namespace nnc::train {

namespace {

bool isFrozenBatchNorm(const TapeStep& step) {
  const Node& n = *step.node;
  return n.isDefaultDomain() && n.opType() == "BatchNormalization" &&
         n.intAttr("training_mode", 0) == 0 && step.input_slots.size() == 5 &&
         step.output_slots.size() == 1;
}

// Conv -> frozen BatchNormalization pairs whose value between nothing else reads or asks for.
// The BN's backward must run exactly when the Conv's does (the Conv's computes the BN's).
void planBatchNormFolds(GradientTape::Impl& t, const std::vector<int>& readers,
                        const std::vector<int>& reader) {
  for (TapeStep& conv : t.steps) {
    const Node& n = *conv.node;
    if (!n.isDefaultDomain() || n.opType() != "Conv" || conv.output_slots.size() != 1 ||
        conv.input_slots.size() < 2 || conv.input_slots.size() > 3)
      continue;
    const int s = conv.output_slots[0];
    if (s < 0 || readers[s] != 1 || t.slots[s].graph_output || t.slots[s].keep_grad) continue;
    TapeStep& bn = t.steps[reader[s]];
    if (!isFrozenBatchNorm(bn) || bn.input_slots[0] != s || bn.output_slots[0] < 0 ||
        t.slots[bn.output_slots[0]].keep_grad ||
        (conv.backward == nullptr) != (bn.backward == nullptr))
      continue;
    conv.folded_bn = reader[s];
    bn.folded_into = static_cast<int>(&conv - t.steps.data());
    // The Conv's backward reads what the BN's did (its parameters and statistics, its Relu's
    // output as the mask) and runs later: free those after it instead.
    auto& later = bn.free_after_backward;
    conv.free_after_backward.insert(conv.free_after_backward.end(), later.begin(), later.end());
    later.clear();
  }
}

}  // namespace

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
  planBatchNormFolds(t, readers, reader);
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

// The folded weights and bias of a Conv followed by a frozen BN, as the executor's fused plan
// computes them (ir/batch_norm.h foldIntoOutputChannels).
struct FoldedConv {
  Tensor weight;
  std::vector<float> bias;
};
bool foldWeights(const Tensor& w, const Tensor* b, const Tensor* const bn[4], float eps,
                 FoldedConv& f) {
  const int64_t m = w.rank() > 0 ? w.dim(0) : 0;
  if (w.dtype() != DType::kFloat32 || m <= 0 ||
      (b && (b->dtype() != DType::kFloat32 || b->numel() != m)))
    return false;
  for (int i = 0; i < 4; ++i)
    if (!bn[i] || bn[i]->dtype() != DType::kFloat32 || bn[i]->numel() != m) return false;
  f.weight = w;  // shares the bytes until fdata() below writes a copy
  if (b) f.bias.assign(fdata(*b), fdata(*b) + m);
  const BatchNormAffine affine =
      batchNormAffine(fdata(*bn[0]), fdata(*bn[1]), fdata(*bn[2]), fdata(*bn[3]), m, eps);
  foldIntoOutputChannels(affine, fdata(f.weight), w.numel() / m, f.bias);
  return true;
}

// The Conv step with its BN (and the BN's Relu) folded in, when this run allows it (no
// fake-quant on the values involved). Writes the BN's (or Relu's) output slot.
StatusOr<bool> runFoldedConv(GradientTape::Impl& t, TapeStep& conv,
                             const std::vector<const Tensor*>& in, bool record) {
  TapeStep& bn = t.steps[conv.folded_bn];
  const int relu_step = bn.fused_relu;
  const int out = relu_step >= 0 ? t.steps[relu_step].output_slots[0] : bn.output_slots[0];
  for (int s : {conv.output_slots[0], bn.output_slots[0], out})
    if (t.fake_quant.count(s)) return false;
  if (!in[0] || !in[1] || in[0]->dtype() != DType::kFloat32) return false;
  const Tensor* params[4];
  for (int i = 0; i < 4; ++i) params[i] = t.ptrs[bn.input_slots[i + 1]];
  FoldedConv f;
  if (!foldWeights(*in[1], in.size() > 2 ? in[2] : nullptr, params,
                   bn.node->floatAttr("epsilon", 1e-5f), f))
    return false;
  exec::Epilogue act;
  if (relu_step >= 0) act.act = exec::Epilogue::kRelu;
  auto kernel = exec::makeFusedConv(*conv.node, std::move(f.weight), std::move(f.bias), act);
  const Tensor* x[] = {in[0]};
  Tensor y[1];
  NNC_RETURN_IF_ERROR(kernel->run(x, y, t.ctx)
                          .withContext("node '" + conv.node->name() + "' (Conv with '" +
                                       bn.node->name() + "' folded in)"));
  if (record && relu_step >= 0 && t.steps[relu_step].backward)
    t.input_shapes[relu_step] = {y[0].shape()};
  t.owned[out] = std::move(y[0]);
  t.ptrs[out] = &t.owned[out];
  bn.fused_ran = relu_step >= 0;  // the BN/Relu pair's backward protocol (passFusedReluGrad)
  conv.fused_ran = true;
  return true;
}

}  // namespace

StatusOr<bool> runFusedStep(GradientTape::Impl& t, TapeStep& step,
                            const std::vector<const Tensor*>& in, bool record) {
  step.fused_ran = false;
  if (step.folded_bn >= 0) return runFoldedConv(t, step, in, record);
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

bool passFoldedBatchNormGrad(GradientTape::Impl& t, TapeStep& step, std::vector<Tensor>& grads) {
  if (step.folded_into < 0) return false;
  TapeStep& conv = t.steps[step.folded_into];
  conv.relu_mask_slot = -1;
  if (!conv.fused_ran) return false;
  const int out = step.output_slots[0], mid = conv.output_slots[0];
  conv.relu_mask_slot = step.relu_mask_slot;
  if (grads[out].byteSize() > 0) NNC_CHECK(grads[mid].byteSize() == 0, "folded Conv output grad");
  grads[mid] = std::move(grads[out]);
  return true;
}

bool foldedBatchNormOf(const GradientTape::Impl& t, const TapeStep& step, FoldedBatchNorm& f) {
  if (step.folded_bn < 0 || !step.fused_ran) return false;
  const TapeStep& bn = t.steps[step.folded_bn];
  const float** p[] = {&f.gamma, &f.beta, &f.mean, &f.var};
  for (int i = 0; i < 4; ++i) *p[i] = fdata(*t.ptrs[bn.input_slots[i + 1]]);
  f.epsilon = bn.node->floatAttr("epsilon", 1e-5f);
  f.want_gamma = bn.needs_grad.size() > 1 && bn.needs_grad[1];
  f.want_beta = bn.needs_grad.size() > 2 && bn.needs_grad[2];
  return true;
}

}  // namespace nnc::train
