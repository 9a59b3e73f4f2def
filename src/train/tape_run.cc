// GradientTape: running forward (the executor's kernels, with a record of what backward needs)
// and backward (reverse order, gradients summed per value, freed as soon as they are used).

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>

#include "kernel_util.h"
#include "tape_impl.h"

namespace nnc::train {

namespace {

// NNC_TRAIN_PROFILE=1: seconds per (op type, forward/backward), printed at exit (for tuning);
// NNC_TRAIN_PROFILE=node: per node.
struct Profile {
  const char* env = std::getenv("NNC_TRAIN_PROFILE");
  bool on = env != nullptr;
  bool by_node = on && std::string(env) == "node";
  std::map<std::string, double> seconds;
  ~Profile() {
    for (const auto& [k, v] : seconds) std::fprintf(stderr, "%-28s %8.3f s\n", k.c_str(), v);
  }
};
Profile& profile() {
  static Profile p;
  return p;
}

// The calling thread's CPU time (other processes on the cores do not count).
double threadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Adds the calling thread's CPU time since construction to `op phase` when profiling.
struct ScopedTimer {
  const Node* node;
  const char* phase;
  double t0 = profile().on ? threadCpuSeconds() : 0.0;
  ~ScopedTimer() {
    if (!profile().on) return;
    const std::string key =
        profile().by_node ? node->opType() + " " + node->name() : node->opType();
    profile().seconds[key + phase] += threadCpuSeconds() - t0;
  }
};

}  // namespace

Status accumulate(Tensor& dst, Tensor g, const exec::RunContext& ctx) {
  if (dst.byteSize() == 0) {
    dst = std::move(g);
    return Status::ok();
  }
  if (dst.shape() != g.shape())
    return internalError("gradient shape " + shapeToString(g.shape()) + " does not match " +
                         shapeToString(dst.shape()));
  float* d = fdata(dst);
  const float* s = fdata(g);
  const int64_t n = dst.numel(), chunk = 1 << 14;
  exec::parallelFor((n + chunk - 1) / chunk, ctx, chunk, [&](int64_t c) {
    const int64_t end = std::min(n, (c + 1) * chunk);
    for (int64_t i = c * chunk; i < end; ++i) d[i] += s[i];
  });
  recycle(g, ctx);
  return Status::ok();
}

void recycle(Tensor& t, const exec::RunContext& ctx) {
  if (ctx.pool && t.dtype() != DType::kString && t.byteSize() > 0) ctx.pool->give(t.releaseBytes());
  t = Tensor();
}

Status fakeQuantize(Tensor& t, const FakeQuantSpec& spec, std::vector<uint8_t>* pass) {
  if (t.dtype() != DType::kFloat32) return invalidArgument("fake-quant needs a float32 tensor");
  if (spec.scales.empty()) return invalidArgument("fake-quant spec without scales");
  const int64_t channels = spec.block_size > 0 && spec.axis >= 0 && spec.axis < t.rank()
                               ? t.dim(spec.axis)
                               : static_cast<int64_t>(spec.scales.size());
  int64_t inner = t.numel(), outer = 1, blocks = 1;
  if (spec.block_size > 0) {
    inner = 1;
    for (int d = spec.axis + 1; d < t.rank(); ++d) inner *= t.dim(d);
    blocks = (inner + spec.block_size - 1) / spec.block_size;
    if (static_cast<int64_t>(spec.scales.size()) != channels * blocks)
      return invalidArgument("fake-quant: " + std::to_string(spec.scales.size()) +
                             " block scales for " + shapeToString(t.shape()));
  } else if (channels > 1) {
    if (spec.axis < 0 || spec.axis >= t.rank() || t.dim(spec.axis) != channels)
      return invalidArgument("fake-quant: " + std::to_string(channels) + " scales for axis " +
                             std::to_string(spec.axis) + " of " + shapeToString(t.shape()));
    inner = 1;
    for (int d = spec.axis + 1; d < t.rank(); ++d) inner *= t.dim(d);
    outer = t.numel() / (inner * channels);
  }
  float* x = fdata(t);
  if (pass) pass->assign(static_cast<size_t>(t.numel()), 1);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t c = channels > 1 ? (i / inner) % channels : 0;
    if (spec.block_size > 0) c = c * blocks + (i % inner) / spec.block_size;
    const float s = spec.scales[c] > 0 ? spec.scales[c] : 1e-12f;
    const int32_t zp = spec.zero_points.empty() ? 0 : spec.zero_points[c];
    const float q = std::nearbyint(x[i] / s) + static_cast<float>(zp);
    const float clamped =
        std::clamp(q, static_cast<float>(spec.qmin), static_cast<float>(spec.qmax));
    if (pass && clamped != q) (*pass)[i] = 0;
    x[i] = (clamped - static_cast<float>(zp)) * s;
  }
  (void)outer;
  return Status::ok();
}

