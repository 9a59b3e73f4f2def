#include "nncompress/onnx_io/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace nnc {

Status checkReadableFile(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return ioError(std::string("cannot open: ") + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return ioError("is a directory, not a file");
  if (!S_ISREG(st.st_mode)) return ioError("is not a regular file");
  if (st.st_size == 0) return invalidModel("file is empty");
  if (::access(path.c_str(), R_OK) != 0)
    return ioError(std::string("cannot read: ") + std::strerror(errno));
  return Status::ok();
}

StatusOr<std::string> readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ioError(std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return ioError("read failed");
  return ss.str();
}

Status writeFileAtomically(const std::filesystem::path& path,
                           const std::function<Status(int fd)>& write_content) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    return ioError("output directory '" + dir.string() + "' does not exist");
  if (std::filesystem::is_directory(path, ec))
    return ioError("output path '" + path.string() + "' is a directory");
  // Hidden temp name beside the target, so the final rename stays on one filesystem.
  std::string temp_name = ".";
  temp_name.append(path.filename().string()).append(".tmp.XXXXXX");
  std::string tmpl = (dir / temp_name).string();
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0)
    return ioError("cannot create a file in '" + dir.string() + "': " + std::strerror(errno));
  ::fchmod(fd, 0644);
  Status status = write_content(fd);
  if (status.isOk() && ::fsync(fd) != 0)
    status = ioError(std::string("fsync failed: ") + std::strerror(errno));
  if (::close(fd) != 0 && status.isOk())
    status = ioError(std::string("close failed: ") + std::strerror(errno));
  if (status.isOk() && ::rename(tmpl.c_str(), path.c_str()) != 0)
    status = ioError("cannot rename into '" + path.string() + "': " + std::strerror(errno));
  if (!status.isOk()) ::unlink(tmpl.c_str());
  return status;
}

Status writeStringAtomically(const std::filesystem::path& path, const std::string& content) {
  return writeFileAtomically(path, [&](int fd) -> Status {
    size_t done = 0;
    while (done < content.size()) {
      const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ioError(std::string("write failed: ") + std::strerror(errno));
      }
      done += static_cast<size_t>(n);
    }
    return Status::ok();
  });
}

}  // namespace nnc
