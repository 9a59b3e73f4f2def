#pragma once
// Status / StatusOr: the failure channel of every library function. Exceptions are not used for
// expected failures (bad input); CHECK is for bugs only.

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace nnc {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // usage: a flag or parameter the caller got wrong
  kInvalidModel,     // the model file is malformed or inconsistent
  kUnsupported,      // a well-formed model uses something we do not handle
  kShapeMismatch,
  kIoError,       // missing file, unreadable input, unwritable output
  kTargetNotMet,  // a requested target (accuracy, size) could not be reached
  kInternal,      // a bug
};

const char* statusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return Status(); }

  bool isOk() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefixes context, e.g. "while loading model.onnx: <message>".
  Status withContext(const std::string& context) const {
    if (isOk()) return *this;
    if (message_.compare(0, context.size() + 2, context + ": ") == 0) return *this;  // named
    return Status(code_, context + ": " + message_);
  }
  std::string toString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status invalidModel(std::string m) { return {StatusCode::kInvalidModel, std::move(m)}; }
inline Status unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
inline Status shapeMismatch(std::string m) { return {StatusCode::kShapeMismatch, std::move(m)}; }
inline Status ioError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status internalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.isOk()) status_ = internalError("StatusOr constructed from an ok Status");
  }
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design

  bool isOk() const { return status_.isOk(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

[[noreturn]] void checkFailed(const char* file, int line, const char* condition,
                              const std::string& message);

}  // namespace nnc

#define NNC_RETURN_IF_ERROR(expr)                \
  do {                                           \
    ::nnc::Status nnc_status_ = (expr);          \
    if (!nnc_status_.isOk()) return nnc_status_; \
  } while (0)

#define NNC_CONCAT_INNER(a, b) a##b
#define NNC_CONCAT(a, b) NNC_CONCAT_INNER(a, b)
#define NNC_ASSIGN_OR_RETURN(lhs, expr) \
  NNC_ASSIGN_OR_RETURN_IMPL(NNC_CONCAT(nnc_statusor_, __LINE__), lhs, expr)
#define NNC_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.isOk()) return tmp.status();           \
  lhs = std::move(tmp).value()

// For programming errors only: aborts with a message that asks for a bug report.
#define NNC_CHECK(cond, msg)                                           \
  do {                                                                 \
    if (!(cond)) ::nnc::checkFailed(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)