FakeQuantFn symmetricPerChannelWeights(int bits) {
  return [bits](const Tensor& w) {
    FakeQuantSpec spec;
    spec.qmax = (1 << (bits - 1)) - 1;
    spec.qmin = -spec.qmax;
    const int64_t channels = w.rank() > 0 ? w.dim(0) : 1;
    const int64_t per = channels > 0 ? w.numel() / channels : 0;
    const float* d = w.data<float>().data();
    for (int64_t c = 0; c < channels; ++c) {
      float m = 0.f;
      for (int64_t j = 0; j < per; ++j) m = std::max(m, std::abs(d[c * per + j]));
      spec.scales.push_back(m > 0 ? m / static_cast<float>(spec.qmax) : 1.f);
    }
    spec.axis = 0;
    return spec;
  };
}

// Parameter slots point at the parameter values (or their fake-quantized copies).
Status GradientTape::Impl::bindParameters(bool record) {
  for (size_t p = 0; p < params.size(); ++p) {
    const int slot = param_slots[p];
    auto fq = fake_quant.find(slot);
    if (fq == fake_quant.end()) {
      ptrs[slot] = &params[p].value;
      continue;
    }
    fq->second.quantized = params[p].value;
    const FakeQuantSpec spec = fq->second.fn(params[p].value);
    NNC_RETURN_IF_ERROR(
        fakeQuantize(fq->second.quantized, spec, record ? &fq->second.pass : nullptr)
            .withContext("fake-quant of '" + params[p].name + "'"));
    ptrs[slot] = &fq->second.quantized;
  }
  return Status::ok();
}

Status GradientTape::Impl::runStep(TapeStep& step, bool record) {
  const bool folded = step.folded_into >= 0 && steps[step.folded_into].fused_ran;
  if (folded || (step.fused_into >= 0 && ptrs[step.output_slots[0]])) {  // computed before
    freeAfter(step, record);
    return Status::ok();
  }
  std::vector<const Tensor*> in_ptrs;
  for (int s : step.input_slots) {
    if (s >= 0 && !ptrs[s])
      return internalError("value '" + slots[s].value->name() + "' read before it was computed");
    in_ptrs.push_back(s >= 0 ? ptrs[s] : nullptr);
  }
  if (record && step.backward) {
    std::vector<Shape>& shapes = input_shapes[&step - steps.data()];
    shapes.clear();
    for (const Tensor* t : in_ptrs) shapes.push_back(t ? t->shape() : Shape{});
  }
  ScopedTimer timer{step.node, " fwd"};
  NNC_ASSIGN_OR_RETURN(const bool fused, runFusedStep(*this, step, in_ptrs, record));
  if (!fused) NNC_RETURN_IF_ERROR(runKernel(step, in_ptrs, record));
  freeAfter(step, record);
  return Status::ok();
}

Status GradientTape::Impl::runKernel(TapeStep& step, const std::vector<const Tensor*>& in_ptrs,
                                     bool record) {
  std::vector<Tensor> outs(step.output_slots.size());
  NNC_RETURN_IF_ERROR(
      step.kernel->run(in_ptrs, outs, ctx)
          .withContext("node '" + step.node->name() + "' (" + step.node->opType() + ")"));
  for (size_t o = 0; o < outs.size(); ++o) {
    const int s = step.output_slots[o];
    if (s < 0) continue;
    owned[s] = std::move(outs[o]);
    ptrs[s] = &owned[s];
    if (fake_quant.count(s)) {
      FakeQuantRecord& fq = fake_quant[s];
      const FakeQuantSpec spec = fq.fn(owned[s]);
      NNC_RETURN_IF_ERROR(fakeQuantize(owned[s], spec, record ? &fq.pass : nullptr)
                              .withContext("fake-quant of '" + slots[s].value->name() + "'"));
    }
  }
  return Status::ok();
}

void GradientTape::Impl::freeAfter(const TapeStep& step, bool record) {
  for (int s : record ? step.free_after_record : step.free_after_infer) {
    if (owned[s].dtype() != DType::kString && owned[s].byteSize() > 0)
      pool.give(owned[s].releaseBytes());
    owned[s] = Tensor();
    ptrs[s] = nullptr;
  }
}

