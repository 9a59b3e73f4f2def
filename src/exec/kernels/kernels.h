#pragma once
// Internal to exec: one registration function per kernel file. Adding an op is one
// registry.add() call in the file that implements it.

#include "nncompress/exec/kernel.h"

namespace nnc::exec {

void registerConvKernels(KernelRegistry& r);         // Conv, ConvTranspose
void registerMatMulKernels(KernelRegistry& r);       // Gemm, MatMul
void registerNormKernels(KernelRegistry& r);         // BatchNormalization
void registerElementwiseKernels(KernelRegistry& r);  // Add, Sub, Mul, Div, activations, Clip...
void registerPoolKernels(KernelRegistry& r);         // MaxPool, AveragePool, Global*Pool
void registerTensorKernels(KernelRegistry& r);       // Concat, Split, Slice, Pad, Reshape, ...
void registerReduceKernels(KernelRegistry& r);       // ReduceMean, ..., Softmax
void registerResizeKernels(KernelRegistry& r);       // Resize
void registerQuantKernels(KernelRegistry& r);        // QuantizeLinear, QLinearConv, ...

}  // namespace nnc::exec
