#pragma once
// Pieces of quantizeModel shared by its files (quantize.cc drives them): weight quantization
// (weight_quant.cc), the shared activation Q/DQ pairs (activation_qdq.cc) and the QOperator
// rewrite of one layer (qoperator_layer.cc). Internal to the quant module.

#include <map>
#include <string>

#include "nncompress/ir/batch_norm.h"
#include "nncompress/ir/graph.h"
#include "nncompress/quant/calibration.h"
#include "nncompress/quant/quantize.h"

namespace nnc::quant {

inline bool isQuantizableOp(const Node& n) {
  return n.isOp("Conv") || n.isOp("Gemm") || n.isOp("MatMul");
}

inline std::string displayName(const Node& n) {
  return n.name().empty() ? n.output(0)->name() : n.name();
}

inline void setType(Value* v, DType dtype, const Value* like) {
  ValueType t = like ? like->type() : ValueType{};
  t.dtype = dtype;
  v->setType(t);
}

// ---- weight_quant.cc ----

// Axis of the weight that indexes output channels, or -1 when the layer cannot take a quantized
// weight.
int outputChannelAxis(const Node& n);

// Axis along which a weight's input features run (the reduction axis).
int inputAxis(const Node& n);

struct WeightQuant {
  Value* dequantized = nullptr;
  float scale_min = 0, scale_max = 0;
};

// int8 (per-channel or per-tensor) symmetric weights behind a DequantizeLinear.
WeightQuant quantizeWeightInt8(Graph& g, Node& layer, int axis, bool per_channel, int bits,
                               bool balanced, const std::string& base);

// int4 symmetric weights with one scale per output channel (opset 21 per-axis DequantizeLinear):
// used when a layer's whole reduction fits in one block.
WeightQuant quantizeWeightPerChannelInt4(Graph& g, Node& layer, bool balanced,
                                         const std::string& base);

// int4 symmetric weights, blocked along the input axis (opset 21 DequantizeLinear block_size).
// Conv weights [O, I, kh, kw] are stored as [O, I*kh*kw] so blocks run over the whole reduction
// and reshaped back after dequantization.
WeightQuant quantizeWeightInt4(Graph& g, Node& layer, int64_t block_size, bool balanced,
                               const std::string& base);

// ---- gather_tables.cc ----

// Constant tables read only as rows by Gather (embeddings; kept float by no --exclude of their
// Gathers): int8 with one symmetric scale per row, each Gather rewritten to
// Mul(Cast(Gather(q, ids)), Gather(scale, ids)). One entry (op "Gather") per rewritten Gather.
std::vector<QuantizedLayer> quantizeGatherTables(Graph& g, const QuantizeOptions& options);
// The W and R weights of LSTM, GRU and RNN layers as int8 rows (the layers compute in float).
std::vector<QuantizedLayer> quantizeRecurrentWeights(Graph& g, const QuantizeOptions& options);

// ---- activation_qdq.cc ----

struct ActQuant {
  Value* quantized = nullptr;    // QuantizeLinear output
  Value* dequantized = nullptr;  // DequantizeLinear output
  Value* scale = nullptr;
  Value* zero_point = nullptr;
  QParams params;
};

// One QuantizeLinear (+ DequantizeLinear) per activation, shared by all its quantized readers.
StatusOr<ActQuant> activationQdq(Graph& g, const std::string& a,
                                 const std::map<std::string, Range>& ranges,
                                 const QuantizeOptions& options,
                                 std::map<std::string, ActQuant>& made);

// ---- qoperator_layer.cc ----

// QOperator: Conv -> QLinearConv, MatMul / Gemm (no transA, alpha 1) -> QLinearMatMul (+ Add of
// the float bias), each between a shared QuantizeLinear of its input and a DequantizeLinear of
// its output (which takes over the float output's name so every reader stays as it was).
// Weights int8 symmetric per output channel, Conv bias int32 with scale s_x * s_w[c].
StatusOr<QuantizedLayer> writeQOperatorLayer(Graph& g, const QuantTarget& t,
                                             const std::map<std::string, Range>& ranges,
                                             const QuantizeOptions& options,
                                             std::map<std::string, ActQuant>& made);

// ---- ort_float_guard.cc ----

// ONNX Runtime's WeightBiasQuantization (a basic-level optimization since 1.20) quantizes the
// float32 weight (per-tensor symmetric int8) and bias (int32) of every Conv, ConvTranspose and
// Gemm whose data input comes straight from a DequantizeLinear with a scalar scale: a layer kept
// float beside quantized ones would run per-tensor int8 there (the ppocr text-direction model:
// output SQNR 33 dB unoptimized, 19 dB optimized) while the executor and --auto-exclude see it
// float. Each such layer gets its own DequantizeLinear of the same quantized tensor whose scale
// and zero point are the same value repeated per channel (axis 1): the same numbers, which that
// rewrite does not match. Needs opset 13 (per-axis DequantizeLinear). Returns the layers guarded.
int guardFloatLayersFromOrtWeightQuantization(Graph& g);

}  // namespace nnc::quant