StatusOr<std::vector<Tensor>> GradientTape::Impl::run(std::vector<Tensor> in, bool record) {
  if (in.size() != inputs.size())
    return invalidArgument("the model takes " + std::to_string(inputs.size()) + " inputs, got " +
                           std::to_string(in.size()));
  recorded = false;
  kept_activations.clear();
  owned.assign(slots.size(), Tensor());
  ptrs.assign(slots.size(), nullptr);
  input_shapes.assign(steps.size(), {});
  for (size_t s = 0; s < slots.size(); ++s) ptrs[s] = slots[s].constant;
  NNC_RETURN_IF_ERROR(bindParameters(record));
  std::vector<Shape> shapes;
  for (size_t i = 0; i < in.size(); ++i) {
    const Value* v = inputs[i];
    if (v->dtype() != DType::kUndefined && in[i].dtype() != v->dtype())
      return invalidArgument("input '" + v->name() + "' must be " + dtypeName(v->dtype()));
    shapes.push_back(in[i].shape());
    owned[input_slots[i]] = std::move(in[i]);
    ptrs[input_slots[i]] = &owned[input_slots[i]];
  }
  if (shapes != last_input_shapes) pool.clear(), last_input_shapes = std::move(shapes);
  omp_set_num_threads(ctx.num_threads);
  for (TapeStep& step : steps) NNC_RETURN_IF_ERROR(runStep(step, record));
  std::vector<Tensor> results;
  for (int s : output_slots) {
    if (!ptrs[s]) return internalError("graph output was not computed");
    const bool movable = ptrs[s] == &owned[s] && !slots[s].kept && !slots[s].keep_grad;
    results.push_back(movable ? std::move(owned[s]) : *ptrs[s]);
    if (movable) ptrs[s] = nullptr;
  }
  if (record) {
    for (size_t s = 0; s < slots.size(); ++s)
      if (slots[s].keep_grad && ptrs[s]) kept_activations[static_cast<int>(s)] = *ptrs[s];
  }
  recorded = record;
  return results;
}

Status GradientTape::Impl::backwardStep(TapeStep& step, std::vector<Tensor>& grads) {
  if (passFusedReluGrad(*this, step, grads) || passFoldedBatchNormGrad(*this, step, grads)) {
    freeAfterBackward(step, grads);
    return Status::ok();
  }
  std::vector<const Tensor*> out_grads, in_ptrs, out_ptrs;
  std::vector<Tensor*> owned_grads;
  for (int s : step.output_slots) {  // straight-through estimator of a fake-quantized output
    auto fq = s >= 0 ? fake_quant.find(s) : fake_quant.end();
    if (fq == fake_quant.end() || grads[s].numel() != static_cast<int64_t>(fq->second.pass.size()))
      continue;
    float* d = fdata(grads[s]);
    for (int64_t i = 0; i < grads[s].numel(); ++i)
      if (!fq->second.pass[i]) d[i] = 0.f;
  }
  bool any = false;
  for (size_t o = 0; o < step.output_slots.size(); ++o) {
    const int s = step.output_slots[o];
    const bool has = s >= 0 && grads[s].byteSize() > 0;
    out_grads.push_back(has ? &grads[s] : nullptr);
    owned_grads.push_back(has && !slots[s].keep_grad ? &grads[s] : nullptr);
    any |= has;
    out_ptrs.push_back(s >= 0 && step.backward->keep_outputs >> o & 1 ? ptrs[s] : nullptr);
  }
  for (size_t i = 0; i < step.input_slots.size(); ++i) {
    const int s = step.input_slots[i];
    const bool available =
        s >= 0 && (slots[s].constant || slots[s].param >= 0 || step.backward->keep_inputs >> i & 1);
    in_ptrs.push_back(available ? ptrs[s] : nullptr);
  }
  if (any) {
    const size_t index = &step - steps.data();
    std::vector<Shape>& shapes = input_shapes[index];
    std::unique_ptr<bool[]> needs(new bool[step.needs_grad.size()]);
    for (size_t i = 0; i < step.needs_grad.size(); ++i) needs[i] = step.needs_grad[i];
    BackwardContext c{*step.node,
                      step.opset,
                      in_ptrs,
                      shapes,
                      out_ptrs,
                      out_grads,
                      owned_grads,
                      std::span<const bool>(needs.get(), step.needs_grad.size()),
                      step.kernel.get(),
                      ctx,
                      &step.backward_state};
    if (step.relu_mask_slot >= 0) c.relu_mask = ptrs[step.relu_mask_slot];
    FoldedBatchNorm folded;
    if (foldedBatchNormOf(*this, step, folded)) c.folded_bn = &folded;
    c.input0_grad_sum = gradSumOfInput0(step, grads);
    c.bf16_conv_grads = bf16_conv_grads;
    std::vector<Tensor> in_grads(step.input_slots.size());
    ScopedTimer timer{step.node, " bwd"};
    NNC_RETURN_IF_ERROR(step.backward->fn(c, in_grads)
                            .withContext("backward of node '" + step.node->name() + "' (" +
                                         step.node->opType() + ")"));
    if (c.folded_bn) NNC_RETURN_IF_ERROR(addFoldedBatchNormGrads(step, folded, grads));
    for (size_t i = 0; i < in_grads.size(); ++i) {
      const int s = step.input_slots[i];
      if (s < 0 || !step.needs_grad[i] || in_grads[i].byteSize() == 0) continue;
      if (in_grads[i].shape() != shapes[i])
        return internalError("backward of '" + step.node->name() + "' gave input " +
                             std::to_string(i) + " a gradient of shape " +
                             shapeToString(in_grads[i].shape()) + ", not " +
                             shapeToString(shapes[i]));
      NNC_RETURN_IF_ERROR(accumulate(grads[s], std::move(in_grads[i]), ctx));
    }
  }
  freeAfterBackward(step, grads);
  return Status::ok();
}

