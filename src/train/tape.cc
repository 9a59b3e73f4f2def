// GradientTape: the plan. Which values need a gradient (trainable parameters and kept activations,
// and everything computed from them that reaches a graph output), which steps get a backward,
// which intermediates are kept from forward to backward and when each is freed.

#include "nncompress/train/tape.h"

#include <omp.h>

#include <algorithm>
#include <set>
#include <unordered_set>

#include "conv_grad_bf16.h"
#include "nncompress/exec/executor.h"
#include "tape_impl.h"

namespace nnc::train {
namespace {

// Inputs of an op that hold trainable weights (by default).
const std::vector<int>& trainableSlots(const Node& n) {
  static const std::unordered_map<std::string, std::vector<int>> table = {
      {"Conv", {1, 2}},   {"ConvTranspose", {1, 2}},      {"Gemm", {1, 2}},
      {"MatMul", {0, 1}}, {"BatchNormalization", {1, 2}}, {"PRelu", {1}},
  };
  static const std::vector<int> none;
  if (!n.isDefaultDomain()) return none;
  auto it = table.find(n.opType());
  return it == table.end() ? none : it->second;
}

// The initializer behind v, looking through Identity (exporters dedupe equal weights that way).
const Value* initializerBehind(const Value* v) {
  while (v && !v->isInitializer() && v->producer() && v->producer()->isOp("Identity"))
    v = v->producer()->input(0);
  return v && v->isInitializer() ? v : nullptr;
}

bool isFloatValue(const Value* v) {
  return v->dtype() == DType::kFloat32 || v->dtype() == DType::kUndefined;
}

}  // namespace

std::vector<std::string> defaultTrainable(const Model& model) {
  std::set<std::string> names;
  for (const auto& n : model.graph->nodes())
    for (int i : trainableSlots(*n)) {
      const Value* init = initializerBehind(n->input(static_cast<size_t>(i)));
      if (init && init->initializer()->dtype() == DType::kFloat32) names.insert(init->name());
    }
  return {names.begin(), names.end()};
}

int hoistConstantWeights(Model& model) {
  Graph& g = *model.graph;
  std::vector<Node*> constants;  // float Constants at trainable inputs, in graph order
  for (const auto& n : g.nodes())
    for (int i : trainableSlots(*n)) {
      const Value* v = static_cast<size_t>(i) < n->numInputs() ? n->input(i) : nullptr;
      Node* c = v ? v->producer() : nullptr;
      if (c && c->isOp("Constant") && v->constantData() &&
          v->constantData()->dtype() == DType::kFloat32 &&
          std::find(constants.begin(), constants.end(), c) == constants.end())
        constants.push_back(c);
    }
  int hoisted = 0;
  for (Node* c : constants) hoisted += g.constantToInitializer(c) != nullptr;
  return hoisted;
}

std::vector<std::string> opsWithBackward() { return BackwardRegistry::builtin().opTypes(); }

namespace {

// Slots, steps and forward kernels (the executor's), as in exec::Executor::create.
Status buildSteps(GradientTape::Impl& t, const Model& model, const std::set<std::string>& train) {
  const Graph& graph = *model.graph;
  NNC_ASSIGN_OR_RETURN(std::vector<Node*> order, graph.topologicalOrder());
  auto slotFor = [&](const Value* v) {
    auto [it, inserted] = t.slot_of_name.emplace(v->name(), static_cast<int>(t.slots.size()));
    if (inserted) {
      TapeSlot s;
      s.value = v;
      if (v->isInitializer() && train.count(v->name())) {
        s.param = static_cast<int>(t.params.size());
        Parameter p{v->name(), *v->initializer(),
                    Tensor(DType::kFloat32, v->initializer()->shape())};
        t.params.push_back(std::move(p));
        t.param_slots.push_back(it->second);
      } else if (v->isInitializer() || (v->producer() && v->producer()->isOp("Constant"))) {
        s.constant = v->constantData();
      }
      t.slots.push_back(s);
    }
    return it->second;
  };
  for (const Value* v : graph.inputs()) {
    if (v->isInitializer()) continue;
    t.inputs.push_back(v);
    t.input_slots.push_back(slotFor(v));
  }
  const exec::KernelRegistry& registry = exec::KernelRegistry::builtin();
  std::set<std::string> missing;
  for (const Node* n : order) {
    if (n->isOp("Constant")) {
      const int slot = n->output(0) ? slotFor(n->output(0)) : -1;
      if (slot >= 0 && !t.slots[slot].constant) {
        NNC_ASSIGN_OR_RETURN(Tensor c, exec::constantNodeValue(*n));
        t.owned_constants.push_back(std::make_unique<Tensor>(std::move(c)));
        t.slots[slot].constant = t.owned_constants.back().get();
      }
      continue;
    }
    const exec::KernelFactory* factory = registry.find(*n);
    if (!factory) {
      missing.insert(n->opType());
      continue;
    }
    TapeStep step;
    step.node = n;
    step.opset = model.opsetVersion(n->domain());
    auto kernel = (*factory)(exec::KernelBuildContext{*n, step.opset});
    if (!kernel.isOk())
      return kernel.status().withContext("node '" + n->name() + "' (" + n->opType() + ")");
    step.kernel = std::move(kernel).value();
    for (const Value* in : n->inputs()) step.input_slots.push_back(in ? slotFor(in) : -1);
    for (const Value* out : n->outputs()) step.output_slots.push_back(out ? slotFor(out) : -1);
    t.steps.push_back(std::move(step));
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& op : missing) list += (list.empty() ? "" : ", ") + op;
    return unsupported("the executor has no kernel for: " + list);
  }
  for (const Value* v : graph.outputs()) {
    t.outputs.push_back(v);
    const int slot = slotFor(v);
    t.output_slots.push_back(slot);
    t.slots[slot].graph_output = true;
  }
  return Status::ok();
}

// requires_grad forward from parameters and kept activations; then the steps on a path to an
// output get a backward. Fails naming every op type without one.
Status markBackward(GradientTape::Impl& t) {
  for (TapeStep& step : t.steps) {
    bool any = false;
    for (int s : step.input_slots) any |= s >= 0 && t.slots[s].requires_grad;
    if (!any || isNonDifferentiable(*step.node)) continue;
    for (size_t o = 0; o < step.output_slots.size(); ++o) {
      const int s = step.output_slots[o];
      if (s >= 0 && isFloatValue(t.slots[s].value)) t.slots[s].requires_grad = true;
    }
  }
  std::vector<bool> reaches(t.slots.size(), false);
  for (int s : t.output_slots) reaches[s] = true;
  std::set<std::string> missing;
  for (size_t i = t.steps.size(); i-- > 0;) {
    TapeStep& step = t.steps[i];
    bool out_needed = false;
    for (int s : step.output_slots) out_needed |= s >= 0 && reaches[s] && t.slots[s].requires_grad;
    bool in_needed = false;
    for (int s : step.input_slots) in_needed |= s >= 0 && t.slots[s].requires_grad;
    if (!out_needed || !in_needed) continue;
    const BackwardOp* op = BackwardRegistry::builtin().find(*step.node);
    std::string why = !op ? "no backward" : op->check ? op->check(*step.node, step.opset) : "";
    if (!why.empty()) {
      missing.insert(step.node->opType() + (op ? " (" + why + ")" : ""));
      for (int s : step.input_slots)
        if (s >= 0) reaches[s] = true;  // so ops further up are listed too
      continue;
    }
    step.backward = op;
    for (int s : step.input_slots) {
      step.needs_grad.push_back(s >= 0 && t.slots[s].requires_grad);
      if (s >= 0) reaches[s] = true;
    }
  }
  if (missing.empty()) return Status::ok();
  std::string list;
  for (const auto& op : missing) list += (list.empty() ? "" : ", ") + op;
  return unsupported("no gradient for ops on a path from a trained weight to an output: " + list);
}

// Kept slots and the free lists of both plans.
void planMemory(GradientTape::Impl& t) {
  const size_t n = t.slots.size();
  auto intermediate = [&](int s) { return s >= 0 && !t.slots[s].constant && t.slots[s].param < 0; };
  std::vector<int> first_backward_reader(n, -1);
  for (size_t i = 0; i < t.steps.size(); ++i) {
    TapeStep& step = t.steps[i];
    if (!step.backward) continue;
    auto keep = [&](int s) {
      if (!intermediate(s)) return;
      t.slots[s].kept = true;
      if (first_backward_reader[s] < 0) first_backward_reader[s] = static_cast<int>(i);
    };
    for (size_t k = 0; k < step.input_slots.size(); ++k)
      if (step.backward->keep_inputs >> k & 1) keep(step.input_slots[k]);
    for (size_t k = 0; k < step.output_slots.size(); ++k)
      if (step.backward->keep_outputs >> k & 1) keep(step.output_slots[k]);
  }
  for (size_t s = 0; s < n; ++s)
    if (first_backward_reader[s] >= 0)
      t.steps[first_backward_reader[s]].free_after_backward.push_back(static_cast<int>(s));
  std::vector<int> last_reader(n, -1);
  for (size_t i = 0; i < t.steps.size(); ++i)
    for (int s : t.steps[i].input_slots)
      if (s >= 0) last_reader[s] = static_cast<int>(i);
  for (size_t i = 0; i < t.steps.size(); ++i)
    for (int s : t.steps[i].output_slots)
      if (s >= 0 && last_reader[s] < 0) last_reader[s] = static_cast<int>(i);  // unread output
  for (size_t s = 0; s < n; ++s) {
    const TapeSlot& slot = t.slots[s];
    if (!intermediate(static_cast<int>(s)) || slot.graph_output || last_reader[s] < 0) continue;
    t.steps[last_reader[s]].free_after_infer.push_back(static_cast<int>(s));
    if (!slot.kept && !slot.keep_grad)
      t.steps[last_reader[s]].free_after_record.push_back(static_cast<int>(s));
  }
}

}  // namespace

