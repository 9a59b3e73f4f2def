#include "nncompress/exec/executor.h"

#include <omp.h>

#include <set>
#include <unordered_map>

namespace nnc::exec {

struct Executor::Step {
  const Node* node = nullptr;
  std::unique_ptr<Kernel> kernel;
  std::vector<int> input_slots;   // -1: omitted optional input
  std::vector<int> output_slots;  // -1: omitted optional output
  std::vector<int> free_after;    // slots whose last reader is this step
};

Executor::~Executor() = default;

namespace {

// The tensor of a Constant node that uses value_float(s) / value_int(s) / value_string(s)
// instead of a `value` tensor.
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

}  // namespace

std::vector<std::string> unsupportedOps(const Model& model) {
  std::set<std::string> missing;
  const KernelRegistry& registry = KernelRegistry::builtin();
  for (const auto& n : model.graph->nodes()) {
    if (n->isOp("Constant")) continue;
    if (!registry.find(*n))
      missing.insert(n->isDefaultDomain() ? n->opType() : n->domain() + "." + n->opType());
  }
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
    auto kernel = (*registry.find(*n))(KernelBuildContext{*n, opset});
    if (!kernel.isOk())
      return kernel.status().withContext("node '" + n->name() + "' (" + n->opType() + ")");
    step.kernel = std::move(kernel).value();
    for (const Value* in : n->inputs()) step.input_slots.push_back(in ? slotFor(in) : -1);
    for (const Value* out : n->outputs()) step.output_slots.push_back(out ? slotFor(out) : -1);
    ex->steps_.push_back(std::move(step));
  }
  for (const Value* v : graph.outputs())
    ex->outputs_.push_back(v), ex->output_slots_.push_back(slotFor(v));
  ex->num_slots_ = ex->slot_values_.size();

  // Free each intermediate after its last reader; graph outputs and constants are never freed.
  std::vector<int> last_reader(ex->num_slots_, -1);
  for (size_t s = 0; s < ex->steps_.size(); ++s)
    for (int slot : ex->steps_[s].input_slots)
      if (slot >= 0) last_reader[slot] = static_cast<int>(s);
  std::vector<bool> keep(ex->num_slots_, false);
  for (int slot : ex->output_slots_) keep[slot] = true;
  for (size_t slot = 0; slot < ex->num_slots_; ++slot) {
    if (keep[slot] || ex->constant_slots_[slot]) continue;
    if (last_reader[slot] >= 0)
      ex->steps_[last_reader[slot]].free_after.push_back(static_cast<int>(slot));
  }
  // Outputs nobody reads (e.g. an unused Dropout mask) are freed right after they are made.
  for (size_t s = 0; s < ex->steps_.size(); ++s)
    for (int slot : ex->steps_[s].output_slots)
      if (slot >= 0 && last_reader[slot] < 0 && !keep[slot])
        ex->steps_[s].free_after.push_back(slot);
  return ex;
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
  omp_set_num_threads(ctx_.num_threads);
  std::vector<const Tensor*> in_ptrs;
  std::vector<Tensor> outs;
  for (Step& step : steps_) {
    in_ptrs.clear();
    for (int slot : step.input_slots) {
      if (slot >= 0 && !slots[slot])
        return internalError("value '" + slot_values_[slot]->name() +
                             "' read before it was computed");
      in_ptrs.push_back(slot >= 0 ? slots[slot] : nullptr);
    }
    outs.assign(step.output_slots.size(), Tensor());
    Status st = step.kernel->run(in_ptrs, outs, ctx_);
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
      owned[slot] = Tensor();
      slots[slot] = nullptr;
    }
  }
  std::vector<Tensor> results;
  results.reserve(output_slots_.size());
  std::vector<bool> moved(num_slots_, false);
  for (int slot : output_slots_) {
    if (!slots[slot]) return internalError("graph output was not computed");
    // Move owned results out; copy constants, inputs passed through, and repeated outputs.
    const bool movable = slots[slot] == &owned[slot] && !moved[slot];
    results.push_back(movable ? std::move(owned[slot]) : *slots[slot]);
    moved[slot] = true;
  }
  return results;
}

}  // namespace nnc::exec
