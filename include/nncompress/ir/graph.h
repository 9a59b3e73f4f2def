#pragma once
// The graph IR. A Graph owns its Nodes and Values; each Value knows its producer (or that it is a
// graph input / initializer) and the list of its uses, so consumers are found in O(1). Only Graph
// and Node methods edit edges, so use-lists cannot go stale.

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nncompress/ir/attribute.h"
#include "nncompress/ir/tensor.h"

namespace nnc {

class Graph;
class Node;

// One dimension of a value's shape: a known size, or a symbol (e.g. "N"), or unknown.
struct Dim {
  int64_t value = -1;  // >= 0 when known
  std::string param;   // symbolic name when value < 0 (may be empty: unknown)
  bool isKnown() const { return value >= 0; }
  // Provably the same size: equal known values, or the same non-empty symbol. Two unknown dims
  // are never equal (an unknown batch and an unknown -1 may differ at run time).
  bool operator==(const Dim& o) const {
    if (isKnown() || o.isKnown()) return value == o.value;
    return !param.empty() && param == o.param;
  }
  // Spelled the same (for round trips): unknown equals unknown.
  bool identical(const Dim& o) const { return value == o.value && param == o.param; }
  static Dim known(int64_t v) { return Dim{v, {}}; }
  static Dim symbol(std::string s) { return Dim{-1, std::move(s)}; }
};

// A dim that follows an input symbol: factor * name / divisor + offset, spelled "4*N" (attention
// heads folded into the batch), "H/2" (a side after a stride-2 layer), "T/2-2" (then an unpadded
// Conv), "2*W+1". A symbol spelled any other way s is {1, 1, 0, s}.
struct ScaledSymbol {
  std::string name;
  int64_t factor = 1;
  int64_t divisor = 1;
  int64_t offset = 0;
  // Its size when the symbol is `size`: a fraction rounds up, as after a padded strided layer;
  // never below 1 (a side of 1 halved still counts 1).
  int64_t at(int64_t size) const {
    return std::max<int64_t>(1, (size * factor + divisor - 1) / divisor + offset);
  }
  Dim dim() const;  // spelled as above
};
ScaledSymbol scaledSymbol(const std::string& param);

// Type of a value. Tensors have a dtype and maybe a shape; other ONNX types (sequences, maps,
// optionals, sparse tensors) are kept as the serialized TypeProto so they survive a round trip.
struct ValueType {
  DType dtype = DType::kUndefined;
  std::optional<std::vector<Dim>> shape;  // nullopt: rank unknown
  std::string opaque_type;                // non-empty: serialized onnx TypeProto of a non-tensor
  std::string denotation;
  // Structural (Dim::identical): a type read back equals the type written.
  bool operator==(const ValueType& o) const;
  bool isTensor() const { return opaque_type.empty(); }
  // All dims known: the static shape.
  std::optional<Shape> staticShape() const;
  std::string toString() const;
};

struct Use {
  Node* node = nullptr;
  int input_index = 0;  // kImplicitUse for references from a subgraph attribute
  static constexpr int kImplicitUse = -1;
  bool operator==(const Use&) const = default;
};

class Value {
 public:
  const std::string& name() const { return name_; }
  Graph* graph() const { return graph_; }

  const ValueType& type() const { return type_; }
  void setType(ValueType type) { type_ = std::move(type); }
  DType dtype() const { return type_.dtype; }
  std::optional<Shape> staticShape() const { return type_.staticShape(); }

  // A graph output keeps the type its file declares (the model's interface); dims the shape
  // probe proved where that type has none are kept here, for counting costs only.
  const std::optional<std::vector<Dim>>& provenDims() const { return proven_dims_; }
  void setProvenDims(std::vector<Dim> dims) { proven_dims_ = std::move(dims); }

  Node* producer() const { return producer_; }
  int outputIndex() const { return output_index_; }
  const std::vector<Use>& uses() const { return uses_; }
  bool hasUses() const { return !uses_.empty(); }

  bool isGraphInput() const { return is_graph_input_; }
  bool isGraphOutput() const;
  bool isInitializer() const { return initializer_ != nullptr; }
  const Tensor* initializer() const { return initializer_.get(); }
  Tensor* mutableInitializer() { return initializer_.get(); }
  void setInitializer(Tensor tensor);

  // Data known before run time: an initializer, the output of a Constant node with a `value`
  // tensor, or Identity of either. Weights held in Constant nodes are weights too. nullptr when
  // not constant.
  const Tensor* constantData() const;

  // True when the original file listed this value in graph.value_info (kept on export).
  bool listedInValueInfo() const { return listed_in_value_info_; }
  void setListedInValueInfo(bool listed) { listed_in_value_info_ = listed; }
  const std::string& docString() const { return doc_string_; }
  void setDocString(std::string doc) { doc_string_ = std::move(doc); }

