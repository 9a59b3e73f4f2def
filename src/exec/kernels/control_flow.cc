// If: runs one of two subgraphs. Each branch is parsed once (ir/subgraph.h) and planned as a
// nested Executor when the kernel is built, so a branch op without a kernel is reported before
// any work. The outer values a branch reads arrive as the node's implicit inputs.

#include <unordered_map>

#include "kernels.h"
#include "nncompress/exec/executor.h"
#include "nncompress/ir/subgraph.h"

namespace nnc::exec {
namespace {

// One parsed and planned branch, and where each of its inputs comes from among the implicit ones.
struct Branch {
  std::unique_ptr<Model> model;  // owned here: the executor keeps a pointer to it
  std::unique_ptr<Executor> executor;
  std::vector<size_t> implicit_index;  // per executor input
};

StatusOr<Branch> planBranch(const KernelBuildContext& ctx, const char* name) {
  const Attribute* a = ctx.node.findAttribute(name);
  if (!a || a->kind != AttrKind::kGraph || a->opaque.size() != 1)
    return invalidModel(std::string("If needs a graph attribute '") + name + "'");
  if (!ctx.model) return unsupported("If needs its model to parse its branches");
  Branch b;
  NNC_ASSIGN_OR_RETURN(Model parsed, parseSubgraph(a->opaque[0], *ctx.model));
  b.model = std::make_unique<Model>(std::move(parsed));
  // One thread: branches are usually small post-processing (NMS); the nested plan stays serial.
  auto ex = Executor::create(*b.model, ExecutorOptions{.num_threads = 1});
  if (!ex.isOk()) return ex.status().withContext(std::string("If ") + name);
  b.executor = std::move(ex).value();
  const auto& implicit = ctx.node.implicitInputs();
  for (const Value* in : b.executor->inputs()) {
    size_t k = 0;
    while (k < implicit.size() && implicit[k]->name() != in->name()) ++k;
    if (k == implicit.size())
      return invalidModel(std::string("If ") + name + " reads '" + in->name() +
                          "', which the node does not list");
    b.implicit_index.push_back(k);
  }
  return b;
}

class IfKernel : public Kernel {
 public:
  IfKernel(Branch then_branch, Branch else_branch, size_t num_inputs)
      : then_(std::move(then_branch)), else_(std::move(else_branch)), num_inputs_(num_inputs) {}

  Status run(std::span<const Tensor* const> inputs, std::span<Tensor> outputs,
             const RunContext&) override {
    const Tensor* cond = inputs[0];
    if (!cond || cond->numel() != 1 || cond->dtype() != DType::kBool)
      return invalidArgument("If condition must be one bool");
    Branch& branch = cond->data<bool>()[0] ? then_ : else_;
    std::vector<Tensor> feed;
    for (size_t k : branch.implicit_index) feed.push_back(*inputs[num_inputs_ + k]);
    NNC_ASSIGN_OR_RETURN(std::vector<Tensor> results, branch.executor->run(std::move(feed)));
    if (results.size() != outputs.size())
      return invalidArgument("If branch returns " + std::to_string(results.size()) +
                             " outputs, the node has " + std::to_string(outputs.size()));
    for (size_t o = 0; o < outputs.size(); ++o) outputs[o] = std::move(results[o]);
    return Status::ok();
  }

 private:
  Branch then_, else_;
  size_t num_inputs_;  // the node's own inputs; implicit ones follow
};

}  // namespace

void registerControlFlowKernels(KernelRegistry& r) {
  r.add("If", [](const KernelBuildContext& ctx) -> StatusOr<std::unique_ptr<Kernel>> {
    NNC_ASSIGN_OR_RETURN(Branch then_branch, planBranch(ctx, "then_branch"));
    NNC_ASSIGN_OR_RETURN(Branch else_branch, planBranch(ctx, "else_branch"));
    return std::unique_ptr<Kernel>(std::make_unique<IfKernel>(
        std::move(then_branch), std::move(else_branch), ctx.node.inputs().size()));
  });
}

}  // namespace nnc::exec
