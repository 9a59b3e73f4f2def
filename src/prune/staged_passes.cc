// StagedPasses (calibration_passes.h): which activations each stage reads from the cache, which it
// keeps for later stages, and the segment of the model that computes the rest.

#include <algorithm>
#include <map>
#include <set>
#include <unordered_set>

#include "calibration_passes.h"

namespace nnc::calib {
namespace {

// A node's key, stable across clones and weight changes: the name of its first output.
std::string nodeKey(const Node& n) {
  for (const Value* out : n.outputs())
    if (out) return out->name();
  return {};
}

// Keys of the nodes that compute `values`: their producers and everything above.
std::unordered_set<std::string> ancestors(const Graph& g, const std::vector<std::string>& values) {
  std::unordered_set<std::string> seen;
  std::vector<const Value*> todo;
  for (const std::string& name : values)
    if (const Value* v = g.findValue(name)) todo.push_back(v);
  while (!todo.empty()) {
    const Value* v = todo.back();
    todo.pop_back();
    const Node* p = v ? v->producer() : nullptr;
    if (!p || !seen.insert(nodeKey(*p)).second) continue;
    for (const Value* in : p->inputs()) todo.push_back(in);
    for (const Value* in : p->implicitInputs()) todo.push_back(in);
  }
  return seen;
}

// Bytes of one sample of `v` (every dim after the batch known), or -1.
int64_t sampleBytes(const Value& v) {
  const auto& shape = v.type().shape;
  if (!shape || shape->empty()) return -1;
  int64_t count = 1;
  for (size_t i = 1; i < shape->size(); ++i) {
    if (!(*shape)[i].isKnown()) return -1;
    count *= (*shape)[i].value;
  }
  return storageBytes(v.dtype(), count);
}

}  // namespace

StagedPasses::StagedPasses(const Model& model, std::vector<std::vector<std::string>> stages,
                           const CalibrationSource& calibration, int64_t cache_bytes)
    : requests_(std::move(stages)), plan_(requests_.size()), calibration_(calibration) {
  const Graph& g = *model.graph;
  std::unordered_set<std::string> done;  // nodes some earlier stage runs
  std::map<std::string, size_t> producer_stage, last_reader;
  for (size_t k = 0; k < requests_.size(); ++k) {
    const std::unordered_set<std::string> need = ancestors(g, requests_[k]);
    auto computedEarlier = [&](const Value* v) {
      return v && v->producer() && done.count(nodeKey(*v->producer()));
    };
    std::set<std::string> cut;
    for (const auto& n : g.nodes()) {
      const std::string key = nodeKey(*n);
      if (!need.count(key) || done.count(key)) continue;
      for (const Value* in : n->inputs())
        if (computedEarlier(in)) cut.insert(in->name());
      for (const Value* in : n->implicitInputs())
        if (computedEarlier(in)) cut.insert(in->name());
    }
    for (const std::string& name : requests_[k])
      if (computedEarlier(g.findValue(name))) cut.insert(name);
    plan_[k].cut.assign(cut.begin(), cut.end());
    for (const std::string& name : cut) last_reader[name] = k;
    for (const std::string& key : need)
      if (done.insert(key).second) producer_stage[key] = k;
  }
  // Each cut value is kept by the stage that computes it until its last reader is done.
  int64_t per_sample = 0;  // all cut values at once: a bound on the cache's peak
  bool known = true;
  for (const auto& [name, reader] : last_reader) {
    const Value* v = g.findValue(name);
    plan_[producer_stage.at(nodeKey(*v->producer()))].store.push_back(name);
    plan_[reader].drop.push_back(name);
    const int64_t bytes = sampleBytes(*v);
    known = known && bytes >= 0;
    per_sample += std::max<int64_t>(0, bytes);
  }
  const int64_t samples = std::min(calibration.count, calibration.reader->size());
  caching_ = !last_reader.empty() && known && per_sample * samples <= cache_bytes;
  if (!caching_)
    for (Stage& s : plan_) s = Stage{};
}

// A copy of `model` computing stage k's requests and the values it stores, reading its cut values
// from extra graph inputs (named like the cut values, with a suffix).
StatusOr<Runner> StagedPasses::segment(size_t k, const Model& model) const {
  const Stage& stage = plan_[k];
  std::vector<std::string> wanted;
  for (const std::string& name : requests_[k])
    if (std::find(stage.cut.begin(), stage.cut.end(), name) == stage.cut.end())
      wanted.push_back(name);
  wanted.insert(wanted.end(), stage.store.begin(), stage.store.end());
  Runner r;
  r.outputs = distinct(wanted, r.slot);
  if (r.outputs.empty()) return r;  // everything comes from the cache
  Model copy = model.clone();
  Graph& g = *copy.graph;
  for (const std::string& name : stage.cut) {
    Value* v = g.findValue(name);
    if (!v) return internalError("value '" + name + "' missing from the model copy");
    Value* in = g.createUniqueValue(name + "_cached");
    in->setType(v->type());
    g.replaceAllUsesWith(v, in);
    g.addInput(in);
  }
  NNC_RETURN_IF_ERROR(truncateTo(g, r.outputs));
  r.model = std::make_unique<Model>(std::move(copy));
  NNC_ASSIGN_OR_RETURN(r.executor, exec::Executor::create(*r.model, {threadsOf(calibration_)}));
  return r;
}

Status StagedPasses::run(
    size_t k, const Model& model,
    const std::function<Status(int64_t, const std::vector<const Tensor*>&)>& fn) {
  if (k >= plan_.size()) return internalError("StagedPasses: no stage " + std::to_string(k));
  const Stage& stage = plan_[k];
  NNC_ASSIGN_OR_RETURN(Runner runner, segment(k, model));
  // The model inputs a segment reads, by name: segments keep every input of the model.
  std::map<std::string, size_t> feed_of;
  for (const Value* in : model.graph->inputs())
    if (!in->isInitializer()) feed_of.emplace(in->name(), feed_of.size());
  return forEachBatch(calibration_, [&](int64_t first, const std::vector<Tensor>& feeds) -> Status {
    const size_t index = static_cast<size_t>(first / calibration_.batch);
    if (cache_.size() <= index) cache_.resize(index + 1);
    auto& cached = cache_[index];
    std::vector<Tensor> outs;
    if (runner.executor) {
      std::vector<Tensor> inputs;
      for (const Value* in : runner.executor->inputs()) {
        const std::string& name = in->name();
        auto it = std::find_if(stage.cut.begin(), stage.cut.end(),
                               [&](const std::string& c) { return name == c + "_cached"; });
        if (it == stage.cut.end()) {
          auto feed = feed_of.find(name);
          if (feed == feed_of.end() || feed->second >= feeds.size())
            return internalError("no data feeds input '" + name + "'");
          inputs.push_back(feeds[feed->second]);
          continue;
        }
        auto hit = cached.find(*it);
        if (hit == cached.end()) return internalError("activation '" + *it + "' was not kept");
        inputs.push_back(hit->second);  // shares the bytes
      }
      NNC_ASSIGN_OR_RETURN(outs, runner.executor->run(std::move(inputs)));
      outs.resize(runner.outputs.size());
    }
    std::vector<const Tensor*> values;
    for (const std::string& name : requests_[k]) {
      auto at = std::find(runner.outputs.begin(), runner.outputs.end(), name);
      if (at != runner.outputs.end()) {
        values.push_back(&outs[at - runner.outputs.begin()]);
        continue;
      }
      auto hit = cached.find(name);
      if (hit == cached.end()) return internalError("activation '" + name + "' was not kept");
      values.push_back(&hit->second);
    }
    NNC_RETURN_IF_ERROR(fn(first, values));
    for (const std::string& name : stage.drop) cached.erase(name);
    for (const std::string& name : stage.store) {
      auto at = std::find(runner.outputs.begin(), runner.outputs.end(), name);
      cached[name] = outs[at - runner.outputs.begin()];
    }
    return Status::ok();
  });
}

}  // namespace nnc::calib
