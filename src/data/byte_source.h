#pragma once
// ByteSource: random-access bytes of one data file. A plain file is read with pread on demand
// (so large .npy/IDX files stream); a gzip file is decompressed once into memory, since gzip
// streams cannot seek.

#include <cstdint>
#include <memory>
#include <string>

#include "nncompress/ir/status.h"

namespace nnc::data::internal {

class ByteSource {
 public:
  // kIoError when the file is missing, a directory, or unreadable; kInvalidArgument when it is
  // a corrupt gzip stream.
  static StatusOr<std::unique_ptr<ByteSource>> open(const std::string& path);
  ~ByteSource();
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  const std::string& path() const { return path_; }
  bool gzipped() const { return gzipped_; }
  // Size of the (decompressed) content.
  int64_t size() const { return size_; }
  // Reads [offset, offset + n); kIoError on a short read or when past the end.
  Status read(int64_t offset, int64_t n, void* out) const;
  // Up to n bytes from the start (fewer when the content is shorter).
  std::string head(int64_t n) const;
  // The whole content.
  StatusOr<std::string> readAll() const;

 private:
  ByteSource() = default;
  std::string path_;
  bool gzipped_ = false;
  int fd_ = -1;         // plain file
  std::string memory_;  // gzip content
  int64_t size_ = 0;
};

}  // namespace nnc::data::internal
