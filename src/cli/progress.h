#pragma once
// Progress of long steps on stderr: a bar with ETA when stderr is a terminal, a log line every
// few seconds otherwise (CI logs stay readable).

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include <spdlog/spdlog.h>

namespace nnc::cli {

class Progress {
 public:
  explicit Progress(std::string label)
      : label_(std::move(label)), tty_(::isatty(STDERR_FILENO) != 0) {}
  ~Progress() {
    if (tty_ && drawn_) std::fprintf(stderr, "\n");
  }
  void update(int64_t done, int64_t total) {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double eta = done > 0 ? elapsed * (total - done) / done : 0;
    if (tty_) {
      const int width = 30, filled = total > 0 ? static_cast<int>(width * done / total) : width;
      std::fprintf(stderr, "\r%s [%s%s] %lld/%lld  %.0fs left ", label_.c_str(),
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                   static_cast<long long>(done), static_cast<long long>(total), eta);
      std::fflush(stderr);
      drawn_ = true;
    } else if (done == total || std::chrono::duration<double>(now - last_log_).count() >= 5.0) {
      spdlog::info("{}: {}/{} ({:.0f}s elapsed, {:.0f}s left)", label_, done, total, elapsed, eta);
      last_log_ = now;
    }
  }

 private:
  std::string label_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_log_ = start_;
};

}  // namespace nnc::cli
