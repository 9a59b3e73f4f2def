#pragma once
// Internal to onnx_io: conversions between ONNX protos and IR objects.

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"

namespace nnc::onnx_io_internal {

// Converts a TensorProto (raw, typed or external data) to a Tensor. `proto` may be consumed
// (raw_data is moved out). External data is read relative to `base_dir`.
StatusOr<Tensor> tensorFromProto(onnx::TensorProto& proto, const std::filesystem::path& base_dir,
                                 int64_t* external_bytes_read);
// Writes a tensor into `proto` as raw_data (strings as string_data). With `release`, the
// tensor's bytes are moved into the proto.
void tensorToProto(Tensor& tensor, bool release, onnx::TensorProto* proto);

ValueType valueTypeFromProto(const onnx::TypeProto& type);
void valueTypeToProto(const ValueType& type, onnx::TypeProto* proto);

StatusOr<Model> modelFromProto(onnx::ModelProto& proto, const std::filesystem::path& base_dir,
                               int64_t* external_bytes_read);
// An If/Loop/Scan body as a Model (see ir/subgraph.h): outer-scope names become graph inputs.
StatusOr<Model> subgraphModelFromProto(const std::string& serialized, const Model& parent);
// With `release`, tensor bytes move out of `model` (which is then left without weights).
void modelToProto(Model& model, bool release, onnx::ModelProto* proto);

// Schema checks and crash guards that must precede libonnx shape inference (model_io.cc).
Status verifyNodesAgainstSchemas(const onnx::ModelProto& proto);
void installShapeInferenceGuards();

// model_checks.cc
// Opsets newer than we know (kUnsupported naming the domain and version).
Status checkOpsetsKnown(const Model& model);
// The ONNX checker on a file's proto as loaded (skipped above libonnx's opsets and for external
// data, which the checker would look for relative to the working folder).
Status checkProtoOnLoad(const onnx::ModelProto& proto);
// Strict ONNX shape inference on the model's current (declared) types; a note when it cannot.
Status inferStrictlyOnIr(const Model& model, std::string* note);
// The ONNX checker and strict shape inference on a proto about to be written. The proto's large
// weights are moved out and back during the call (not copied); its content is unchanged.
Status validateProto(onnx::ModelProto& proto, std::vector<std::string>* notes);

}  // namespace nnc::onnx_io_internal
