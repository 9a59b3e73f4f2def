#pragma once
// Distilling through a model's final Softmax: a classifier exported with its Softmax (PaddleOCR's
// [N, 2] text direction, a recogniser's [N, T, C] per-step characters) gives probabilities, and
// matching those (KL of a softmax of probabilities, or their squared error, dominated by the
// many near-zero entries) trains weakly. The logits before it carry the same answer with the
// full signal, so fine-tuning trains a copy whose graph outputs are those logits, with a KL over
// the last axis (distill_loss.h), and copies the weights back.

#include "nncompress/ir/graph.h"
#include "nncompress/ir/status.h"

namespace nnc::train {

// The Softmax or LogSoftmax over the last axis (rank >= 2, float32, any opset's spelling) that
// makes `output`, or nullptr.
Node* lastAxisSoftmax(const Model& model, const Value* output);

// When every graph output of `model` is made by a Softmax or LogSoftmax over its last axis (any
// opset: before 13 the op flattens at `axis`, which is the same thing for the last axis), makes
// each op's input the graph output instead, drops the ops nothing else reads, and returns how
// many outputs it changed. Otherwise leaves the model alone and returns 0.
int exposeSoftmaxLogits(Model& model);

// Every float32 initializer of `to` takes the value of the initializer of `from` with the same
// name, shape and type (a trained copy back into the model it was cloned from).
void copyInitializers(const Model& from, Model& to);

}  // namespace nnc::train