StatusOr<std::unique_ptr<GradientTape>> GradientTape::create(const Model& model,
                                                             const TapeOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->model = &model;
  std::vector<std::string> names = options.trainable.empty() && options.default_trainable
                                       ? defaultTrainable(model)
                                       : options.trainable;
  std::set<std::string> train(names.begin(), names.end());
  for (const std::string& name : train) {
    const Value* v = model.graph->findValue(name);
    if (!v || !v->isInitializer() || v->initializer()->dtype() != DType::kFloat32)
      return invalidArgument("trainable '" + name + "' is not a float32 initializer");
  }
  NNC_RETURN_IF_ERROR(buildSteps(*impl, model, train));
  for (int s : impl->param_slots) impl->slots[s].requires_grad = true;
  for (const std::string& name : options.keep_activation_grads) {
    auto it = impl->slot_of_name.find(name);
    if (it == impl->slot_of_name.end() || impl->slots[it->second].constant)
      return invalidArgument("activation '" + name + "' is not a computed value of the graph");
    impl->slots[it->second].requires_grad = true;
    impl->slots[it->second].keep_grad = true;
  }
  NNC_RETURN_IF_ERROR(markBackward(*impl));
  planMemory(*impl);
  planFusions(*impl);
  impl->ctx.num_threads = options.num_threads > 0 ? options.num_threads : omp_get_num_procs();
  impl->ctx.pool = &impl->pool;
  impl->bf16_conv_grads = options.bf16_conv_grads;
  impl->pool.setKeepDemand(true);  // activations are held until backward: many of one size
  if (impl->ctx.num_threads > 1) {
    impl->workers = std::make_unique<exec::ThreadPool>(impl->ctx.num_threads);
    impl->ctx.workers = impl->workers.get();
  }
  return std::unique_ptr<GradientTape>(new GradientTape(std::move(impl)));
}