 private:
  friend class Graph;
  friend class Node;
  Value(Graph* graph, std::string name) : graph_(graph), name_(std::move(name)) {}

  std::optional<std::vector<Dim>> proven_dims_;
  Graph* graph_;
  std::string name_;
  ValueType type_;
  Node* producer_ = nullptr;
  int output_index_ = -1;
  std::vector<Use> uses_;
  std::unique_ptr<Tensor> initializer_;
  bool is_graph_input_ = false;
  bool listed_in_value_info_ = false;
  std::string doc_string_;
};

class Node {
 public:
  const std::string& opType() const { return op_type_; }
  const std::string& domain() const { return domain_; }
  bool isOp(std::string_view op) const { return op_type_ == op && isDefaultDomain(); }
  bool isDefaultDomain() const { return domain_.empty() || domain_ == "ai.onnx"; }
  const std::string& name() const { return name_; }
  void setName(std::string name) { name_ = std::move(name); }
  const std::string& docString() const { return doc_string_; }
  void setDocString(std::string doc) { doc_string_ = std::move(doc); }
  Graph* graph() const { return graph_; }
  // Creation sequence number: stable across runs, used to break ties in topological order.
  uint64_t id() const { return id_; }

  // Inputs may hold nullptr for an omitted optional input (ONNX's empty name).
  const std::vector<Value*>& inputs() const { return inputs_; }
  Value* input(size_t i) const { return i < inputs_.size() ? inputs_[i] : nullptr; }
  size_t numInputs() const { return inputs_.size(); }
  void setInput(size_t i, Value* value);
  void addInput(Value* value);
  // Drops trailing inputs so that numInputs() == n.
  void truncateInputs(size_t n);

  const std::vector<Value*>& outputs() const { return outputs_; }
  Value* output(size_t i = 0) const { return i < outputs_.size() ? outputs_[i] : nullptr; }
  size_t numOutputs() const { return outputs_.size(); }

  // Outer-scope values read inside subgraph attributes (If/Loop/Scan bodies). They take part in
  // use-lists and ordering but are not written as node inputs.
  const std::vector<Value*>& implicitInputs() const { return implicit_inputs_; }
  void addImplicitInput(Value* value);

  const std::vector<Attribute>& attributes() const { return attributes_; }
  std::vector<Attribute>& mutableAttributes() { return attributes_; }
  const Attribute* findAttribute(std::string_view name) const;
  bool hasAttribute(std::string_view name) const { return findAttribute(name) != nullptr; }
  // Replaces an attribute of the same name or appends one.
  void setAttribute(Attribute attribute);
  bool removeAttribute(std::string_view name);
  int64_t intAttr(std::string_view name, int64_t fallback) const;
  float floatAttr(std::string_view name, float fallback) const;
  std::string stringAttr(std::string_view name, std::string fallback) const;
  std::vector<int64_t> intsAttr(std::string_view name, std::vector<int64_t> fallback = {}) const;

 private:
  friend class Graph;
  Node(Graph* graph, uint64_t id, std::string op_type, std::string domain)
      : graph_(graph), id_(id), op_type_(std::move(op_type)), domain_(std::move(domain)) {}

  Graph* graph_;
  uint64_t id_;
  std::string op_type_;
  std::string domain_;
  std::string name_;
  std::string doc_string_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  std::vector<Value*> implicit_inputs_;
  std::vector<Attribute> attributes_;
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  const std::string& name() const { return name_; }
  void setName(std::string name) { name_ = std::move(name); }
  const std::string& docString() const { return doc_string_; }
  void setDocString(std::string doc) { doc_string_ = std::move(doc); }

  // ---- values ----
  // Creates a value with exactly this name; fails if the name is taken.
  StatusOr<Value*> createValue(const std::string& name);
  // Creates a value named `base`, or base_1, base_2, ... if taken.
  Value* createUniqueValue(const std::string& base);
  Value* addInitializer(const std::string& base_name, Tensor tensor);
  // A Constant node holding just one `value` tensor, whose output is not a graph output, becomes
  // an initializer (named after that output + "_c", same type) read by every former use; the
  // node is erased. nullptr, and nothing changed, for any other node.
  Value* constantToInitializer(Node* constant);
  Value* findValue(std::string_view name) const;
  // Gives `value` a new name; fails if the name is taken.
  Status renameValue(Value* value, const std::string& name);
  const std::vector<std::unique_ptr<Value>>& values() const { return values_; }
  // Values holding initializers, in the order they were added.
  std::vector<Value*> initializers() const;
  // Removes a value that has no producer and no uses (e.g. an unused initializer).
  void eraseValue(Value* value);

