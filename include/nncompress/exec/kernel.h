#pragma once
// Kernels: one object per node, built once when a plan is made (attributes parsed, constant
// weights pre-packed), then run on every batch. Each op type has a factory in the registry; an
// op without one is reported before any work starts.

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "nncompress/ir/graph.h"

namespace nnc::exec {

// Storage of freed intermediates, handed back to kernels that write every element of their
// output: no malloc, page faults or zero fill per op once the shapes repeat across batches.
class BufferPool {
 public:
  // A buffer of exactly `bytes` bytes (reused when one of that size is free; contents unspecified).
  std::string take(size_t bytes);
  void give(std::string buffer);
  void clear() { free_.clear(), misses_.clear(), held_ = 0; }
  // Test aid: reused buffers come back filled with 0xFF bytes (NaN as float).
  void setPoison(bool poison) { poison_ = poison; }
  // Keep, per size, as many buffers as were ever taken without one free (plus the usual few):
  // for owners that hold many same-size buffers at once (the training tape keeps activations
  // until backward), so steady state has no malloc, zero fill or page faults. Sizes only given,
  // never taken, stay capped at the usual few.
  void setKeepDemand(bool keep) { keep_demand_ = keep; }

 private:
  bool poison_ = false;
  bool keep_demand_ = false;
  std::unordered_multimap<size_t, std::string> free_;
  std::unordered_map<size_t, size_t> misses_;  // with keep_demand_: takes that found none free
  size_t held_ = 0;
};

class ThreadPool;  // src/exec/kernels/thread_pool.h

struct RunContext {
  int num_threads = 1;            // parallelism a kernel may use
  BufferPool* pool = nullptr;     // optional; see newTensor
  ThreadPool* workers = nullptr;  // optional: parallel loops use it instead of OpenMP

  // A tensor whose elements the caller must all write (contents unspecified when pooled).
  Tensor newTensor(DType dtype, Shape shape) const;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  // `inputs` has one entry per node input (nullptr for an omitted optional input), then one per
  // implicit input (outer values a subgraph reads, in Node::implicitInputs() order); `outputs`
  // one per node output, to be assigned by the kernel (dtype and shape included).
  virtual Status run(std::span<const Tensor* const> inputs, std::span<Tensor> outputs,
                     const RunContext& ctx) = 0;
};

// What a factory sees: the node (attributes; constant inputs via input(i)->constantData()),
// the opset of its domain and its model.
struct KernelBuildContext {
  const Node& node;
  int64_t opset = 0;
  const Model* model = nullptr;  // the node's model (opsets for subgraphs); may be null
};

using KernelFactory = std::function<StatusOr<std::unique_ptr<Kernel>>(const KernelBuildContext&)>;

// A kernel from a plain function, for ops with nothing to prepare.
using KernelFn =
    std::function<Status(std::span<const Tensor* const>, std::span<Tensor>, const RunContext&)>;
std::unique_ptr<Kernel> makeFunctionKernel(KernelFn fn);

class KernelRegistry {
 public:
  // The registry with every built-in kernel (default ONNX domain).
  static const KernelRegistry& builtin();

  void add(const std::string& op_type, KernelFactory factory);
  // Shorthand for stateless ops: the factory reads attributes and returns a function.
  void addFunction(const std::string& op_type,
                   std::function<StatusOr<KernelFn>(const KernelBuildContext&)> make);
  const KernelFactory* find(const Node& node) const;
  std::vector<std::string> opTypes() const;

 private:
  std::unordered_map<std::string, KernelFactory> factories_;
};

}  // namespace nnc::exec
