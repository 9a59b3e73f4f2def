#pragma once
// How the tests' hand-built graphs start: a float32 input of unknown shape.

#include <string>
#include <vector>

#include "nncompress/ir/graph.h"

namespace nnc::testing {

inline Value* addFloatInput(Graph& g, const std::string& name = "x") {
  Value* v = g.createUniqueValue(name);
  ValueType type;
  type.dtype = DType::kFloat32;
  v->setType(type);
  g.addInput(v);
  return v;
}

// An input of a given type and dims (N symbolic, say), named exactly `name`.
inline Value* addTypedInput(Graph& g, const std::string& name, DType dtype, std::vector<Dim> dims) {
  Value* v = g.createValue(name).value();
  v->setType({dtype, std::move(dims)});
  g.addInput(v);
  return v;
}

}  // namespace nnc::testing
