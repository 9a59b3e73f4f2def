#include "nncompress/exec/executor.h"

#include <omp.h>

#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <unordered_map>

#include "kernels/kernels.h"
#include "kernels/thread_pool.h"
#include "nncompress/ir/batch_norm.h"
#include "nncompress/ir/subgraph.h"

namespace nnc::exec {

struct Executor::Step {
  const Node* node = nullptr;
  std::unique_ptr<Kernel> kernel;
  std::vector<int> input_slots;   // -1: omitted optional input
  std::vector<int> output_slots;  // -1: omitted optional output
  std::vector<int> free_after;    // slots whose last reader is this step
  size_t unfused_index = 0;       // fused plan, no kernel of its own: steps_[unfused_index]'s
};

Executor::~Executor() = default;

StatusOr<Tensor> constantNodeValue(const Node& n) {
  for (const Attribute& a : n.attributes()) {
    if (a.name == "value_float") return Tensor::fromVector<float>({}, {a.f});
    if (a.name == "value_floats")
      return Tensor::fromVector<float>({static_cast<int64_t>(a.floats.size())}, a.floats);
    if (a.name == "value_int") return Tensor::fromVector<int64_t>({}, {a.i});
    if (a.name == "value_ints")
      return Tensor::fromVector<int64_t>({static_cast<int64_t>(a.ints.size())}, a.ints);
    if (a.name == "value_string") return Tensor::fromStrings({}, {a.s});
    if (a.name == "value_strings")
      return Tensor::fromStrings({static_cast<int64_t>(a.strings.size())}, a.strings);
  }
  return unsupported("Constant node '" + n.name() +
                     "' has no value the executor can read (sparse_value?)");
}

namespace {

// Ops without a kernel in `model` and in the subgraphs of ops that have one (If branches).
void collectUnsupported(const Model& model, std::set<std::string>& missing) {
  const KernelRegistry& registry = KernelRegistry::builtin();
  for (const auto& n : model.graph->nodes()) {
    if (n->isOp("Constant")) continue;
    if (!registry.find(*n)) {
      missing.insert(n->isDefaultDomain() ? n->opType() : n->domain() + "." + n->opType());
      continue;
    }
    for (const Attribute& a : n->attributes()) {
      if (a.kind != AttrKind::kGraph || a.opaque.size() != 1) continue;
      auto body = parseSubgraph(a.opaque[0], model);
      if (body.isOk()) collectUnsupported(body.value(), missing);  // else the kernel says why
    }
  }
}

}  // namespace

std::vector<std::string> unsupportedOps(const Model& model) {
  std::set<std::string> missing;
  collectUnsupported(model, missing);
  return {missing.begin(), missing.end()};
}

StatusOr<std::unique_ptr<Executor>> Executor::create(const Model& model,
                                                     const ExecutorOptions& options) {
  const std::vector<std::string> missing = unsupportedOps(model);
  if (!missing.empty()) {
    std::string list;
    for (const auto& op : missing) list += (list.empty() ? "" : ", ") + op;
    return unsupported("the executor has no kernel for: " + list);
  }
  std::unique_ptr<Executor> ex(new Executor());
  ex->model_ = &model;
  ex->ctx_.num_threads = options.num_threads > 0 ? options.num_threads : omp_get_num_procs();
  const Graph& graph = *model.graph;
  NNC_ASSIGN_OR_RETURN(std::vector<Node*> order, graph.topologicalOrder());

  std::unordered_map<const Value*, int> slot_of;
  auto slotFor = [&](const Value* v) {
    auto [it, inserted] = slot_of.emplace(v, static_cast<int>(ex->slot_values_.size()));
    if (inserted) {
      ex->slot_values_.push_back(v);
      ex->constant_slots_.push_back(v->constantData());
    }
    return it->second;
  };
  for (const Value* v : graph.inputs()) {
    if (v->isInitializer()) continue;
    ex->inputs_.push_back(v);
    ex->input_slots_.push_back(slotFor(v));
  }
  const KernelRegistry& registry = KernelRegistry::builtin();
  for (const Node* n : order) {
    if (n->isOp("Constant")) {  // its output is a constant slot
      if (n->output(0) && !n->output(0)->constantData()) {
        NNC_ASSIGN_OR_RETURN(Tensor t, constantNodeValue(*n));
        ex->owned_constants_.push_back(std::make_unique<Tensor>(std::move(t)));
        const int slot = slotFor(n->output(0));
        ex->constant_slots_[slot] = ex->owned_constants_.back().get();
      }
      continue;
    }
    Step step;
    step.node = n;
    const int64_t opset = model.opsetVersion(n->domain());
    auto kernel = (*registry.find(*n))(KernelBuildContext{*n, opset, &model});
    if (!kernel.isOk())
      return kernel.status().withContext("node '" + n->name() + "' (" + n->opType() + ")");
    step.kernel = std::move(kernel).value();
    for (const Value* in : n->inputs()) step.input_slots.push_back(in ? slotFor(in) : -1);
    for (const Value* in : n->implicitInputs()) step.input_slots.push_back(slotFor(in));
    for (const Value* out : n->outputs()) step.output_slots.push_back(out ? slotFor(out) : -1);
    ex->steps_.push_back(std::move(step));
  }
  for (const Value* v : graph.outputs())
    ex->outputs_.push_back(v), ex->output_slots_.push_back(slotFor(v));
  ex->num_slots_ = ex->slot_values_.size();

  ex->assignFrees(ex->steps_);
  ex->pool_.setPoison(options.poison_buffers);
  ex->ctx_.pool = &ex->pool_;
  if (ex->ctx_.num_threads > 1) {
    ex->workers_ = std::make_unique<ThreadPool>(ex->ctx_.num_threads);
    ex->ctx_.workers = ex->workers_.get();
  }
  if (options.fuse) NNC_RETURN_IF_ERROR(ex->buildFusedPlan());
  return ex;
}

size_t Executor::numFusedSteps() const {
  return fused_steps_.empty() ? steps_.size() : fused_steps_.size();
}

// Frees each intermediate after its last reader; graph outputs and constants are never freed.
void Executor::assignFrees(std::vector<Step>& steps) const {
  std::vector<int> last_reader(num_slots_, -1);
  for (size_t s = 0; s < steps.size(); ++s) {
    steps[s].free_after.clear();
    for (int slot : steps[s].input_slots)
      if (slot >= 0) last_reader[slot] = static_cast<int>(s);
  }
  std::vector<bool> keep(num_slots_, false);
  for (int slot : output_slots_) keep[slot] = true;
  for (size_t slot = 0; slot < num_slots_; ++slot) {
    if (keep[slot] || constant_slots_[slot]) continue;
    if (last_reader[slot] >= 0)
      steps[last_reader[slot]].free_after.push_back(static_cast<int>(slot));
  }
  // Outputs nobody reads (e.g. an unused Dropout mask) are freed right after they are made.
  for (size_t s = 0; s < steps.size(); ++s)
    for (int slot : steps[s].output_slots)
      if (slot >= 0 && last_reader[slot] < 0 && !keep[slot]) steps[s].free_after.push_back(slot);
}

namespace {

// The single consumer of node n's only output, when nothing else (graph output included) sees
// that value: then n and the consumer can run as one kernel without anyone noticing.
const Node* soleConsumer(const Node& n) {
  if (n.outputs().size() != 1 || !n.output(0)) return nullptr;
  const Value* v = n.output(0);
  if (v->isGraphOutput() || v->uses().size() != 1) return nullptr;
  const Use& use = v->uses()[0];
  return use.input_index == 0 ? use.node : nullptr;
}

const Tensor* constantFloat(const Node& n, size_t i) {
  return i < n.inputs().size() ? constantFloat32(n.input(i)) : nullptr;
}

// The epilogue that computes activation node `n` exactly as its own kernel would, if it has one.
std::optional<Epilogue> activationEpilogue(const Node& n, int64_t opset) {
  if (!n.isDefaultDomain() || n.outputs().size() != 1) return std::nullopt;
  Epilogue e;
  if (n.isOp("Relu")) {
    e.act = Epilogue::kRelu;
  } else if (n.isOp("LeakyRelu")) {
    e.act = Epilogue::kLeakyRelu;
    e.alpha = n.floatAttr("alpha", 0.01f);
  } else if (n.isOp("Clip")) {
    e.act = Epilogue::kClip;
    if (opset < 11) {
      e.lo = n.floatAttr("min", -std::numeric_limits<float>::infinity());
      e.hi = n.floatAttr("max", std::numeric_limits<float>::infinity());
    } else {
      e.lo = std::numeric_limits<float>::lowest();
      e.hi = std::numeric_limits<float>::max();
      for (size_t i = 1; i < 3; ++i) {
        if (i >= n.inputs().size() || !n.input(i)) continue;
        const Tensor* t = constantFloat(n, i);
        if (!t || t->numel() != 1) return std::nullopt;
        (i == 1 ? e.lo : e.hi) = t->data<float>()[0];
      }
    }
  } else {
    return std::nullopt;
  }
  return e;
}

}  // namespace

// Conv [+ BatchNormalization folded into its weights] [+ Relu/LeakyRelu/Clip in the GEMM
// epilogue] as one step, for runs without an observer. The model is not changed.
Status Executor::buildFusedPlan() {
  std::unordered_map<const Value*, int> slot_of;
  for (size_t s = 0; s < num_slots_; ++s) slot_of[slot_values_[s]] = static_cast<int>(s);
  std::unordered_map<const Node*, size_t> step_of;
  for (size_t s = 0; s < steps_.size(); ++s) step_of[steps_[s].node] = s;
  std::vector<bool> absorbed(steps_.size(), false);
  std::vector<Step> fused;
  // A step of the unfused plan kept as it is: it runs steps_[s]'s kernel.
  auto keepPlainStep = [&](size_t s) {
    Step copy;
    copy.node = steps_[s].node;
    copy.input_slots = steps_[s].input_slots;
    copy.output_slots = steps_[s].output_slots;
    copy.unfused_index = s;
    fused.push_back(std::move(copy));
  };
  bool any = false;
  for (size_t s = 0; s < steps_.size(); ++s) {
    if (absorbed[s]) continue;
    const Node& conv = *steps_[s].node;
    const Tensor* w = conv.isOp("Conv") ? constantFloat(conv, 1) : nullptr;
    const bool has_bias = conv.inputs().size() > 2 && conv.input(2);
    const Tensor* b = has_bias ? constantFloat(conv, 2) : nullptr;
    if (!w || w->rank() < 3 || w->rank() > 4 || (has_bias && (!b || b->numel() != w->dim(0))) ||
        conv.outputs().size() != 1) {
      keepPlainStep(s);
      continue;
    }
    const int64_t m = w->dim(0), per_oc = w->numel() / std::max<int64_t>(1, m);
    std::vector<float> weight(w->data<float>().begin(), w->data<float>().end());
    std::vector<float> bias;
    if (b) bias.assign(b->data<float>().begin(), b->data<float>().end());
    const Node* last = &conv;
    const Node* next = soleConsumer(conv);
    if (next && next->isOp("BatchNormalization")) {
      if (auto bn = batchNormAffine(*next, m)) {
        foldIntoOutputChannels(*bn, weight.data(), per_oc, bias);
        absorbed[step_of.at(next)] = true;
        last = next;
        next = soleConsumer(*next);
      }
    }
    Epilogue act;
    if (next) {
      if (auto e = activationEpilogue(*next, model_->opsetVersion(next->domain()))) {
        act = *e;
        absorbed[step_of.at(next)] = true;
        last = next;
      }
    }
    if (last == &conv) {  // nothing to fuse: keep the plain kernel
      keepPlainStep(s);
      continue;
    }
    Tensor wt(DType::kFloat32, w->shape());
    std::copy(weight.begin(), weight.end(), wt.mutableData<float>().begin());
    Step step;
    step.node = &conv;
    step.kernel = makeFusedConv(conv, std::move(wt), std::move(bias), act);
    step.input_slots = {steps_[s].input_slots[0]};
    step.output_slots = {slot_of.at(last->output(0))};
    fused.push_back(std::move(step));
    any = true;
  }
  if (!any) return Status::ok();
  fused_steps_ = std::move(fused);
  assignFrees(fused_steps_);
  return Status::ok();
}

StatusOr<std::vector<Tensor>> Executor::runValues(std::vector<Tensor> inputs,
                                                  const std::vector<std::string>& names) {
  std::vector<Tensor> seen(names.size());
  std::vector<bool> found(names.size(), false);
  auto capture = [&](const Value& v, const Tensor& t) {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == v.name()) seen[i] = t, found[i] = true;
  };
  NNC_ASSIGN_OR_RETURN(std::vector<Tensor> out, run(std::move(inputs), capture));
  for (size_t o = 0; o < outputs_.size(); ++o)  // an output no node computes (a graph input)
    for (size_t i = 0; i < names.size(); ++i)
      if (!found[i] && names[i] == outputs_[o]->name()) seen[i] = out[o], found[i] = true;
  for (size_t i = 0; i < names.size(); ++i)
    if (!found[i]) return invalidArgument("the model computes no value named '" + names[i] + "'");
  return seen;
}

