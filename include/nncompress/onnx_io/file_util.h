#pragma once
#include <filesystem>
#include <functional>
#include <string>

#include "nncompress/ir/status.h"

namespace nnc {

// Writes a file atomically: the content goes to a temp file in the same directory, which is
// renamed over `path` only when complete. On any failure the temp file is removed and `path` is
// left as it was.
Status writeFileAtomically(const std::filesystem::path& path,
                           const std::function<Status(int fd)>& write_content);
Status writeStringAtomically(const std::filesystem::path& path, const std::string& content);

// Reads a whole file; kIoError with the reason when it cannot.
StatusOr<std::string> readFile(const std::filesystem::path& path);

// Checks that `path` names an existing, non-empty regular file we can read.
Status checkReadableFile(const std::filesystem::path& path);

}  // namespace nnc
