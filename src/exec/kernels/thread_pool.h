#pragma once
// A small pool of worker threads that spin only briefly (kSpin) between jobs, then block.
// OpenMP's long spin-waiting barriers collapse when other processes share the cores: a worker
// descheduled mid-barrier stalls every parallel region for a whole time slice. Here the caller
// takes part in each job and never waits for a worker that has not woken up yet: it only waits for
// items already started. The short spin keeps back-to-back jobs of a small model (one per layer,
// tens of microseconds each) from paying a futex sleep and wake-up every time.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace nnc::exec {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads - 1 workers: the caller is the other one
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Runs fn(arg, i) for every i in [0, n) on the caller and the workers; returns when all are
  // done. Called from inside a job, runs serially.
  void run(int64_t n, void (*fn)(void*, int64_t), void* arg);

 private:
  void workerLoop();
  void drain(int64_t n, void (*fn)(void*, int64_t), void* arg);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  // How long a worker polls for the next job, and the caller for the last participants, before
  // blocking.
  static constexpr std::chrono::microseconds kSpin{100};

  // Written under mu_; the atomics are also polled without it while spinning.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> participants_{0};
  bool open_ = false;  // the current job still admits workers
  bool stop_ = false;
  void (*fn_)(void*, int64_t) = nullptr;
  void* arg_ = nullptr;
  int64_t n_ = 0;
  int64_t next_ = 0;  // next unclaimed item of the current job
};

}  // namespace nnc::exec
