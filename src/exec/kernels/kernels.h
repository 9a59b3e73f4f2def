#pragma once
// Internal to exec: one registration function per kernel file. Adding an op is one
// registry.add() call in the file that implements it.

#include "gemm.h"
#include "nncompress/exec/kernel.h"

namespace nnc::exec {

void registerConvKernels(KernelRegistry& r);         // Conv, ConvTranspose
void registerMatMulKernels(KernelRegistry& r);       // Gemm, MatMul
void registerNormKernels(KernelRegistry& r);         // BatchNormalization, LRN, MVN, ...
void registerElementwiseKernels(KernelRegistry& r);  // Add, Sub, Mul, Div, activations, Clip...
void registerPoolKernels(KernelRegistry& r);         // MaxPool, AveragePool, Global*Pool, MaxUnpool
void registerTensorKernels(KernelRegistry& r);       // Concat, Split, Slice, Pad, Reshape, ...
void registerReduceKernels(KernelRegistry& r);       // ReduceMean, ..., Softmax
void registerResizeKernels(KernelRegistry& r);       // Resize
void registerQuantKernels(KernelRegistry& r);        // QuantizeLinear, QLinearConv, ...
void registerScatterKernels(KernelRegistry& r);      // ScatterND
void registerDetectionKernels(KernelRegistry& r);    // NonMaxSuppression, RoiAlign
void registerGridSampleKernels(KernelRegistry& r);   // GridSample
void registerEinsumKernels(KernelRegistry& r);       // Einsum
void registerSelectionKernels(KernelRegistry& r);    // TopK, NonZero, GatherND
void registerSequenceKernels(KernelRegistry& r);     // CumSum, OneHot, Compress, ReverseSequence
void registerLinalgKernels(KernelRegistry& r);       // Det
void registerRecurrentKernels(KernelRegistry& r);    // RNN, GRU, LSTM
void registerControlFlowKernels(KernelRegistry& r);  // If

// A Conv (node `conv`'s attributes) with given weight and bias (BatchNormalization folded in by
// the planner; bias may be empty) and an activation in the GEMM epilogue. Takes only X.
std::unique_ptr<Kernel> makeFusedConv(const Node& conv, Tensor weight, std::vector<float> bias,
                                      const Epilogue& act);

}  // namespace nnc::exec
