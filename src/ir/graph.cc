#include "nncompress/ir/graph.h"

#include <algorithm>
#include <cstdlib>
#include <queue>

namespace nnc {

// ---------------------------------------------------------------- ValueType

bool ValueType::operator==(const ValueType& o) const {
  if (dtype != o.dtype || opaque_type != o.opaque_type || denotation != o.denotation) return false;
  if (shape.has_value() != o.shape.has_value()) return false;
  if (!shape) return true;
  return std::equal(shape->begin(), shape->end(), o.shape->begin(), o.shape->end(),
                    [](const Dim& a, const Dim& b) { return a.identical(b); });
}

std::optional<Shape> ValueType::staticShape() const {
  if (!shape) return std::nullopt;
  Shape s;
  s.reserve(shape->size());
  for (const Dim& d : *shape) {
    if (!d.isKnown()) return std::nullopt;
    s.push_back(d.value);
  }
  return s;
}

std::string ValueType::toString() const {
  if (!isTensor()) return "<non-tensor>";
  std::string s = dtypeName(dtype);
  if (!shape) return s + "[?]";
  s += "[";
  for (size_t i = 0; i < shape->size(); ++i) {
    if (i) s += ",";
    const Dim& d = (*shape)[i];
    s += d.isKnown() ? std::to_string(d.value) : (d.param.empty() ? "?" : d.param);
  }
  return s + "]";
}

// ---------------------------------------------------------------- Value

bool Value::isGraphOutput() const { return graph_->isOutput(this); }

void Value::setInitializer(Tensor tensor) {
  NNC_CHECK(producer_ == nullptr, "initializer on a value with a producer: " + name_);
  ValueType t;
  t.dtype = tensor.dtype();
  std::vector<Dim> dims;
  for (int64_t d : tensor.shape()) dims.push_back(Dim::known(d));
  t.shape = std::move(dims);
  type_ = std::move(t);
  const bool was_initializer = initializer_ != nullptr;
  initializer_ = std::make_unique<Tensor>(std::move(tensor));
  if (!was_initializer) graph_->initializer_seq_[this] = graph_->next_initializer_seq_++;
}

const Tensor* Value::constantData() const {
  if (initializer_) return initializer_.get();
  if (producer_ && producer_->isOp("Constant")) {
    const Attribute* a = producer_->findAttribute("value");
    if (a && a->kind == AttrKind::kTensor && !a->tensors.empty()) return &a->tensors.front();
  }
  // Exporters deduplicate equal weights as Identity(initializer): still a constant.
  if (producer_ && producer_->isOp("Identity") && producer_->input(0))
    return producer_->input(0)->constantData();
  return nullptr;
}

// ---------------------------------------------------------------- Node

void Node::setInput(size_t i, Value* value) {
  NNC_CHECK(i < inputs_.size(), "setInput index out of range on " + op_type_);
  if (inputs_[i]) Graph::removeUse(inputs_[i], Use{this, static_cast<int>(i)});
  inputs_[i] = value;
  if (value) value->uses_.push_back(Use{this, static_cast<int>(i)});
}

void Node::addInput(Value* value) {
  inputs_.push_back(value);
  if (value) value->uses_.push_back(Use{this, static_cast<int>(inputs_.size() - 1)});
}

void Node::truncateInputs(size_t n) {
  while (inputs_.size() > n) {
    Value* v = inputs_.back();
    if (v) Graph::removeUse(v, Use{this, static_cast<int>(inputs_.size() - 1)});
    inputs_.pop_back();
  }
}

void Node::addImplicitInput(Value* value) {
  NNC_CHECK(value != nullptr, "null implicit input");
  if (std::find(implicit_inputs_.begin(), implicit_inputs_.end(), value) != implicit_inputs_.end())
    return;
  implicit_inputs_.push_back(value);
  value->uses_.push_back(Use{this, Use::kImplicitUse});
}

const Attribute* Node::findAttribute(std::string_view name) const {
  for (const Attribute& a : attributes_)
    if (a.name == name) return &a;
  return nullptr;
}

void Node::setAttribute(Attribute attribute) {
  for (Attribute& a : attributes_) {
    if (a.name == attribute.name) {
      a = std::move(attribute);
      return;
    }
  }
  attributes_.push_back(std::move(attribute));
}

bool Node::removeAttribute(std::string_view name) {
  auto it = std::find_if(attributes_.begin(), attributes_.end(),
                         [&](const Attribute& a) { return a.name == name; });
  if (it == attributes_.end()) return false;
  attributes_.erase(it);
  return true;
}

int64_t Node::intAttr(std::string_view name, int64_t fallback) const {
  const Attribute* a = findAttribute(name);
  return a && a->kind == AttrKind::kInt ? a->i : fallback;
}
float Node::floatAttr(std::string_view name, float fallback) const {
  const Attribute* a = findAttribute(name);
  return a && a->kind == AttrKind::kFloat ? a->f : fallback;
}
std::string Node::stringAttr(std::string_view name, std::string fallback) const {
  const Attribute* a = findAttribute(name);
  return a && a->kind == AttrKind::kString ? a->s : fallback;
}
std::vector<int64_t> Node::intsAttr(std::string_view name, std::vector<int64_t> fallback) const {
  const Attribute* a = findAttribute(name);
  return a && a->kind == AttrKind::kInts ? a->ints : fallback;
}

// ---------------------------------------------------------------- Graph

StatusOr<Value*> Graph::createValue(const std::string& name) {
  if (name.empty()) return invalidModel("a value must have a non-empty name");
  if (values_by_name_.count(name))
    return invalidModel("value name '" + name + "' is defined twice");
  values_.push_back(std::unique_ptr<Value>(new Value(this, name)));
  Value* v = values_.back().get();
  values_by_name_.emplace(name, v);
  return v;
}

Status Graph::renameValue(Value* value, const std::string& name) {
  if (name.empty()) return invalidModel("a value must have a non-empty name");
  if (values_by_name_.count(name)) return invalidModel("value name '" + name + "' is taken");
  values_by_name_.erase(value->name_);
  value->name_ = name;
  values_by_name_.emplace(name, value);
  return Status::ok();
}

Value* Graph::createUniqueValue(const std::string& base) {
  std::string name = base.empty() ? "v" : base;
  for (int suffix = 1; values_by_name_.count(name); ++suffix)
    name = base + "_" + std::to_string(suffix);
  auto v = createValue(name);
  NNC_CHECK(v.isOk(), v.status().toString());
  return v.value();
}

Value* Graph::addInitializer(const std::string& base_name, Tensor tensor) {
  Value* v = createUniqueValue(base_name);
  v->setInitializer(std::move(tensor));
  return v;
}

Value* Graph::constantToInitializer(Node* n) {
  if (!n->isOp("Constant") || n->numOutputs() != 1 || n->attributes().size() != 1) return nullptr;
  const Attribute& a = n->attributes()[0];
  if (a.name != "value" || a.kind != AttrKind::kTensor || a.tensors.size() != 1) return nullptr;
  Value* y = n->output(0);
  if (y->isGraphOutput()) return nullptr;
  Value* init = addInitializer(y->name() + "_c", a.tensors[0]);
  init->setType(y->type());
  replaceAllUsesWith(y, init);
  eraseNode(n);
  return init;
}

Value* Graph::findValue(std::string_view name) const {
  auto it = values_by_name_.find(std::string(name));
  return it == values_by_name_.end() ? nullptr : it->second;
}

std::vector<Value*> Graph::initializers() const {
  std::vector<Value*> out;
  for (const auto& v : values_)
    if (v->isInitializer()) out.push_back(v.get());
  std::stable_sort(out.begin(), out.end(), [this](const Value* a, const Value* b) {
    return initializer_seq_.at(a) < initializer_seq_.at(b);
  });
  return out;
}

void Graph::eraseValue(Value* value) {
  NNC_CHECK(value->producer_ == nullptr && value->uses_.empty() && !isOutput(value),
            "eraseValue on a value still in use: " + value->name());
  inputs_.erase(std::remove(inputs_.begin(), inputs_.end(), value), inputs_.end());
  initializer_seq_.erase(value);
  values_by_name_.erase(value->name());
  auto it = std::find_if(values_.begin(), values_.end(),
                         [&](const std::unique_ptr<Value>& p) { return p.get() == value; });
  NNC_CHECK(it != values_.end(), "eraseValue: value not in this graph");
  values_.erase(it);
}

void Graph::addInput(Value* value) {
  value->is_graph_input_ = true;
  inputs_.push_back(value);
}

void Graph::removeInput(Value* value) {
  auto it = std::find(inputs_.begin(), inputs_.end(), value);
  if (it == inputs_.end()) return;
  inputs_.erase(it);
  value->is_graph_input_ = false;
}

void Graph::addOutput(Value* value) { outputs_.push_back(value); }

void Graph::setOutput(size_t i, Value* value) {
  NNC_CHECK(i < outputs_.size(), "setOutput index out of range");
  outputs_[i] = value;
}

bool Graph::isOutput(const Value* value) const {
  return std::find(outputs_.begin(), outputs_.end(), value) != outputs_.end();
}

Node* Graph::createNode(std::string op_type, std::string domain) {
  return new Node(this, next_node_id_++, std::move(op_type), std::move(domain));
}

void Graph::attachOutputs(Node* node, const std::vector<std::string>& output_names) {
  for (const std::string& name : output_names) {
    if (name.empty()) {
      node->outputs_.push_back(nullptr);
      continue;
    }
    Value* v = createUniqueValue(name);
    v->producer_ = node;
    v->output_index_ = static_cast<int>(node->outputs_.size());
    node->outputs_.push_back(v);
  }
}

Node* Graph::addNode(std::string op_type, const std::vector<Value*>& inputs,
                     const std::vector<std::string>& output_names, std::string domain) {
  Node* node = createNode(std::move(op_type), std::move(domain));
  nodes_.push_back(std::unique_ptr<Node>(node));
  for (Value* v : inputs) node->addInput(v);
  attachOutputs(node, output_names);
  return node;
}

Node* Graph::insertNodeBefore(const Node* position, std::string op_type,
                              const std::vector<Value*>& inputs,
                              const std::vector<std::string>& output_names, std::string domain) {
  auto it = std::find_if(nodes_.begin(), nodes_.end(),
                         [&](const std::unique_ptr<Node>& p) { return p.get() == position; });
  NNC_CHECK(it != nodes_.end(), "insertNodeBefore: position not in graph");
  Node* node = createNode(std::move(op_type), std::move(domain));
  nodes_.insert(it, std::unique_ptr<Node>(node));
  for (Value* v : inputs) node->addInput(v);
  attachOutputs(node, output_names);
  return node;
}

void Graph::removeUse(Value* value, Use use) {
  auto& uses = value->uses_;
  auto it = std::find(uses.begin(), uses.end(), use);
  NNC_CHECK(it != uses.end(), "use-list out of sync for " + value->name());
  uses.erase(it);
}

void Graph::eraseNode(Node* node) {
  for (Value* out : node->outputs_) {
    if (!out) continue;
    NNC_CHECK(out->uses_.empty() && !isOutput(out),
              "eraseNode: output '" + out->name() + "' still in use");
  }
  for (size_t i = 0; i < node->inputs_.size(); ++i)
    if (node->inputs_[i]) removeUse(node->inputs_[i], Use{node, static_cast<int>(i)});
  for (Value* v : node->implicit_inputs_) removeUse(v, Use{node, Use::kImplicitUse});
  for (Value* out : node->outputs_) {
    if (!out) continue;
    out->producer_ = nullptr;
    eraseValue(out);
  }
  auto it = std::find_if(nodes_.begin(), nodes_.end(),
                         [&](const std::unique_ptr<Node>& p) { return p.get() == node; });
  NNC_CHECK(it != nodes_.end(), "eraseNode: node not in graph");
  nodes_.erase(it);
}

void Graph::replaceAllUsesWith(Value* from, Value* to) {
  if (from == to) return;
  const std::vector<Use> uses = from->uses_;
  for (const Use& use : uses) {
    if (use.input_index == Use::kImplicitUse) {
      auto& imp = use.node->implicit_inputs_;
      std::replace(imp.begin(), imp.end(), from, to);
      to->uses_.push_back(use);
    } else {
      use.node->inputs_[use.input_index] = to;
      to->uses_.push_back(use);
    }
  }
  from->uses_.clear();
  std::replace(outputs_.begin(), outputs_.end(), from, to);
}

size_t Graph::removeDeadNodes() {
  size_t removed = 0;
  bool changed = true;
  while (changed) {
    changed = false;
    for (size_t i = nodes_.size(); i-- > 0;) {
      Node* n = nodes_[i].get();
      bool live = false;
      for (Value* out : n->outputs_)
        if (out && (out->hasUses() || isOutput(out))) live = true;
      if (live) continue;
      eraseNode(n);
      ++removed;
      changed = true;
    }
  }
  // An initializer listed as a graph input too (IR < 4 models list them all) is a default its
  // caller may override; with no reader, neither its value nor an override means anything.
  std::vector<Value*> dead;
  for (const auto& v : values_)
    if (v->isInitializer() && !v->hasUses() && !isOutput(v.get())) dead.push_back(v.get());
  for (Value* v : dead) eraseValue(v);
  return removed;
}

StatusOr<std::vector<Node*>> Graph::topologicalOrder() const {
  std::unordered_map<const Node*, size_t> position;
  for (size_t i = 0; i < nodes_.size(); ++i) position[nodes_[i].get()] = i;
  std::vector<int> pending(nodes_.size(), 0);
  auto forEachDep = [&](const Node* n, auto&& fn) {
    for (Value* v : n->inputs_)
      if (v && v->producer_) fn(v->producer_);
    for (Value* v : n->implicit_inputs_)
      if (v->producer_) fn(v->producer_);
  };
  for (size_t i = 0; i < nodes_.size(); ++i)
    forEachDep(nodes_[i].get(), [&](const Node*) { ++pending[i]; });
  // Min-heap on stored position: the result is the stored order whenever that is valid.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (pending[i] == 0) ready.push(i);
  std::vector<Node*> order;
  order.reserve(nodes_.size());
  while (!ready.empty()) {
    const size_t i = ready.top();
    ready.pop();
    Node* n = nodes_[i].get();
    order.push_back(n);
    auto release = [&](const Value* out) {
      if (!out) return;
      for (const Use& u : out->uses_) {
        const size_t j = position.at(u.node);
        if (--pending[j] == 0) ready.push(j);
      }
    };
    for (Value* out : n->outputs_) release(out);
  }
  if (order.size() != nodes_.size()) {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (pending[i] > 0) {
        const Node* n = nodes_[i].get();
        return invalidModel("graph has a cycle through node '" + n->name() + "' (" + n->opType() +
                            ")");
      }
    }
  }
  return order;
}

