#include "nncompress/ir/attribute.h"

#include <cstring>

namespace nnc {

const char* attrKindName(AttrKind kind) {
  switch (kind) {
    case AttrKind::kFloat:
      return "float";
    case AttrKind::kInt:
      return "int";
    case AttrKind::kString:
      return "string";
    case AttrKind::kTensor:
      return "tensor";
    case AttrKind::kGraph:
      return "graph";
    case AttrKind::kSparseTensor:
      return "sparse_tensor";
    case AttrKind::kTypeProto:
      return "type_proto";
    case AttrKind::kFloats:
      return "floats";
    case AttrKind::kInts:
      return "ints";
    case AttrKind::kStrings:
      return "strings";
    case AttrKind::kTensors:
      return "tensors";
    case AttrKind::kGraphs:
      return "graphs";
    case AttrKind::kSparseTensors:
      return "sparse_tensors";
    case AttrKind::kTypeProtos:
      return "type_protos";
  }
  return "unknown";
}

Attribute Attribute::makeInt(std::string name, int64_t v) {
  Attribute a;
  a.name = std::move(name);
  a.kind = AttrKind::kInt;
  a.i = v;
  return a;
}
Attribute Attribute::makeFloat(std::string name, float v) {
  Attribute a;
  a.name = std::move(name);
  a.kind = AttrKind::kFloat;
  a.f = v;
  return a;
}
Attribute Attribute::makeString(std::string name, std::string v) {
  Attribute a;
  a.name = std::move(name);
  a.kind = AttrKind::kString;
  a.s = std::move(v);
  return a;
}
Attribute Attribute::makeInts(std::string name, std::vector<int64_t> v) {
  Attribute a;
  a.name = std::move(name);
  a.kind = AttrKind::kInts;
  a.ints = std::move(v);
  return a;
}
Attribute Attribute::makeFloats(std::string name, std::vector<float> v) {
  Attribute a;
  a.name = std::move(name);
  a.kind = AttrKind::kFloats;
  a.floats = std::move(v);
  return a;
}
Attribute Attribute::makeTensor(std::string name, Tensor t) {
  Attribute a;
  a.name = std::move(name);
  a.kind = AttrKind::kTensor;
  a.tensors.push_back(std::move(t));
  return a;
}

bool Attribute::operator==(const Attribute& o) const {
  // Floats compare bitwise so NaN attributes round-trip as equal.
  const bool floats_equal =
      floats.size() == o.floats.size() &&
      (floats.empty() || std::memcmp(floats.data(), o.floats.data(), floats.size() * 4) == 0);
  return name == o.name && kind == o.kind && std::memcmp(&f, &o.f, sizeof f) == 0 && i == o.i &&
         s == o.s && floats_equal && ints == o.ints && strings == o.strings &&
         tensors == o.tensors && opaque == o.opaque && ref_attr_name == o.ref_attr_name &&
         doc_string == o.doc_string;
}

}  // namespace nnc
