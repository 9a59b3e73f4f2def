#pragma once
// Runs an IR graph on the CPU. A plan is built once (kernel per node, constants bound, the last
// use of every intermediate found) and reused for every batch; intermediates are freed right
// after their last consumer, so memory is bounded by the widest point of the graph.

#include <functional>
#include <memory>
#include <vector>

#include "nncompress/exec/kernel.h"

namespace nnc::exec {

struct ExecutorOptions {
  int num_threads = 0;  // 0: every core
  // Runs without an observer use a fused plan (Conv + BatchNormalization + activation as one
  // kernel); runs with an observer always use the unfused plan, so every value is seen exactly.
  bool fuse = true;
  // Test aid: buffers reused from the pool are filled with NaN before a kernel gets them, so a
  // kernel that leaves part of its output unwritten shows up.
  bool poison_buffers = false;
};

// Sees every intermediate tensor as it is produced (for feature-map statistics and calibration).
// The tensor is only valid during the call.
using Observer = std::function<void(const Value& value, const Tensor& tensor)>;

class Executor {
 public:
  // Fails (kUnsupported, naming every op without a kernel) before any work when the model uses
  // ops we cannot run.
  static StatusOr<std::unique_ptr<Executor>> create(const Model& model,
                                                    const ExecutorOptions& options = {});
  ~Executor();

  // The graph inputs to feed (initializers listed as inputs excluded), in order.
  const std::vector<const Value*>& inputs() const { return inputs_; }
  const std::vector<const Value*>& outputs() const { return outputs_; }

  // Runs one batch; `inputs` in the order of inputs(). Returns the graph outputs.
  StatusOr<std::vector<Tensor>> run(std::vector<Tensor> inputs, const Observer& observer = {});
  // Runs one batch and returns the values named `names` (outputs or intermediates), in that
  // order; a name the run does not compute is an error.
  StatusOr<std::vector<Tensor>> runValues(std::vector<Tensor> inputs,
                                          const std::vector<std::string>& names);

  int numThreads() const { return ctx_.num_threads; }
  // Kernels in the plan used without an observer (fewer than nodes when ops were fused).
  size_t numFusedSteps() const;

 private:
  struct Step;
  Executor() = default;
  Status buildFusedPlan();
  void assignFrees(std::vector<Step>& steps) const;

  const Model* model_ = nullptr;
  std::vector<const Value*> inputs_;
  std::vector<const Value*> outputs_;
  std::vector<Step> steps_;                               // one per node: used with an observer
  std::vector<Step> fused_steps_;                         // empty when nothing was fused
  std::vector<const Tensor*> constant_slots_;             // per slot: constant data, or nullptr
  std::vector<std::unique_ptr<Tensor>> owned_constants_;  // Constant nodes without a `value`
  std::vector<int> input_slots_;
  std::vector<int> output_slots_;
  std::vector<const Value*> slot_values_;
  size_t num_slots_ = 0;
  RunContext ctx_;
  BufferPool pool_;
  std::unique_ptr<ThreadPool> workers_;
  std::vector<Shape> last_input_shapes_;
};

// Checks, without building kernels, which ops of the model have no kernel.
std::vector<std::string> unsupportedOps(const Model& model);

// The tensor of a Constant node that uses value_float(s) / value_int(s) / value_string(s) instead
// of a `value` tensor (which is Value::constantData()).
StatusOr<Tensor> constantNodeValue(const Node& n);

}  // namespace nnc::exec
