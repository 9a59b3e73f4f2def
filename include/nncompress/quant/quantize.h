#pragma once
// Post-training quantization of a float model (after BatchNorm folding).
//
// QDQ: every quantized layer (Conv, Gemm, MatMul with a constant weight) reads
//   x  -> QuantizeLinear(s_x, z_x) -> DequantizeLinear -> layer
//   W_q (int8 initializer) -> DequantizeLinear(s_w[c], axis = output channel) -> layer
// The bias stays float (placement tensorrt; placement ort, the default, then adds output Q/DQ
// pairs and int32 biases: qdq_placement.h). One Q/DQ pair per activation tensor is shared by all
// its quantized consumers, so a tensor read by several layers (a Concat output, a residual branch)
// has one scale. Layers whose output reaches a graph output without another quantizable layer in
// between (the classifier) keep float activations (int8 weights) unless `quantize_last`.
// QOperator: QLinearConv / QLinearMatMul between a QuantizeLinear of the input and a
// DequantizeLinear of the output (float ops in between stay float).
// Weight-only: only the weights are stored as integers (int8, or int4 packed two per byte with
// a blocked DequantizeLinear, opset 21).
// Every format: constant tables read only by Gather on axis 0 (embeddings) become int8 with one
// scale per row, and each Gather reads Mul(Cast(Gather(q, ids)), Gather(scale, ids)): only the
// rows looked up are dequantized, so the table stays int8 in ONNX Runtime's memory too.
// `--exclude` of a Gather keeps its table float.

#include <map>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"
#include "nncompress/quant/calibration.h"
#include "nncompress/quant/qdq_placement.h"

namespace nnc::quant {

enum class QuantFormat { kQdq, kQOperator, kWeightsOnly, kInteger };
StatusOr<QuantFormat> parseQuantFormat(const std::string& name);
const char* quantFormatName(QuantFormat format);

struct QuantizeOptions {
  QuantFormat format = QuantFormat::kQdq;
  int weight_bits = 8;
  int act_bits = 8;
  bool per_channel = true;
  bool symmetric_activations = false;  // false: asymmetric uint8
  int64_t block_size = 64;             // int4 weights: elements per block along the input axis
  std::vector<std::string> exclude;    // node names or output names
  // Layers that keep a float input but int8 weights, as the classifier does (node names or
  // output names): auto-exclude's first resort, before keeping a layer entirely float.
  std::vector<std::string> float_activations;
  // Weight bits of single layers (by QuantTarget::name), overriding weight_bits (mixed
  // precision: compress lowers the least sensitive layers).
  std::map<std::string, int> layer_weight_bits;
  bool quantize_last = false;
  // Weight rounding: nearest with every channel's (int4: block's) error sum kept within half a
  // step (balanced_rounding.h), or plain nearest.
  bool balanced_rounding = true;
  // QDQ only: where the Q/DQ pairs go (qdq_placement.h).
  QdqPlacement placement = QdqPlacement::kOrt;
};

// A layer chosen for quantization, with the name of its activation input.
struct QuantTarget {
  Node* node = nullptr;
  std::string name;  // node name, or its output's name when unnamed
  std::vector<std::string> activation_inputs;
};

// Layers to quantize (graph order). Fails when an --exclude name matches no node.
StatusOr<std::vector<QuantTarget>> selectTargets(const Graph& graph,
                                                 const QuantizeOptions& options);

// Activations the format needs calibration ranges for (QOperator: also the layers' outputs; QDQ
// with the ort placement: also the outputs of the ops that become integer).
std::vector<std::string> valuesToCalibrate(const std::vector<QuantTarget>& targets,
                                           const QuantizeOptions& options);

struct QuantizedLayer {
  std::string name;
  std::string op;
  int weight_bits = 0;  // 0: float
  int act_bits = 0;
  float weight_scale_min = 0, weight_scale_max = 0;
  float act_scale = 0;
  std::string output;            // the layer's output in the float model
  std::string quantized_output;  // the same tensor in the quantized model
};

// Rewrites `model` in place. `activation_ranges` must hold every activation input of the
// targets (unless the format is weight-only).
StatusOr<std::vector<QuantizedLayer>> quantizeModel(
    Model& model, const std::vector<QuantTarget>& targets,
    const std::map<std::string, Range>& activation_ranges, const QuantizeOptions& options);

// Signal-to-quantization-noise ratio (dB) of tensors of `quantized` against the same tensors of
// `reference` on the first `limit` samples, keyed by the reference name.
using ValuePair = std::pair<std::string, std::string>;  // reference name, quantized name
StatusOr<std::map<std::string, double>> measureSqnr(const Model& reference, const Model& quantized,
                                                    data::SampleReader& reader,
                                                    const std::vector<ValuePair>& values,
                                                    int64_t limit, int64_t batch, int threads);

// Empirical bias correction (Nagel et al. 2019): for each quantized Conv/Gemm in order, add to its
// bias the per-channel mean of (float output - quantized output) over the first `limit`
// calibration samples, so quantization no longer shifts each channel's mean. Each layer is
// measured after the earlier layers were corrected. QOperator layers are skipped; an int32 bias
// behind a DequantizeLinear (ort placement) is corrected on its own grid.
// Samples run `batch` at a time (at most the model's static batch dimension).
// Returns the number of layers corrected.
StatusOr<int> correctBiases(const Model& reference, Model& quantized,
                            const std::vector<QuantizedLayer>& layers, data::SampleReader& reader,
                            int64_t limit, int64_t batch, int threads);

}  // namespace nnc::quant
