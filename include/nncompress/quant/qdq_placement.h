#pragma once
// Where Q/DQ pairs go in a QDQ model (--qdq-placement).
//
// tensorrt: Q/DQ only on the activation inputs of the quantized layers (weights behind a
//   DequantizeLinear, float bias, float outputs). TensorRT fuses that; ONNX Runtime does not
//   (its QDQ selectors need a QuantizeLinear as the only reader of a layer's output) and runs the
//   model as float plus conversions.
// ort: the node groups ONNX Runtime's QDQ selectors turn into integer kernels
//   (onnxruntime/core/optimizer/qdq_transformer/selectors_actions):
//     DQ(x), DQ(W int8), DQ(b int32, scale s_x s_w[c], zero point 0) -> Conv | Gemm -> [Relu|Clip]
//       -> Q          becomes QLinearConv / QGemm (MatMul: QLinearMatMul)
//     DQ(a), DQ(b) -> Add | Mul -> [Relu|Clip] -> Q            QLinearAdd / QLinearMul
//     DQ(x)... -> Concat -> Q                                   QLinearConcat
//     DQ(x) -> AveragePool | GlobalAveragePool | Sigmoid | LeakyRelu -> Q      QLinear*
//     DQ(x) -> MaxPool | Reshape | Flatten | Transpose | ... -> Q   the same op on uint8: the Q
//       must use the DQ's scale and zero point, so the output shares the input's parameters
//   A Relu, or a Clip(0, M), between a quantized op and its Q is absorbed: its output is the
//   tensor quantized (zero point 0, so saturation at 0 is the Relu; range <= M, so the Clip's
//   upper bound is never reached inside the grid). Every reader of a quantized tensor, float ops
//   included, reads its DequantizeLinear, so the Q is the producer's only reader.
//   Which ops become integer: every quantized layer (8-bit weights and activations), and each op
//   of the table above whose data inputs are all quantized tensors and whose output is read by at
//   least one integer op (so the classifier head stays float when the last layer does).

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"
#include "nncompress/quant/calibration.h"

namespace nnc::quant {

enum class QdqPlacement { kOrt, kTensorRt };
StatusOr<QdqPlacement> parseQdqPlacement(const std::string& name);
const char* qdqPlacementName(QdqPlacement placement);

struct QuantTarget;
struct QuantizeOptions;

// One tensor that gets a QuantizeLinear -> DequantizeLinear pair.
struct PlannedTensor {
  std::string name;
  std::string params_of;  // the tensor whose range sets its scale (itself unless shared)
};

struct OrtQdqPlan {
  std::vector<PlannedTensor> tensors;  // graph order
  std::vector<Node*> integer_ops;      // non-layer ops that become integer (graph order)
  std::vector<Node*> layers;           // Conv / Gemm / MatMul whose bias becomes int32
};

// Plans the ort layout on the float graph (before quantizeModel rewrites it). Empty when the
// options do not allow it (other formats, tensorrt placement, k-bit activations).
OrtQdqPlan planOrtQdq(const Graph& graph, const std::vector<QuantTarget>& targets,
                      const QuantizeOptions& options);

// Tensors of the plan to calibrate (all of them: see qdq_placement.cc).
std::vector<std::string> plannedCalibrationNames(const OrtQdqPlan& plan);

// `ranges` with every shared tensor given the range of the tensor it shares parameters with, so
// every Q/DQ of it (also the ones quantizeModel makes for layer inputs) gets the same scale.
StatusOr<std::map<std::string, Range>> resolvePlannedRanges(
    const OrtQdqPlan& plan, const std::map<std::string, Range>& ranges);

struct OrtQdqStats {
  int tensors = 0;            // Q/DQ pairs the plan added or reused
  int int32_biases = 0;       // float biases written as int32 + DequantizeLinear
  int bias_scale_raised = 0;  // weight channels whose scale was raised to keep the bias in int32
  int activations_absorbed = 0;
};

// Applies the plan to the model quantizeModel has rewritten (tensorrt layout): adds the output
// Q/DQ pairs, routes every reader through them, and turns float biases into int32.
StatusOr<OrtQdqStats> applyOrtQdqPlan(Model& model, const OrtQdqPlan& plan,
                                      const std::map<std::string, Range>& ranges,
                                      const QuantizeOptions& options);

// A layer's bias when it is DequantizeLinear(int32 constant, scale) (the ort layout), as floats;
// nullopt otherwise. setInt32Bias writes new float values back onto the same int32 grid.
std::optional<std::vector<float>> int32BiasValues(const Node& layer);
Status setInt32Bias(Node& layer, const std::vector<float>& bias);

}  // namespace nnc::quant
