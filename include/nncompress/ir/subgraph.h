#pragma once
// Subgraph attributes (If/Loop/Scan bodies) stay serialized GraphProtos in the IR: parsing them
// needs protobuf, which only onnx_io links. onnx_io installs the parser when it finishes loading
// a model; subgraphs only come from files, so it is installed wherever one exists.

#include <string>

#include "nncompress/ir/graph.h"

namespace nnc {

// The body `serialized` as a Model with `parent`'s opsets. Names it reads from enclosing scopes
// (at any depth) become graph inputs after its formal inputs, with unknown types.
using SubgraphParser = StatusOr<Model> (*)(const std::string& serialized, const Model& parent);

void setSubgraphParser(SubgraphParser parser);
// kUnsupported when no parser is installed.
StatusOr<Model> parseSubgraph(const std::string& serialized, const Model& parent);

}  // namespace nnc
