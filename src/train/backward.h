#pragma once
// Internal to train: backward kernels, one registry entry per op type. A backward gets the
// node's forward inputs and outputs that its entry asked to keep (plus the shapes of all inputs),
// the gradients of its outputs, and writes the gradient of every input marked in needs_grad.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "nncompress/exec/kernel.h"

namespace nnc::train {

// What a backward keeps between batches (a kernel it built, a traced index map); one per step.
struct BackwardState {
  virtual ~BackwardState() = default;
};

// A frozen BatchNormalization folded into the Conv before it (tape_fusion.cc): the Conv's output
// gradient is then the BN's, and its backward also writes dgamma and dbeta where wanted.
struct FoldedBatchNorm {
  const float *gamma = nullptr, *beta = nullptr, *mean = nullptr, *var = nullptr;
  float epsilon = 1e-5f;
  bool want_gamma = false, want_beta = false;
  Tensor dgamma, dbeta;  // [channels], written by the Conv backward
};

struct BackwardContext {
  const Node& node;
  int64_t opset = 0;
  // Forward inputs: constants and parameters always; intermediates only where the entry's
  // keep_inputs bit is set (else nullptr). Omitted optional inputs are nullptr.
  std::span<const Tensor* const> inputs;
  std::span<const Shape> input_shapes;          // every input (empty for omitted ones)
  std::span<const Tensor* const> outputs;       // where keep_outputs is set, else nullptr
  std::span<const Tensor* const> output_grads;  // dL/dY per output; nullptr: zero
  // The same gradients where the backward may take them over (move out, overwrite in place):
  // nullptr when the tape still needs that gradient afterwards.
  std::span<Tensor* const> owned_output_grads;
  std::span<const bool> needs_grad;        // per input
  exec::Kernel* forward_kernel = nullptr;  // the node's forward kernel (index tracing)
  const exec::RunContext& ctx;
  std::unique_ptr<BackwardState>* state = nullptr;  // this step's, kept across batches
  // BatchNormalization or Add fused with the Relu after it (tape_fusion.cc): that Relu's output,
  // whose mask (> 0) this backward applies to dY first.
  const Tensor* relu_mask = nullptr;
  FoldedBatchNorm* folded_bn = nullptr;  // Conv only: see FoldedBatchNorm
  // Input 0's gradient summed so far (float32, input 0's shape), or nullptr: a backward may add
  // its dX into it instead (and leave input_grads[0] empty), saving the tape's pass summing them.
  Tensor* input0_grad_sum = nullptr;
  bool bf16_conv_grads = false;  // TapeOptions::bf16_conv_grads
};

// Writes input_grads[i] (the shape of input i, float32) for every i with needs_grad[i]; an
// input grad left empty counts as zero. Called only when at least one output grad is present.
using BackwardFn = Status (*)(const BackwardContext& c, std::span<Tensor> input_grads);
// Why this node has no backward (e.g. Pad in a mode we do not differentiate), or "".
using BackwardCheckFn = std::string (*)(const Node& node, int64_t opset);

struct BackwardOp {
  BackwardFn fn = nullptr;
  uint32_t keep_inputs = 0;   // bit i: input i (when not constant) is kept for backward
  uint32_t keep_outputs = 0;  // bit i: output i is kept for backward
  BackwardCheckFn check = nullptr;
};

class BackwardRegistry {
 public:
  static const BackwardRegistry& builtin();
  void add(const std::string& op_type, BackwardOp op) { ops_[op_type] = op; }
  const BackwardOp* find(const Node& node) const;
  std::vector<std::string> opTypes() const;

 private:
  std::vector<std::pair<std::string, BackwardOp>> sorted() const;
  std::unordered_map<std::string, BackwardOp> ops_;
};

// Ops whose outputs carry no gradient (shape queries, comparisons, arg-max): a path through them
// needs no backward.
bool isNonDifferentiable(const Node& node);

void registerConvBackward(BackwardRegistry& r);         // Conv, ConvTranspose
void registerMatMulBackward(BackwardRegistry& r);       // Gemm, MatMul
void registerElementwiseBackward(BackwardRegistry& r);  // activations, binary ops, BN, PRelu
void registerTensorBackward(BackwardRegistry& r);       // Concat, Split, Reshape, ..., Softmax
void registerPoolBackward(BackwardRegistry& r);         // MaxPool, AveragePool, GlobalAveragePool
void registerMathBackward(BackwardRegistry& r);  // Erf, Sqrt, Pow, Exp, Log, Neg, ReduceMean/Sum

// ---- helpers shared by the backward files ----

// dY of output o as a tensor this backward owns: taken over when allowed, else a copy. The
// contents are dY; the caller may overwrite them (in-place dX = dY * f').
Tensor takeOutputGrad(const BackwardContext& c, size_t o);

// A float32 tensor of `shape` filled with zeros (storage from the run's buffer pool when given:
// no fresh pages to fault in for every large gradient).
Tensor zeros(const Shape& shape, const exec::RunContext* ctx = nullptr);
// The same data with another shape (moves the storage).
Tensor reshaped(Tensor t, const Shape& shape);
const float* fdata(const Tensor& t);
float* fdata(Tensor& t);

}  // namespace nnc::train
