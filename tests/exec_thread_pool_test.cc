// The executor's worker pool: every item of every job runs exactly once, whether the workers are
// still spinning from the previous job or asleep, and a job started from inside a job runs
// serially on the calling thread.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "../src/exec/kernels/thread_pool.h"

namespace nnc::exec {
namespace {

struct Counts {
  std::vector<std::atomic<int>> hits;
  explicit Counts(int64_t n) : hits(static_cast<size_t>(n)) {}
};

void countItem(void* arg, int64_t i) { static_cast<Counts*>(arg)->hits[i].fetch_add(1); }

TEST(ThreadPoolTest, EveryItemOnceAcrossBackToBackAndSleepingJobs) {
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    for (int job = 0; job < 3000; ++job) {
      const int64_t n = job % 7 == 0 ? 1 : (job * 37) % 500;
      Counts counts(n);
      pool.run(n, countItem, &counts);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(counts.hits[i].load(), 1)
            << "threads " << threads << " job " << job << " item " << i;
      // Now and then a pause longer than the spin, so the workers go to sleep between jobs.
      if (job % 500 == 499) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
}

struct Nested {
  ThreadPool* pool;
  std::atomic<int> inner_items{0};
  std::atomic<int> inner_on_other_thread{0};
};

void innerItem(void* arg, int64_t) {
  auto* n = static_cast<std::pair<Nested*, std::thread::id>*>(arg);
  n->first->inner_items.fetch_add(1);
  if (std::this_thread::get_id() != n->second) n->first->inner_on_other_thread.fetch_add(1);
}

void outerItem(void* arg, int64_t) {
  auto* nested = static_cast<Nested*>(arg);
  std::pair<Nested*, std::thread::id> inner{nested, std::this_thread::get_id()};
  nested->pool->run(10, innerItem, &inner);
}

TEST(ThreadPoolTest, JobsStartedInsideAJobRunSerially) {
  ThreadPool pool(2);
  Nested nested{&pool};
  pool.run(20, outerItem, &nested);
  EXPECT_EQ(nested.inner_items.load(), 200);
  EXPECT_EQ(nested.inner_on_other_thread.load(), 0);
}

}  // namespace
}  // namespace nnc::exec
