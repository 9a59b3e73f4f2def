#include "calibration_passes.h"

#include <omp.h>

#include <algorithm>
#include <map>
#include <set>
#include <unordered_set>

namespace nnc::calib {

Status checkCalibration(const CalibrationSource& c) {
  if (!c.reader) return invalidArgument("calibration: no data reader");
  if (c.count <= 0) return invalidArgument("calibration: the sample count must be positive");
  if (c.batch <= 0) return invalidArgument("calibration: the batch size must be positive");
  if (c.reader->size() <= 0) return invalidArgument("calibration: the data set is empty");
  return Status::ok();
}

int threadsOf(const CalibrationSource& c) {
  return c.num_threads > 0 ? c.num_threads : omp_get_num_procs();
}

Status forEachBatch(const CalibrationSource& c,
                    const std::function<Status(int64_t, const std::vector<Tensor>&)>& fn) {
  const int64_t total = std::min(c.count, c.reader->size());
  for (int64_t first = 0; first < total; first += c.batch) {
    const int64_t n = std::min(c.batch, total - first);
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> feeds, c.reader->readFeeds(first, n));
    NNC_RETURN_IF_ERROR(fn(first, feeds)
                            .withContext("calibration samples " + std::to_string(first) + ".." +
                                         std::to_string(first + n - 1)));
  }
  return Status::ok();
}

Status truncateTo(Graph& g, const std::vector<std::string>& outputs) {
  if (outputs.empty()) return internalError("truncatedCopy: no outputs");
  std::vector<Value*> values;
  for (const std::string& name : outputs) {
    Value* v = g.findValue(name);
    if (!v) return internalError("value '" + name + "' missing from the model copy");
    values.push_back(v);
  }
  // Graph outputs cannot be removed, only replaced: surplus slots repeat the last value.
  const size_t slots = g.outputs().size();
  for (size_t i = 0; i < std::max(slots, values.size()); ++i) {
    Value* v = values[std::min(i, values.size() - 1)];
    if (i < slots)
      g.setOutput(i, v);
    else
      g.addOutput(v);
  }
  g.removeDeadNodes();
  return Status::ok();
}

// Distinct names in first-seen order, and each request's index among them.
std::vector<std::string> distinct(const std::vector<std::string>& requests,
                                  std::vector<size_t>& slot) {
  std::vector<std::string> out;
  slot.clear();
  for (const std::string& name : requests) {
    auto it = std::find(out.begin(), out.end(), name);
    slot.push_back(it - out.begin());
    if (it == out.end()) out.push_back(name);
  }
  return out;
}

StatusOr<Model> truncatedCopy(const Model& model, const std::vector<std::string>& outputs) {
  Model copy = model.clone();
  NNC_RETURN_IF_ERROR(truncateTo(*copy.graph, outputs));
  return copy;
}

StatusOr<Runner> Runner::make(const Model& from, const std::vector<std::string>& requests,
                              int threads) {
  Runner r;
  r.outputs = distinct(requests, r.slot);
  NNC_ASSIGN_OR_RETURN(Model copy, truncatedCopy(from, r.outputs));
  r.model = std::make_unique<Model>(std::move(copy));
  NNC_ASSIGN_OR_RETURN(r.executor, exec::Executor::create(*r.model, {threads}));
  return r;
}

StatusOr<std::vector<Tensor>> Runner::run(const std::vector<Tensor>& feeds) {
  NNC_ASSIGN_OR_RETURN(std::vector<Tensor> out, executor->run(std::vector<Tensor>(feeds)));
  out.resize(outputs.size());
  return out;
}

}  // namespace nnc::calib
