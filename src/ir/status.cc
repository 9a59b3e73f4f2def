#include "nncompress/ir/status.h"

namespace nnc {

const char* statusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid argument";
    case StatusCode::kInvalidModel:
      return "invalid model";
    case StatusCode::kUnsupported:
      return "unsupported";
    case StatusCode::kShapeMismatch:
      return "shape mismatch";
    case StatusCode::kIoError:
      return "I/O error";
    case StatusCode::kTargetNotMet:
      return "target not met";
    case StatusCode::kInternal:
      return "internal error";
  }
  return "unknown";
}

std::string Status::toString() const {
  if (isOk()) return "ok";
  return std::string(statusCodeName(code_)) + ": " + message_;
}

void checkFailed(const char* file, int line, const char* condition, const std::string& message) {
  std::fprintf(stderr,
               "nncompress: internal error at %s:%d: check failed: %s: %s (please report)\n", file,
               line, condition, message.c_str());
  std::abort();
}

}  // namespace nnc