bool bf16ConvGradsAvailable() { return exec::convGradBf16Supported(); }

GradientTape::GradientTape(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GradientTape::~GradientTape() = default;

const std::vector<const Value*>& GradientTape::inputs() const { return impl_->inputs; }
const std::vector<const Value*>& GradientTape::outputs() const { return impl_->outputs; }
int GradientTape::numThreads() const { return impl_->ctx.num_threads; }
std::vector<Parameter>& GradientTape::parameters() { return impl_->params; }

Parameter* GradientTape::parameter(const std::string& name) {
  for (Parameter& p : impl_->params)
    if (p.name == name) return &p;
  return nullptr;
}

void GradientTape::zeroGrad() {
  for (Parameter& p : impl_->params) std::fill_n(fdata(p.grad), p.grad.numel(), 0.f);
}

StatusOr<std::vector<Tensor>> GradientTape::forward(std::vector<Tensor> inputs) {
  return impl_->run(std::move(inputs), /*record=*/true);
}

StatusOr<std::vector<Tensor>> GradientTape::infer(std::vector<Tensor> inputs) {
  return impl_->run(std::move(inputs), /*record=*/false);
}

Status GradientTape::backward(std::vector<Tensor> output_grads) {
  return impl_->backward(std::move(output_grads));
}

const Tensor* GradientTape::activationGrad(const std::string& value_name) const {
  auto it = impl_->slot_of_name.find(value_name);
  if (it == impl_->slot_of_name.end()) return nullptr;
  auto g = impl_->kept_grads.find(it->second);
  return g == impl_->kept_grads.end() ? nullptr : &g->second;
}

const Tensor* GradientTape::activation(const std::string& value_name) const {
  auto it = impl_->slot_of_name.find(value_name);
  if (it == impl_->slot_of_name.end()) return nullptr;
  auto a = impl_->kept_activations.find(it->second);
  return a == impl_->kept_activations.end() ? nullptr : &a->second;
}

Status GradientTape::setFakeQuant(const std::string& value_name, FakeQuantFn fn) {
  auto it = impl_->slot_of_name.find(value_name);
  if (it == impl_->slot_of_name.end() || impl_->slots[it->second].constant)
    return invalidArgument("fake-quant target '" + value_name +
                           "' is neither a trainable parameter nor a computed value");
  if (!fn) {
    impl_->fake_quant.erase(it->second);
    return Status::ok();
  }
  impl_->fake_quant[it->second] = FakeQuantRecord{std::move(fn), {}, {}};
  return Status::ok();
}

Status GradientTape::writeBack(Model& model) const {
  for (const Parameter& p : impl_->params) {
    Value* v = model.graph->findValue(p.name);
    if (!v || !v->isInitializer() || v->initializer()->shape() != p.value.shape() ||
        v->initializer()->dtype() != DType::kFloat32)
      return invalidArgument("the model has no float32 initializer '" + p.name + "' of shape " +
                             shapeToString(p.value.shape()));
    *v->mutableInitializer() = p.value;
  }
  return Status::ok();
}

}  // namespace nnc::train