Status Graph::sortTopologically() {
  NNC_ASSIGN_OR_RETURN(std::vector<Node*> order, topologicalOrder());
  std::unordered_map<const Node*, size_t> rank;
  for (size_t i = 0; i < order.size(); ++i) rank[order[i]] = i;
  std::sort(nodes_.begin(), nodes_.end(),
            [&](const std::unique_ptr<Node>& a, const std::unique_ptr<Node>& b) {
              return rank.at(a.get()) < rank.at(b.get());
            });
  return Status::ok();
}

// ---------------------------------------------------------------- Model

namespace {

// A positive decimal of at most 6 digits, or 0.
int64_t smallCount(std::string_view digits) {
  if (digits.empty() || digits.size() > 6) return 0;
  int64_t k = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return 0;
    k = k * 10 + (c - '0');
  }
  return k;
}

}  // namespace

ScaledSymbol scaledSymbol(const std::string& param) {
  ScaledSymbol s{param};
  std::string_view rest = param;
  if (const size_t star = rest.find('*'); star != std::string_view::npos) {
    const int64_t k = smallCount(rest.substr(0, star));
    if (k < 1) return s;
    s.factor = k;
    rest.remove_prefix(star + 1);
  }
  if (const size_t sign = rest.find_last_of("+-"); sign != std::string_view::npos && sign > 0) {
    if (const int64_t b = smallCount(rest.substr(sign + 1)); b >= 1) {
      s.offset = rest[sign] == '-' ? -b : b;
      rest = rest.substr(0, sign);
    }
  }
  if (const size_t slash = rest.rfind('/'); slash != std::string_view::npos && slash > 0) {
    if (const int64_t k = smallCount(rest.substr(slash + 1)); k >= 1) {
      s.divisor = k;
      rest = rest.substr(0, slash);
    }
  }
  if (rest.empty()) return ScaledSymbol{param};
  s.name = std::string(rest);
  return s;
}

