// compress/task_list.cpp: the calibration driver's scheduler for one layer's per-group and per-Linear
// work. Each task runs alone on one thread: BLAS, LAPACK and ATen's parallel loops called inside a
// parallel region stay single-threaded, and for matrices of 192 to 1536 columns whole tasks on separate
// threads beat every small op spread over all threads (docs/performance.md). A task's arithmetic does
// not depend on the schedule, so neither do the bits.
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include <ATen/Parallel.h>

#include "internal.hpp"

namespace kick::compress::detail {

void run_task_list(const std::vector<ListedTask>& tasks, bool side_by_side) {
  const int64_t n = static_cast<int64_t>(tasks.size());
  for (int64_t i = 0; i < n; ++i)
    if (tasks[i].after >= i) fail("run_task_list: task {} waits for task {}, which is not earlier in the list", i, tasks[i].after);
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), n);
  if (!side_by_side || workers < 2) {
    for (const auto& task : tasks) task.run();
    return;
  }
  std::mutex mutex;
  std::vector<char> taken(static_cast<size_t>(n), 0);
  std::vector<std::atomic<bool>> finished(static_cast<size_t>(n));
  for (auto& f : finished) f.store(false);
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  // The first task in list order that nobody has taken and whose predecessor has finished; -1 when all
  // are taken (this worker is done); -2 when the remaining ones still wait.
  auto take = [&]() -> int64_t {
    std::lock_guard<std::mutex> lock(mutex);
    bool remaining = false;
    for (int64_t i = 0; i < n; ++i) {
      if (taken[i]) continue;
      remaining = true;
      if (tasks[i].after < 0 || finished[tasks[i].after].load(std::memory_order_acquire)) {
        taken[i] = 1;
        return i;
      }
    }
    return remaining ? -2 : -1;
  };
  at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t worker = begin; worker < end; ++worker) {
      while (!failed.load()) {
        const int64_t i = take();
        if (i == -1) break;
        if (i == -2) {
          std::this_thread::yield();  // the predecessor runs on another thread; waits are milliseconds
          continue;
        }
        try {
          tasks[i].run();
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!first_error) first_error = std::current_exception();
          failed.store(true);  // tasks waiting on this one would wait forever: everyone stops
        }
        finished[i].store(true, std::memory_order_release);
      }
    }
  });
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace kick::compress::detail