  // ---- inputs and outputs ----
  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& outputs() const { return outputs_; }
  void addInput(Value* value);
  // The value stays (with its uses); it is just no longer a graph input.
  void removeInput(Value* value);
  void addOutput(Value* value);
  void setOutput(size_t i, Value* value);
  bool isOutput(const Value* value) const;

  // ---- nodes ----
  // Nodes in their stored order: topological after load and after sortTopologically().
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  size_t numNodes() const { return nodes_.size(); }
  // Appends a node whose outputs are new values named after `output_names` (made unique).
  // An empty output name makes an omitted optional output.
  Node* addNode(std::string op_type, const std::vector<Value*>& inputs,
                const std::vector<std::string>& output_names, std::string domain = "");
  // Same, inserted just before `position` in node order.
  Node* insertNodeBefore(const Node* position, std::string op_type,
                         const std::vector<Value*>& inputs,
                         const std::vector<std::string>& output_names, std::string domain = "");
  // Removes a node whose outputs have no uses and are not graph outputs.
  void eraseNode(Node* node);
  // Every use of `from` (node inputs, implicit inputs, graph outputs) now reads `to`.
  void replaceAllUsesWith(Value* from, Value* to);
  // Drops nodes whose outputs are unused and not graph outputs, and unused initializers.
  // Returns the number of nodes removed.
  size_t removeDeadNodes();

  // Stable topological order: among ready nodes, the one stored first comes first.
  // Fails (naming a node on the cycle) if the graph has a cycle.
  StatusOr<std::vector<Node*>> topologicalOrder() const;
  Status sortTopologically();

  // Opaque graph parts we keep but do not interpret (serialized protos).
  std::vector<std::string>& sparseInitializers() { return sparse_initializers_; }
  const std::vector<std::string>& sparseInitializers() const { return sparse_initializers_; }
  std::vector<std::string>& quantizationAnnotations() { return quantization_annotations_; }
  const std::vector<std::string>& quantizationAnnotations() const {
    return quantization_annotations_;
  }
  // Sizes of symbolic input dims (by symbol) at which per-sample costs (MACs) are counted, from
  // --input-shape or the data; a symbol not here counts 1. Kept in memory, never written.
  const std::map<std::string, int64_t>& countingSizes() const { return counting_sizes_; }
  void setCountingSizes(std::map<std::string, int64_t> sizes) {
    counting_sizes_ = std::move(sizes);
  }

 private:
  friend class Node;
  friend class Value;
  Node* createNode(std::string op_type, std::string domain);
  void attachOutputs(Node* node, const std::vector<std::string>& output_names);
  static void removeUse(Value* value, Use use);

  std::string name_;
  std::string doc_string_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::unique_ptr<Value>> values_;
  std::unordered_map<std::string, Value*> values_by_name_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  std::vector<std::string> sparse_initializers_;
  std::vector<std::string> quantization_annotations_;
  std::map<std::string, int64_t> counting_sizes_;
  uint64_t next_node_id_ = 0;
  uint64_t next_initializer_seq_ = 0;
  std::unordered_map<const Value*, uint64_t> initializer_seq_;
};

struct OpsetImport {
  std::string domain;
  int64_t version = 0;
  bool operator==(const OpsetImport&) const = default;
};

// A whole model: the graph plus the file-level facts we keep untouched.
struct Model {
  int64_t ir_version = 8;
  std::vector<OpsetImport> opset_imports;
  std::string producer_name;
  std::string producer_version;
  std::string domain;
  int64_t model_version = 0;
  std::string doc_string;
  std::vector<std::pair<std::string, std::string>> metadata_props;
  std::vector<std::string> functions;      // serialized FunctionProto, kept as they were
  std::vector<std::string> training_info;  // serialized TrainingInfoProto
  std::unique_ptr<Graph> graph = std::make_unique<Graph>();

  // Opset version of a domain ("" and "ai.onnx" are the same), or -1 if not imported.
  int64_t opsetVersion(std::string_view domain = "") const;

  // A copy that shares tensor bytes until written (copy-on-write) and is laid out as the model
  // would be after a save and reload (src/ir/clone.cc). Subgraphs and functions are opaque and
  // copied as they are.
  Model clone() const;
};

// `requested`, or less where a graph input fixes its first (batch) dimension below it: many
// exported models hard-code batch 1 in their Reshapes, so they run a sample at a time.
int64_t batchLimit(const Model& model, int64_t requested);

// Initializers that are also listed as graph inputs (the IR < 4 convention: an input with a
// default) become plain constants, and the IR version is raised to 4 where needed. Compression
// changes these tensors' shapes, so feeding them would be wrong anyway; keeping them as inputs
// would also keep the original tensor beside the pruned one. Returns how many were demoted.
size_t demoteInitializerInputs(Model& model);

}  // namespace nnc
