#pragma once
// Internal to train: the plan and record of a GradientTape (tape.cc builds the plan,
// tape_run.cc runs forward and backward).

#include <memory>
#include <unordered_map>
#include <vector>

#include "backward.h"
#include "nncompress/train/tape.h"
#include "thread_pool.h"

namespace nnc::train {

struct TapeStep {
  const Node* node = nullptr;
  int64_t opset = 0;
  std::unique_ptr<exec::Kernel> kernel;
  std::vector<int> input_slots;          // -1: omitted optional input
  std::vector<int> output_slots;         // -1: omitted optional output
  std::vector<int> free_after_infer;     // plan without a record
  std::vector<int> free_after_record;    // plan with a record: kept slots are not freed
  const BackwardOp* backward = nullptr;  // set when this step is back-propagated
  std::vector<bool> needs_grad;          // per input
  std::vector<int> free_after_backward;  // kept slots whose last backward reader is this step
  std::unique_ptr<BackwardState> backward_state;
  // BatchNormalization or Add whose output only a Relu reads: that Relu's step, computed in the
  // same pass (tape_fusion.cc); the Relu step then finds its output set and skips its kernel.
  int fused_relu = -1;
  int fused_into = -1;  // the Relu step of such a pair: the BatchNormalization step
  // A Conv whose output only a frozen BatchNormalization reads: that BN (and its fused Relu) is
  // folded into the Conv's forward and backward (tape_fusion.cc); the BN step points back.
  int folded_bn = -1;
  int folded_into = -1;
  bool fused_ran = false;   // this forward ran the pair (or the Conv with its BN) fused
  int relu_mask_slot = -1;  // this backward: the producer applies that Relu output's mask
};

struct TapeSlot {
  const Value* value = nullptr;
  const Tensor* constant = nullptr;  // frozen initializer or Constant data
  int param = -1;                    // index into params, for a trainable initializer
  bool requires_grad = false;
  bool kept = false;       // kept from forward to backward
  bool keep_grad = false;  // listed in keep_activation_grads
  bool graph_output = false;
};

struct FakeQuantRecord {
  FakeQuantFn fn;
  std::vector<uint8_t> pass;  // STE mask of the last forward: 1 where the value was not clamped
  Tensor quantized;           // parameters only: the quantized copy the kernels read
};

struct GradientTape::Impl {
  const Model* model = nullptr;
  std::vector<const Value*> inputs, outputs;
  std::vector<int> input_slots, output_slots;
  std::vector<TapeSlot> slots;
  std::vector<TapeStep> steps;
  std::vector<Parameter> params;
  std::vector<int> param_slots;  // slot of each parameter
  std::vector<std::unique_ptr<Tensor>> owned_constants;
  std::unordered_map<std::string, int> slot_of_name;
  std::unordered_map<int, FakeQuantRecord> fake_quant;  // by slot

  exec::RunContext ctx;
  bool bf16_conv_grads = false;  // TapeOptions::bf16_conv_grads
  exec::BufferPool pool;
  std::unique_ptr<exec::ThreadPool> workers;
  std::vector<Shape> last_input_shapes;

  // The record of the last forward().
  bool recorded = false;
  std::vector<Tensor> owned;                     // per slot
  std::vector<const Tensor*> ptrs;               // per slot
  std::vector<std::vector<Shape>> input_shapes;  // per step with a backward
  std::unordered_map<int, Tensor> kept_activations, kept_grads;

  StatusOr<std::vector<Tensor>> run(std::vector<Tensor> inputs, bool record);
  Status backward(std::vector<Tensor> output_grads);
  Status bindParameters(bool record);
  Status runStep(TapeStep& step, bool record);
  Status runKernel(TapeStep& step, const std::vector<const Tensor*>& in_ptrs, bool record);
  void freeAfter(const TapeStep& step, bool record);
  void applyActivationFakeQuant(int slot, bool record);
  Status backwardStep(TapeStep& step, std::vector<Tensor>& grads);
  void freeAfterBackward(const TapeStep& step, std::vector<Tensor>& grads);
  Tensor* gradSumOfInput0(const TapeStep& step, std::vector<Tensor>& grads);
  Status addFoldedBatchNormGrads(const TapeStep& step, FoldedBatchNorm& f,
                                 std::vector<Tensor>& grads);
};

// Marks BatchNormalization/Add -> Relu pairs computed in one forward pass and Conv ->
// BatchNormalization pairs folded into one step (tape_fusion.cc).
void planFusions(GradientTape::Impl& t);
// Runs a fused step's forward when it applies this run (no fake-quant on the values involved):
// writes the Relu's output slot and records its input shape. False: run the step as usual.
StatusOr<bool> runFusedStep(GradientTape::Impl& t, TapeStep& step,
                            const std::vector<const Tensor*>& in, bool record);

// The Relu step of a pair that ran fused hands its gradient to the BN output unmasked (true: its
// backward is done); the producer's backward then applies the mask in its own pass.
bool passFusedReluGrad(GradientTape::Impl& t, TapeStep& step, std::vector<Tensor>& grads);
// The BatchNormalization step folded into its Conv hands its gradient to the Conv output (true:
// its backward is done); the Conv's backward then computes the BN's parameter gradients.
bool passFoldedBatchNormGrad(GradientTape::Impl& t, TapeStep& step, std::vector<Tensor>& grads);
// For the backward of a Conv that ran with its BatchNormalization folded in: the BN's frozen
// statistics and parameters (false: it did not run folded).
bool foldedBatchNormOf(const GradientTape::Impl& t, const TapeStep& step, FoldedBatchNorm& bn);

// Adds `g` into `dst` (moves it in when dst is empty). Shapes must match.
Status accumulate(Tensor& dst, Tensor g, const exec::RunContext& ctx);
// Gives t's storage to the run's buffer pool (t becomes empty).
void recycle(Tensor& t, const exec::RunContext& ctx);
// Quantize-dequantize `t` in place with `spec`; fills `pass` (1 where not clamped).
Status fakeQuantize(Tensor& t, const FakeQuantSpec& spec, std::vector<uint8_t>* pass);

}  // namespace nnc::train