Dim ScaledSymbol::dim() const {
  std::string spelled = factor == 1 ? name : std::to_string(factor) + "*" + name;
  if (divisor != 1) spelled += "/" + std::to_string(divisor);
  if (offset != 0) spelled += (offset > 0 ? "+" : "-") + std::to_string(std::abs(offset));
  return Dim::symbol(spelled);
}

int64_t batchLimit(const Model& model, int64_t requested) {
  for (const Value* in : model.graph->inputs()) {
    if (in->isInitializer() || !in->type().shape || in->type().shape->empty()) continue;
    const Dim& first = in->type().shape->front();
    if (first.isKnown()) requested = std::min(requested, std::max<int64_t>(first.value, 1));
  }
  return requested;
}

int64_t Model::opsetVersion(std::string_view domain) const {
  const bool is_default = domain.empty() || domain == "ai.onnx";
  for (const OpsetImport& imp : opset_imports) {
    const bool imp_default = imp.domain.empty() || imp.domain == "ai.onnx";
    if ((is_default && imp_default) || imp.domain == domain) return imp.version;
  }
  return -1;
}

size_t demoteInitializerInputs(Model& model) {
  std::vector<Value*> demote;
  for (Value* v : model.graph->inputs())
    if (v->isInitializer()) demote.push_back(v);
  for (Value* v : demote) model.graph->removeInput(v);
  if (!demote.empty()) model.ir_version = std::max<int64_t>(model.ir_version, 4);
  return demote.size();
}

}  // namespace nnc
