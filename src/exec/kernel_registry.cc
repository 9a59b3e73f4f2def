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
    return r;
  }();
  return registry;
}

}  // namespace nnc::exec
