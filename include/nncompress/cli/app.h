#pragma once
// The command line: `nncompress <subcommand> ...`. Library code never sees argv; this module
// turns flags into option structs, runs the command and maps its Status to an exit code.

#include "nncompress/ir/status.h"

namespace nnc::cli {

// Documented exit codes (docs/cli.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitTargetNotMet = 1,
  kExitUsage = 2,
  kExitInvalidModel = 3,
  kExitIo = 4,
  kExitInternal = 5,
};

int exitCodeFor(const Status& status);
int run(int argc, char** argv);

}  // namespace nnc::cli