// BackwardContext::input0_grad_sum: input 0's gradient so far, when the step reads that value
// through input 0 only (else an addition into it would be seen by the backward itself).
Tensor* GradientTape::Impl::gradSumOfInput0(const TapeStep& step, std::vector<Tensor>& grads) {
  const int s = step.input_slots.empty() ? -1 : step.input_slots[0];
  if (s < 0 || step.needs_grad.empty() || !step.needs_grad[0] || grads[s].byteSize() == 0 ||
      grads[s].dtype() != DType::kFloat32 ||
      grads[s].shape() != input_shapes[&step - steps.data()][0])
    return nullptr;
  for (size_t i = 1; i < step.input_slots.size(); ++i)
    if (step.input_slots[i] == s) return nullptr;
  return &grads[s];
}

// dgamma and dbeta of a BatchNormalization folded into the Conv `step` (its backward wrote them).
Status GradientTape::Impl::addFoldedBatchNormGrads(const TapeStep& step, FoldedBatchNorm& f,
                                                   std::vector<Tensor>& grads) {
  const TapeStep& bn = steps[step.folded_bn];
  for (int i : {1, 2}) {
    Tensor& g = i == 1 ? f.dgamma : f.dbeta;
    if (!bn.needs_grad[i] || g.byteSize() == 0) continue;
    NNC_RETURN_IF_ERROR(accumulate(grads[bn.input_slots[i]], std::move(g), ctx));
  }
  return Status::ok();
}

void GradientTape::Impl::freeAfterBackward(const TapeStep& step, std::vector<Tensor>& grads) {
  for (int s : step.output_slots)
    if (s >= 0 && !slots[s].keep_grad) recycle(grads[s], ctx);
  for (int s : step.free_after_backward) {
    if (slots[s].keep_grad) continue;
    recycle(owned[s], ctx);
    ptrs[s] = nullptr;
  }
}

Status GradientTape::Impl::backward(std::vector<Tensor> output_grads) {
  if (!recorded) return invalidArgument("backward() needs a forward() first");
  if (output_grads.size() != output_slots.size())
    return invalidArgument("backward() takes one gradient per graph output (" +
                           std::to_string(output_slots.size()) + ")");
  recorded = false;
  kept_grads.clear();
  omp_set_num_threads(ctx.num_threads);
  std::vector<Tensor> grads(slots.size());
  for (size_t o = 0; o < output_grads.size(); ++o) {
    if (output_grads[o].byteSize() == 0) continue;
    const int s = output_slots[o];
    if (output_grads[o].dtype() != DType::kFloat32)
      return invalidArgument("output gradients must be float32");
    if (!slots[s].requires_grad) continue;
    NNC_RETURN_IF_ERROR(accumulate(grads[s], std::move(output_grads[o]), ctx));
  }
  for (size_t i = steps.size(); i-- > 0;)
    if (steps[i].backward) NNC_RETURN_IF_ERROR(backwardStep(steps[i], grads));
  for (size_t p = 0; p < params.size(); ++p) {
    Tensor& g = grads[param_slots[p]];
    if (g.byteSize() == 0) continue;
    auto fq = fake_quant.find(param_slots[p]);
    if (fq != fake_quant.end() && fq->second.pass.size() == static_cast<size_t>(g.numel())) {
      float* d = fdata(g);
      for (int64_t i = 0; i < g.numel(); ++i)
        if (!fq->second.pass[i]) d[i] = 0.f;
    }
    NNC_RETURN_IF_ERROR(accumulate(params[p].grad, std::move(g), ctx));
  }
  for (size_t s = 0; s < slots.size(); ++s)
    if (slots[s].keep_grad && grads[s].byteSize() > 0)
      kept_grads[static_cast<int>(s)] = std::move(grads[s]);
  owned.clear();
  ptrs.clear();
  return Status::ok();
}

}  // namespace nnc::train
