#pragma once
// Errors about a library option: "<option>: <what is wrong>", where <option> is the options
// field (e.g. round_to of AllocationOptions) and the rest says what is wrong in library terms.
// Library code never names a command-line flag; the CLI replaces the option with the flag of
// the command that ran, when it has one (cli/app.cc).

#include <string>

#include "nncompress/ir/status.h"

namespace nnc {

inline Status invalidOption(const std::string& option, const std::string& message) {
  return invalidArgument(option + ": " + message);
}
inline Status unsupportedOption(const std::string& option, const std::string& message) {
  return unsupported(option + ": " + message);
}

}  // namespace nnc
