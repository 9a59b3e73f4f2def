#pragma once
// Hand-written test models: the ONNX text format (onnx/defs/parser.h) loaded into the IR.

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include <string>

#include "nncompress/onnx_io/model_io.h"

namespace nnc::testing {

// A parse or load failure fails the calling test (the model is then empty).
inline Model parseModelText(const std::string& text) {
  onnx::ModelProto proto;
  onnx::OnnxParser parser(text.c_str());
  auto st = parser.Parse(proto);
  EXPECT_TRUE(st.IsOK()) << st.ErrorMessage() << "\n" << text;
  auto model = parseModel(proto.SerializeAsString());
  EXPECT_TRUE(model.isOk()) << model.status().toString();
  return model.isOk() ? std::move(model).value() : Model{};
}

}  // namespace nnc::testing
