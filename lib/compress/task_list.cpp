// compress/task_list.cpp: the calibration driver's scheduler for one layer's per-group and per-Linear
// work. Each task runs alone on one thread: with an OpenMP BLAS (OpenBLAS's OpenMP build, MKL), BLAS,
// LAPACK and ATen's parallel loops called inside a parallel region stay single-threaded, and for
// matrices of 192 to 1536 columns whole tasks on separate threads beat every small op spread over all
// threads (docs/performance.md). A task's arithmetic does not depend on which tasks run beside it, so at a given
// thread count neither do the bits.
#include <condition_variable>
#include <exception>
#include <mutex>

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
  std::condition_variable changed;  // a task finished, or one failed
  std::vector<char> taken(static_cast<size_t>(n), 0), finished(static_cast<size_t>(n), 0);
  std::exception_ptr first_error;
  // Under the lock: the first task in list order that nobody has taken and whose predecessor has
  // finished; -1 once none is left to take (or one failed); -2 while the remaining ones still wait.
  auto take = [&]() -> int64_t {
    if (first_error) return -1;
    bool remaining = false;
    for (int64_t i = 0; i < n; ++i) {
      if (taken[i]) continue;
      remaining = true;
      if (tasks[i].after < 0 || finished[tasks[i].after]) {
        taken[i] = 1;
        return i;
      }
    }
    return remaining ? -2 : -1;
  };
  at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t worker = begin; worker < end; ++worker) {
      std::unique_lock<std::mutex> lock(mutex);
      for (;;) {
        int64_t i;
        // A waiting task's predecessor is running on another thread, which notifies when it ends.
        changed.wait(lock, [&] { return (i = take()) != -2; });
        if (i == -1) break;
        lock.unlock();
        std::exception_ptr error;
        try {
          tasks[i].run();
        } catch (...) {
          error = std::current_exception();
        }
        lock.lock();
        if (error) {
          if (!first_error) first_error = error;  // the tasks after it never start
        } else {
          finished[i] = 1;
        }
        changed.notify_all();
      }
    }
  });
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace kick::compress::detail
