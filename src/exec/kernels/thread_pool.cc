#include "thread_pool.h"

#include <algorithm>
#include <chrono>
#include <thread>

namespace nnc::exec {
namespace {
thread_local bool in_job = false;

// Polls `ready` for up to `limit`; true when it held before the time ran out.
template <typename Ready>
bool spinUntil(Ready ready, std::chrono::microseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (int i = 0;; ++i) {
    if (ready()) return true;
    if ((i & 63) == 63) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::yield();  // lets another process have the core if it needs it
    }
  }
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

// Claims chunks of items under the lock (cheap next to the work of a chunk); a claim can never
// leak into the next job, which cannot start while this thread takes part in the current one.
void ThreadPool::drain(int64_t n, void (*fn)(void*, int64_t), void* arg) {
  in_job = true;
  const int64_t chunk = std::max<int64_t>(1, n / (4 * static_cast<int64_t>(workers_.size() + 1)));
  for (;;) {
    int64_t begin, end;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (fn_ != fn || arg_ != arg || next_ >= n) break;
      begin = next_;
      end = std::min(n, begin + chunk);
      next_ = end;
    }
    for (int64_t i = begin; i < end; ++i) fn(arg, i);
  }
  in_job = false;
}

void ThreadPool::run(int64_t n, void (*fn)(void*, int64_t), void* arg) {
  if (workers_.empty() || in_job || n <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(arg, i);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = fn, arg_ = arg, n_ = n, next_ = 0;
    open_ = true;
    ++generation_;
  }
  work_cv_.notify_all();
  drain(n, fn, arg);
  {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = false;  // late workers skip this job
  }
  spinUntil([this] { return participants_.load(std::memory_order_acquire) == 0; }, kSpin);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return participants_ == 0; });
  fn_ = nullptr, arg_ = nullptr;
}

void ThreadPool::workerLoop() {
  uint64_t seen = 0;
  for (;;) {
    void (*fn)(void*, int64_t);
    void* arg;
    int64_t n;
    // The next job usually comes within microseconds: poll before sleeping.
    spinUntil([&] { return generation_.load(std::memory_order_acquire) != seen; }, kSpin);
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (!open_) continue;
      ++participants_;
      fn = fn_, arg = arg_, n = n_;
    }
    drain(n, fn, arg);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--participants_ == 0) done_cv_.notify_all();
    }
  }
}

}  // namespace nnc::exec
