#pragma once
// Typed node attributes, kept in a vector (not a map) so order is deterministic.

#include <string>
#include <vector>

#include "nncompress/ir/tensor.h"

namespace nnc {

enum class AttrKind {
  kFloat,
  kInt,
  kString,
  kTensor,
  kGraph,  // subgraph: kept serialized (see Attribute::opaque)
  kSparseTensor,
  kTypeProto,
  kFloats,
  kInts,
  kStrings,
  kTensors,
  kGraphs,
  kSparseTensors,
  kTypeProtos,
};

const char* attrKindName(AttrKind kind);

struct Attribute {
  std::string name;
  AttrKind kind = AttrKind::kInt;
  float f = 0.f;
  int64_t i = 0;
  std::string s;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::vector<Tensor> tensors;  // one for kTensor
  // Serialized GraphProto / SparseTensorProto / TypeProto: one for the singular kinds, one per
  // element for the plural kinds. The IR does not interpret them; they round-trip unchanged.
  std::vector<std::string> opaque;
  std::string ref_attr_name;  // inside functions: refers to the caller's attribute
  std::string doc_string;

  static Attribute makeInt(std::string name, int64_t v);
  static Attribute makeFloat(std::string name, float v);
  static Attribute makeString(std::string name, std::string v);
  static Attribute makeInts(std::string name, std::vector<int64_t> v);
  static Attribute makeFloats(std::string name, std::vector<float> v);
  static Attribute makeTensor(std::string name, Tensor t);

  bool operator==(const Attribute& other) const;
};

}  // namespace nnc
