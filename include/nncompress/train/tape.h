#pragma once
// Gradients over the IR: a tape built from a Model that runs the forward pass with the
// executor's kernels, keeps only what each backward needs, and runs the backward pass to
// accumulate gradients for the trainable initializers (and, on request, for chosen activations).
//
//   auto tape = GradientTape::create(model, options);    // fails before any work (see below)
//   for each batch:
//     tape->zeroGrad();
//     auto outs = tape->forward({images});                  // records
//     auto d_outs = loss_gradient(outs);                    // one tensor per graph output
//     tape->backward(d_outs);                               // parameters()[i].grad += dL/dW
//     optimizer.step(tape->parameters());                   // updates .value in place
//   tape->writeBack(model);                                 // initializers <- trained values
//
// Semantics (inference-mode training, as fine-tuning a compressed model wants):
// - BatchNormalization uses its running statistics (frozen): it is the affine map
//   y = gamma * (x - mean) / sqrt(var + eps) + beta; gamma and beta train, mean and var do not.
// - Dropout is the identity (no mask is drawn), so forward is deterministic.
// - Only nodes with a trainable parameter (or a requested activation) upstream get a backward;
//   subgraphs without one (shape computations, a frozen stem) run forward only.
// - Gradients of several consumers of one value are summed; a parameter read by several nodes
//   (shared initializer) gets the sum too.
//
// Ops with a backward (opsWithBackward(); each checked against finite differences in
// tests/train_gradcheck_test.cc): Conv (groups, depthwise, dilations, strides, pads, auto_pad, 1-D
// and 2-D), ConvTranspose, Gemm, MatMul (batched, broadcast, 1-D), BatchNormalization (frozen),
// Relu, LeakyRelu, PRelu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh, Softmax, LogSoftmax,
// Add/Sub/Mul/Div (broadcasting), Concat, Split, Slice, Pad (every mode), Transpose, Resize and
// Upsample (nearest), Expand, Tile, Gather, DepthToSpace, SpaceToDepth, MaxPool, AveragePool,
// GlobalAveragePool, Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout; and what LayerNorm
// and GELU decompose into: ReduceMean, ReduceSum, Pow, Sqrt, Erf, Exp, Log, Neg (torchvision
// ResNet/MobileNet/ShuffleNet/RegNet/ConvNeXt/ViT exports all build a tape). Shape-only paths
// (Shape, Gather on shapes, Concat of shapes...) carry no gradient and need none.
//
// Thread use: forward and backward use the executor's thread pool (num_threads); batch-level
// parallelism in the conv/GEMM backward. A tape is not thread-safe; one per training loop.
// Speed and memory: bench/train_speed.sh (a training step costs about 4x an inference of the same
// batch; peak RSS about 2x inference at batch 64). NNC_TRAIN_PROFILE=1 prints CPU time per op
// type and phase at exit.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"

