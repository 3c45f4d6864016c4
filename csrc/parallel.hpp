// A fork-join loop over independent tasks. Threads are made per call: a call
// covers many chunks (milliseconds of work), so their start-up cost is noise, and
// no pool outlives the call (no process-wide state).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace tensorzip {

inline int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

inline size_t worker_count(size_t count, int threads) {
  if (count <= 1) return 1;  // one task: no need to ask the OS for its cores (a syscall per call)
  return std::max<size_t>(1, std::min<size_t>(count, static_cast<size_t>(resolve_threads(threads))));
}

// Runs task(i, worker) for i in [0, count) on up to `threads` threads. After a task
// throws, no new task starts; once all threads stop, the exception of the LOWEST
// failing index is rethrown. Tasks are claimed in increasing order, so every index
// below a failure had already started: the error is the one a single thread would
// have met first, whatever the timing (messages name the same chunk on every run).
// `worker` is in [0, worker_count(count, threads)) and lets tasks reuse per-worker
// scratch space.
template <typename Task>
void parallel_for(size_t count, int threads, Task&& task) {
  const size_t workers = worker_count(count, threads);
  if (workers <= 1) {
    for (size_t i = 0; i < count; ++i) task(i, size_t{0});
    return;
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  size_t first_error_index = count;
  std::mutex error_mutex;
  auto run = [&](size_t worker) {
    for (;;) {
      const size_t i = next.fetch_add(1);
      if (i >= count || failed.load()) return;
      try {
        task(i, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (i < first_error_index) {
          first_error = std::current_exception();
          first_error_index = i;
        }
        failed.store(true);
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (size_t w = 1; w < workers; ++w) pool.emplace_back(run, w);
  run(0);
  for (std::thread& t : pool) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace tensorzip
