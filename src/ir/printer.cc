#include "nncompress/ir/printer.h"

#include <cstdio>
#include <sstream>

namespace nnc {
namespace {

// FNV-1a: a cheap, stable digest so printed weights differ when contents differ.
uint64_t digest(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string tensorSummary(const Tensor& t) {
  char buf[32];
  uint64_t h = digest(t.bytes());
  for (const std::string& s : t.strings()) h ^= digest(s) + 0x9e3779b97f4a7c15ull + (h << 6);
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(dtypeName(t.dtype())) + shapeToString(t.shape()) + "#" + buf;
}

std::string formatFloat(float f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", f);
  return buf;
}

std::string formatAttribute(const Attribute& a) {
  std::ostringstream os;
  os << a.name << "=";
  if (!a.ref_attr_name.empty()) return os.str() + "@" + a.ref_attr_name;
  switch (a.kind) {
    case AttrKind::kFloat:
      os << formatFloat(a.f);
      break;
    case AttrKind::kInt:
      os << a.i;
      break;
    case AttrKind::kString:
      os << '"' << a.s << '"';
      break;
    case AttrKind::kTensor:
      os << tensorSummary(a.tensors.at(0));
      break;
    case AttrKind::kFloats:
      os << "[";
      for (size_t i = 0; i < a.floats.size(); ++i) os << (i ? "," : "") << formatFloat(a.floats[i]);
      os << "]";
      break;
    case AttrKind::kInts:
      os << "[";
      for (size_t i = 0; i < a.ints.size(); ++i) os << (i ? "," : "") << a.ints[i];
      os << "]";
      break;
    case AttrKind::kStrings:
      os << "[";
      for (size_t i = 0; i < a.strings.size(); ++i)
        os << (i ? "," : "") << '"' << a.strings[i] << '"';
      os << "]";
      break;
    case AttrKind::kTensors:
      os << "[";
      for (size_t i = 0; i < a.tensors.size(); ++i)
        os << (i ? "," : "") << tensorSummary(a.tensors[i]);
      os << "]";
      break;
    default: {
      char buf[20];
      uint64_t h = 0;
      for (const std::string& s : a.opaque) h = h * 31 + digest(s);
      std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
      os << "<" << attrKindName(a.kind) << " x" << a.opaque.size() << " #" << buf << ">";
    }
  }
  return os.str();
}

std::string valueRef(const Value* v) { return v ? "%" + v->name() : "<none>"; }

}  // namespace

std::string printGraph(const Graph& graph) {
  std::ostringstream os;
  os << "graph " << graph.name() << " {\n";
  for (const Value* v : graph.inputs())
    os << "  input " << valueRef(v) << ": " << v->type().toString() << "\n";
  for (const Value* v : graph.initializers())
    os << "  initializer " << valueRef(v) << ": " << tensorSummary(*v->initializer()) << "\n";
  for (const auto& n : graph.nodes()) {
    os << "  ";
    for (size_t i = 0; i < n->numOutputs(); ++i) os << (i ? ", " : "") << valueRef(n->output(i));
    os << " = ";
    if (!n->isDefaultDomain()) os << n->domain() << ".";
    os << n->opType();
    if (!n->attributes().empty()) {
      os << "[";
      for (size_t i = 0; i < n->attributes().size(); ++i)
        os << (i ? ", " : "") << formatAttribute(n->attributes()[i]);
      os << "]";
    }
    os << "(";
    for (size_t i = 0; i < n->numInputs(); ++i) os << (i ? ", " : "") << valueRef(n->input(i));
    os << ")";
    if (!n->name().empty()) os << "  # " << n->name();
    os << "\n";
  }
  for (const Value* v : graph.outputs())
    os << "  output " << valueRef(v) << ": " << v->type().toString() << "\n";
  os << "}\n";
  return os.str();
}

std::string printModel(const Model& model) {
  std::ostringstream os;
  os << "model ir_version=" << model.ir_version << " opsets=";
  for (size_t i = 0; i < model.opset_imports.size(); ++i)
    os << (i ? "," : "")
       << (model.opset_imports[i].domain.empty() ? "ai.onnx" : model.opset_imports[i].domain) << ":"
       << model.opset_imports[i].version;
  os << " producer=" << model.producer_name << "/" << model.producer_version << "\n";
  os << printGraph(*model.graph);
  return os.str();
}

}  // namespace nnc