namespace nnc::train {

// Fake quantization (quantize-dequantize) applied to a value in the forward pass; the backward
// pass is the straight-through estimator: dL/dx = dL/dq where the value was not clamped, else 0.
// `scales` has one entry (per tensor) or one per index along `axis` (per channel);
// q = clamp(round(x / s) + zero_point, qmin, qmax), x' = (q - zero_point) * s.
struct FakeQuantSpec {
  std::vector<float> scales;
  std::vector<int32_t> zero_points;  // empty: 0; else one per scale
  int axis = 0;                      // used when scales.size() > 1
  int32_t qmin = -8, qmax = 7;       // int4 symmetric by default
  // > 0: blocked scales (as int4 weights with DequantizeLinear block_size): per index c along
  // `axis`, the elements after it (flattened, length L) fall in blocks of block_size, and
  // scales[c * ceil(L / block_size) + j / block_size] applies to element j of the block row.
  int64_t block_size = 0;
};
// Called at every forward with the current float tensor of the value, returns the spec to use
// (so weight scales can follow the weights as they train). Activation scales may stay fixed.
using FakeQuantFn = std::function<FakeQuantSpec(const Tensor& value)>;
// A ready-made weight quantizer: symmetric, per output channel (axis 0), `bits` wide, scale =
// max|w[c]| / (2^(bits-1) - 1) recomputed at every forward.
FakeQuantFn symmetricPerChannelWeights(int bits);

struct TapeOptions {
  int num_threads = 0;  // 0: every core
  // Initializer names to train. Empty: defaultTrainable(model) (every weight, bias, BN gamma/beta
  // and PRelu slope) unless default_trainable is false (then none: e.g. Taylor scores need only
  // activation gradients, and backward skips every weight gradient). Names that are not float32
  // initializers are an invalid argument.
  std::vector<std::string> trainable;
  bool default_trainable = true;
  // Intermediate values (by name) whose gradient dL/dvalue backward() keeps, and whose forward
  // value forward() keeps, for activationGrad()/activation() (Taylor criterion). A listed value
  // makes every node downstream of it need a backward, even without trainable weights upstream.
  std::vector<std::string> keep_activation_grads;
  // Conv gradients with bf16 products and float32 sums where the CPU has AVX-512 BF16: twice the
  // multiply-add rate, the factors rounded to 8 bits of mantissa. dW of every Conv, dX of
  // stride-1 Convs with at least 2 output channels a group. The forward, every sum, the weights
  // and all other ops stay float32. Off: float32 throughout (gradient checks); fine-tuning turns
  // it on unless --grad-precision fp32.
  bool bf16_conv_grads = false;
};

// Turns the Constant nodes that hold float weights of trainable inputs (Conv, Gemm, MatMul,
// BatchNormalization, PRelu) into initializers, so defaultTrainable trains them: exporters such as
// Paddle's keep every weight in a Constant node. Outputs are unchanged. Returns how many.
int hoistConstantWeights(Model& model);

// Whether TapeOptions::bf16_conv_grads takes effect on this CPU (AVX-512 BF16, and
// NNC_GEMM_ISA not capping the instruction set below AVX-512).
bool bf16ConvGradsAvailable();

// One trainable initializer. `value` is the tape's own copy (the Model is not touched until
// writeBack); optimizers update `value` in place and read `grad` (same shape, float32).
struct Parameter {
  std::string name;
  Tensor value;
  Tensor grad;
};

class GradientTape {
 public:
  // Fails with kUnsupported, naming every op type without a backward that lies on a path from a
  // trainable parameter (or kept activation) to an output, before any work; likewise for ops
  // without a forward kernel. kInvalidArgument for unknown trainable/activation names.
  static StatusOr<std::unique_ptr<GradientTape>> create(const Model& model,
                                                        const TapeOptions& options = {});
  ~GradientTape();

  // Graph inputs to feed (initializers excluded) and graph outputs, as in exec::Executor.
  const std::vector<const Value*>& inputs() const;
  const std::vector<const Value*>& outputs() const;

  // Runs one batch and records what backward() needs (replacing any previous record).
  StatusOr<std::vector<Tensor>> forward(std::vector<Tensor> inputs);
  // Forward without recording (validation with the current weights; less memory). Discards the
  // record of a previous forward(): call backward() before infer().
  StatusOr<std::vector<Tensor>> infer(std::vector<Tensor> inputs);
  // Back-propagates from the last forward(): one gradient per graph output, same shape as that
  // output (an empty Tensor() means zero). Accumulates into parameters()[i].grad (call zeroGrad()
  // between steps), fills activationGrad(). Frees the record.
  Status backward(std::vector<Tensor> output_grads);

  std::vector<Parameter>& parameters();
  Parameter* parameter(const std::string& name);  // nullptr if not trainable
  void zeroGrad();

  // After backward(): dL/dvalue for a value listed in keep_activation_grads (nullptr otherwise,
  // or when no gradient reached it). activation(): its forward value from the last forward().
  const Tensor* activationGrad(const std::string& value_name) const;
  const Tensor* activation(const std::string& value_name) const;

  // Fake-quant on a parameter (by initializer name) or an intermediate value (by value name),
  // in forward and infer; STE in backward. An empty fn removes it.
  Status setFakeQuant(const std::string& value_name, FakeQuantFn fn);

  // Copies every parameter's current value into the model's initializer of that name (the model
  // the tape was made from or a clone of it with the same initializer names and shapes).
  Status writeBack(Model& model) const;

  int numThreads() const;

  struct Impl;  // opaque (src/train/tape_impl.h)

 private:
  explicit GradientTape(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Every float32 initializer read at a trainable slot of its op: Conv/ConvTranspose W and B, Gemm
// B and C, a constant MatMul operand, BatchNormalization scale and B, PRelu slope. (Shape
// constants, BN statistics, Clip bounds, Add/Mul constants are not trained.)
std::vector<std::string> defaultTrainable(const Model& model);

// Op types with a registered backward (sorted).
std::vector<std::string> opsWithBackward();

}  // namespace nnc::train
