#include "byte_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace nnc::data::internal {
namespace {

std::string errnoText() { return std::strerror(errno); }

// Decompresses a whole gzip file (several concatenated members too, like gunzip).
StatusOr<std::string> gunzipFile(const std::string& path) {
  gzFile gz = gzopen(path.c_str(), "rb");
  if (gz == nullptr) return ioError(path + ": cannot open: " + errnoText());
  gzbuffer(gz, 1 << 17);
  std::string out;
  char chunk[1 << 16];
  while (true) {
    const int n = gzread(gz, chunk, sizeof(chunk));
    if (n < 0) {
      int code = 0;
      const std::string why = gzerror(gz, &code);
      gzclose_r(gz);
      if (code == Z_ERRNO) return ioError(path + ": read failed: " + errnoText());
      return invalidArgument(path + ": corrupt gzip data: " + why);
    }
    if (n == 0) break;
    out.append(chunk, static_cast<size_t>(n));
  }
  const int close_code = gzclose_r(gz);
  if (close_code == Z_BUF_ERROR)
    return invalidArgument(path + ": truncated gzip data (the file ends mid-stream)");
  if (close_code != Z_OK) return invalidArgument(path + ": corrupt gzip data");
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<ByteSource>> ByteSource::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ioError(path + ": cannot open: " + errnoText());
  std::unique_ptr<ByteSource> source(new ByteSource());
  source->path_ = path;
  source->fd_ = fd;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ioError(path + ": cannot stat: " + errnoText());
  if (S_ISDIR(st.st_mode)) return ioError(path + ": is a directory, expected a file");
  if (!S_ISREG(st.st_mode)) return ioError(path + ": is not a regular file");
  source->size_ = st.st_size;
  unsigned char magic[2] = {0, 0};
  if (source->size_ >= 2) NNC_RETURN_IF_ERROR(source->read(0, 2, magic));
  if (magic[0] == 0x1f && magic[1] == 0x8b) {
    NNC_ASSIGN_OR_RETURN(source->memory_, gunzipFile(path));
    ::close(source->fd_);
    source->fd_ = -1;
    source->gzipped_ = true;
    source->size_ = static_cast<int64_t>(source->memory_.size());
  }
  return source;
}

ByteSource::~ByteSource() {
  if (fd_ >= 0) ::close(fd_);
}

Status ByteSource::read(int64_t offset, int64_t n, void* out) const {
  if (offset < 0 || n < 0 || offset > size_ || n > size_ - offset) {
    return ioError(path_ + ": read of " + std::to_string(n) + " bytes at offset " +
                   std::to_string(offset) + " is past the end (" + std::to_string(size_) +
                   " bytes)");
  }
  if (gzipped_) {
    if (n > 0) std::memcpy(out, memory_.data() + offset, static_cast<size_t>(n));
    return Status::ok();
  }
  char* dst = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t got = ::pread(fd_, dst, static_cast<size_t>(n), offset);
    if (got < 0) {
      if (errno == EINTR) continue;
      return ioError(path_ + ": read failed: " + errnoText());
    }
    if (got == 0) return ioError(path_ + ": file shrank while reading");
    dst += got;
    offset += got;
    n -= got;
  }
  return Status::ok();
}

std::string ByteSource::head(int64_t n) const {
  std::string out(static_cast<size_t>(std::min(n, size_)), '\0');
  if (!read(0, static_cast<int64_t>(out.size()), out.data()).isOk()) return {};
  return out;
}

StatusOr<std::string> ByteSource::readAll() const {
  if (gzipped_) return memory_;
  std::string out(static_cast<size_t>(size_), '\0');
  NNC_RETURN_IF_ERROR(read(0, size_, out.data()));
  return out;
}

}  // namespace nnc::data::internal
