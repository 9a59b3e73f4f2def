#pragma once
// Parameter and multiply-accumulate counts per layer and for the whole model.
//
// Params: elements of every weight tensor (initializers and tensors held in Constant nodes),
// except int64/bool/string tensors, which are shape constants, axes and masks, not weights, and
// tensors read only at setting inputs (Clip bounds, Pad values, Resize scales, Pow exponents, ...;
// the table in model_stats.cc), which configure an op rather than hold learnt values.
// A tensor read by several nodes counts once in the total.
// MACs, for one sample (symbolic dimensions such as the batch count as 1, "4*N" as 4):
//   Conv           out_elements * (C_in / group) * prod(kernel)
//   ConvTranspose  in_elements  * (C_out / group) * prod(kernel)
//   Gemm           M * N * K
//   MatMul         out_elements * K
//   RNN/GRU/LSTM   seq_length * (elements of W + elements of R)
// (and their quantized forms: QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger).

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"

namespace nnc {

struct LayerStats {
  const Node* node = nullptr;
  int64_t params = 0;                 // elements of this node's weight inputs
  std::optional<int64_t> macs;        // nullopt: op has MACs but shapes are unknown
  bool has_macs_rule = false;         // the op is one we count MACs for
  std::optional<Shape> weight_shape;  // shape of the main weight, when there is one
};

struct ModelStats {
  std::vector<LayerStats> layers;  // nodes with weights or MACs, in topological order
  int64_t params = 0;
  int64_t macs = 0;
  int64_t layers_with_unknown_macs = 0;
  std::map<std::string, int64_t> weight_bytes_by_dtype;
  std::map<std::string, int64_t> op_histogram;  // "Conv" or "domain.Op" -> count
};

bool isWeightTensor(const Tensor& tensor);
// True when input `index` of `node` is a setting (Clip bounds, Pad values, Reshape shape, ...),
// not a learnt weight: its tensor is not counted as parameters.
bool isSettingInput(const Node& node, size_t index);
// Shape with unknown dims read as 1 and symbolic ones at the graph's counting size (1 when it has
// none: one sample), "k*N" as k times it, "H/k" as a k-th (at least 1); nullopt if rank is
// unknown.
std::optional<Shape> oneSampleShape(const Value& value);
// Where the MAC rules read a node's input and output shapes: by default the model's own
// (oneSampleShape); analysis/plan_cost overrides them with the shapes a keep-plan would give.
class ShapeSource {
 public:
  virtual ~ShapeSource() = default;
  virtual std::optional<Shape> input(const Node& node, size_t i) const;
  virtual std::optional<Shape> output(const Node& node, size_t i) const;
};
// MACs of one node, or nullopt if the op has no MAC rule or its shapes are unknown.
std::optional<int64_t> nodeMacs(const Node& node, bool* has_rule = nullptr,
                                const ShapeSource* shapes = nullptr);
ModelStats computeModelStats(const Graph& graph);
// Symbolic input dims past the first axis without a counting size, which MACs count as 1
// ("input: H, W"; inputs separated by "; "); empty when there are none.
std::string symbolicInputDims(const Graph& graph);

}  // namespace nnc