StatusOr<std::vector<Tensor>> Executor::run(std::vector<Tensor> inputs, const Observer& observer) {
  if (inputs.size() != inputs_.size())
    return invalidArgument("the model takes " + std::to_string(inputs_.size()) + " inputs, got " +
                           std::to_string(inputs.size()));
  std::vector<Tensor> owned(num_slots_);
  std::vector<const Tensor*> slots(num_slots_, nullptr);
  for (size_t s = 0; s < num_slots_; ++s) slots[s] = constant_slots_[s];
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Value* v = inputs_[i];
    if (v->dtype() != DType::kUndefined && inputs[i].dtype() != v->dtype())
      return invalidArgument("input '" + v->name() + "' must be " + dtypeName(v->dtype()) +
                             ", got " + dtypeName(inputs[i].dtype()));
    const int slot = input_slots_[i];
    owned[slot] = std::move(inputs[i]);
    slots[slot] = &owned[slot];
  }
  // Pooled buffers are kept while the input shapes stay the same (the usual case: every batch).
  std::vector<Shape> shapes;
  for (int slot : input_slots_) shapes.push_back(slots[slot]->shape());
  if (shapes != last_input_shapes_) {
    pool_.clear();
    last_input_shapes_ = std::move(shapes);
  }
  omp_set_num_threads(ctx_.num_threads);
  std::vector<const Tensor*> in_ptrs;
  std::vector<Tensor> outs;
  std::vector<Step>& plan = observer || fused_steps_.empty() ? steps_ : fused_steps_;
  for (Step& step : plan) {
    Kernel& kernel = step.kernel ? *step.kernel : *steps_[step.unfused_index].kernel;
    in_ptrs.clear();
    for (int slot : step.input_slots) {
      if (slot >= 0 && !slots[slot])
        return internalError("value '" + slot_values_[slot]->name() +
                             "' read before it was computed");
      in_ptrs.push_back(slot >= 0 ? slots[slot] : nullptr);
    }
    outs.assign(step.output_slots.size(), Tensor());
    Status st = kernel.run(in_ptrs, outs, ctx_);
    if (!st.isOk())
      return st.withContext("node '" + step.node->name() + "' (" + step.node->opType() + ")");
    for (size_t o = 0; o < outs.size(); ++o) {
      const int slot = step.output_slots[o];
      if (slot < 0) continue;
      owned[slot] = std::move(outs[o]);
      slots[slot] = &owned[slot];
      if (observer) observer(*slot_values_[slot], owned[slot]);
    }
    for (int slot : step.free_after) {
      if (owned[slot].dtype() != DType::kString && owned[slot].byteSize() > 0)
        pool_.give(owned[slot].releaseBytes());
      owned[slot] = Tensor();
      slots[slot] = nullptr;
    }
  }
  std::vector<Tensor> results;
  results.reserve(output_slots_.size());
  std::vector<int> first_result(num_slots_, -1);  // where a slot's value went in `results`
  for (int slot : output_slots_) {
    if (!slots[slot]) return internalError("graph output was not computed");
    // Move owned results out; copy constants and inputs passed through. A value listed twice as a
    // graph output is copied from its first result (its slot was moved out by then).
    if (first_result[slot] >= 0) {
      results.push_back(results[first_result[slot]]);
      continue;
    }
    first_result[slot] = static_cast<int>(results.size());
    const bool movable = slots[slot] == &owned[slot];
    results.push_back(movable ? std::move(owned[slot]) : *slots[slot]);
  }
  return results;
}

}  // namespace nnc::exec
