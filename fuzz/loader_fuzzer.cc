// libFuzzer target for the ONNX loader (nnc::parseModel) with a save/load round-trip oracle.
//
// For every input:
//   1. parseModel(bytes) with default LoadOptions (ONNX shape inference on). External data is
//      resolved against a folder that does not exist, so such tensors fail cleanly.
//   2. If it loads: verifyModel must accept it (the loader promises a valid IR), serializeModel
//      must succeed, the serialized bytes must load again, and printModel of both models must be
//      identical. Any violation aborts, which libFuzzer reports as a crash.
// Errors returned as Status are fine: "never crash on a malformed model" is the property tested.
//
// Build and run: tools/fuzz_loader.sh [SECONDS]  (see fuzz/CMakeLists.txt).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "nncompress/ir/printer.h"
#include "nncompress/ir/verify.h"
#include "nncompress/onnx_io/model_io.h"

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "loader_fuzzer: ORACLE FAILURE: %s\n%s\n", what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

const std::filesystem::path& missingDir() {
  static const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / "nnc-fuzz-no-such-dir" / "really-not-there";
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  nnc::LoadOptions options;  // defaults: shape inference on
  auto first = nnc::parseModel(bytes, missingDir(), options);
  if (!first.isOk()) return 0;  // rejected cleanly: fine
  const nnc::Model& m1 = first.value();

  nnc::Status verified = nnc::verifyModel(m1);
  if (!verified.isOk())
    fail("verifyModel rejected a model that parseModel accepted", verified.toString());

  auto serialized = nnc::serializeModel(m1);
  if (!serialized.isOk()) fail("serializeModel failed", serialized.status().toString());

  const std::string p1 = nnc::printModel(m1);
  auto second = nnc::parseModel(serialized.value(), missingDir(), options);
  if (!second.isOk())
    fail("the serialized model does not load again", second.status().toString() + "\n" + p1);
  const std::string p2 = nnc::printModel(second.value());
  if (p1 != p2)
    fail("printModel differs after a save/load round trip",
         "--- first\n" + p1 + "--- second\n" + p2);
  return 0;
}
