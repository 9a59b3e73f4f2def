#include <algorithm>

#include "kernels/kernels.h"
#include "nncompress/exec/kernel.h"

namespace nnc::exec {
namespace {

class FunctionKernel : public Kernel {
 public:
  explicit FunctionKernel(KernelFn fn) : fn_(std::move(fn)) {}
  Status run(std::span<const Tensor* const> inputs, std::span<Tensor> outputs,
             const RunContext& ctx) override {
    return fn_(inputs, outputs, ctx);
  }

 private:
  KernelFn fn_;
};

}  // namespace

std::string BufferPool::take(size_t bytes) {
  auto it = free_.find(bytes);
  if (it == free_.end()) {
    if (keep_demand_) ++misses_[bytes];
    return std::string(bytes, '\0');
  }
  std::string buffer = std::move(it->second);
  free_.erase(it);
  held_ -= bytes;
  if (poison_) std::fill(buffer.begin(), buffer.end(), '\xff');
  return buffer;
}

void BufferPool::give(std::string buffer) {
  // Bounded whatever the number of batches: a few buffers per size (kernels that do not take
  // from the pool still give to it), and at most 1 GiB in all.
  const size_t size = buffer.size();
  const auto demand = keep_demand_ ? misses_.find(size) : misses_.end();
  if (free_.count(size) >= 4 + (demand == misses_.end() ? 0 : demand->second)) return;
  if (held_ + size > (size_t{1} << 30)) clear();
  held_ += size;
  free_.emplace(size, std::move(buffer));
}

Tensor RunContext::newTensor(DType dtype, Shape shape) const {
  if (!pool || dtype == DType::kString) return Tensor(dtype, std::move(shape));
  const auto bytes = static_cast<size_t>(storageBytes(dtype, shapeNumel(shape)));
  auto t = Tensor::fromBytes(dtype, std::move(shape), pool->take(bytes));
  NNC_CHECK(t.isOk(), "pooled tensor size");
  return std::move(t).value();
}

std::unique_ptr<Kernel> makeFunctionKernel(KernelFn fn) {
  return std::make_unique<FunctionKernel>(std::move(fn));
}

void KernelRegistry::add(const std::string& op_type, KernelFactory factory) {
  factories_[op_type] = std::move(factory);
}

void KernelRegistry::addFunction(
    const std::string& op_type, std::function<StatusOr<KernelFn>(const KernelBuildContext&)> make) {
  add(op_type, [make](const KernelBuildContext& ctx) -> StatusOr<std::unique_ptr<Kernel>> {
    auto fn = make(ctx);
    if (!fn.isOk()) return fn.status();
    return makeFunctionKernel(std::move(fn).value());
  });
}

const KernelFactory* KernelRegistry::find(const Node& node) const {
  if (!node.isDefaultDomain()) return nullptr;
  auto it = factories_.find(node.opType());
  return it == factories_.end() ? nullptr : &it->second;
}

std::vector<std::string> KernelRegistry::opTypes() const {
  std::vector<std::string> ops;
  for (const auto& [op, f] : factories_) ops.push_back(op);
  std::sort(ops.begin(), ops.end());
  return ops;
}

const KernelRegistry& KernelRegistry::builtin() {
  static const KernelRegistry registry = [] {
    KernelRegistry r;
    registerConvKernels(r);
    registerMatMulKernels(r);
    registerNormKernels(r);
    registerElementwiseKernels(r);
    registerPoolKernels(r);
    registerTensorKernels(r);
    registerReduceKernels(r);
    registerResizeKernels(r);
    registerQuantKernels(r);
    registerScatterKernels(r);
    registerDetectionKernels(r);
    registerGridSampleKernels(r);
    registerEinsumKernels(r);
    registerSelectionKernels(r);
    registerSequenceKernels(r);
    registerLinalgKernels(r);
    registerRecurrentKernels(r);
    registerControlFlowKernels(r);
    return r;
  }();
  return registry;
}

}  // namespace nnc::exec
