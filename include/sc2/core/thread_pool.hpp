#pragma once
/// \file
/// A fixed pool of threads for data-parallel loops.
///
/// The calling thread takes part as thread 0, so a pool of N threads starts
/// N - 1 workers. `run(f)` calls `f(thread_index)` once on every thread and
/// returns when all are done; `parallel_for(n, grain, f)` splits [0, n) into
/// one contiguous range per thread (multiples of `grain`). Workers spin briefly
/// before sleeping on an atomic wait, so the many short loops of one decode
/// step do not pay a wake-up each. No allocation happens per call. A call made
/// from inside a task runs serially on the calling thread. An exception thrown
/// by a task is rethrown by the caller once every thread has finished.

#include <sc2/core/error.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace sc2 {

/// A pool of threads; the caller is thread 0.
///
///     sc2::ThreadPool pool(2);
///     pool.parallel_for(rows, 1, [&](std::int64_t begin, std::int64_t end) { ... });
class ThreadPool {
public:
  /// A pool of `threads` threads in all; 0 means one per hardware thread.
  explicit ThreadPool(int threads = 0) {
    if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    SC2_CHECK(threads <= 4096, "thread count {} is out of range (1..4096)", threads);
    size_ = threads;
    workers_.reserve(static_cast<std::size_t>(threads - 1));
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  ~ThreadPool() {
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& w : workers_) w.join();
  }

  /// Number of threads, the caller included.
  int size() const noexcept { return size_; }

  /// Calls `task(thread_index)` on every thread, `thread_index` in [0, size()).
  template <class F> void run(F&& task) {
    using Fn = std::remove_reference_t<F>;
    if (inside_task() || size_ == 1) {
      for (int i = 0; i < size_; ++i) task(i);
      return;
    }
    std::lock_guard<std::mutex> one_caller(caller_mutex_);
    task_ = [](void* f, int i) { (*static_cast<Fn*>(f))(i); };
    task_data_ = const_cast<void*>(static_cast<const void*>(&task));
    error_ = nullptr;
    pending_.store(size_ - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    execute(0);
    for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
      if (spin < kSpins) continue;
      const int left = pending_.load(std::memory_order_acquire);
      if (left != 0) pending_.wait(left, std::memory_order_acquire);
    }
    if (error_) std::rethrow_exception(error_);
  }

  /// Splits [0, n) into one contiguous range per thread, each a multiple of
  /// `grain` long (but the last), and calls `body(begin, end)` for each
  /// non-empty range, or `body(begin, end, thread_index)` when the body takes
  /// the index (for per-thread scratch).
  template <class F> void parallel_for(std::int64_t n, std::int64_t grain, F&& body) {
    if (n <= 0) return;
    grain = std::max<std::int64_t>(grain, 1);
    const std::int64_t blocks = (n + grain - 1) / grain;
    const std::int64_t threads = std::min<std::int64_t>(size_, blocks);
    const auto call = [&](std::int64_t begin, std::int64_t end, int thread) {
      if constexpr (std::is_invocable_v<F&, std::int64_t, std::int64_t, int>) body(begin, end, thread);
      else body(begin, end);
    };
    if (threads <= 1) {
      call(std::int64_t{0}, n, 0);
      return;
    }
    run([&](int t) {
      if (t >= threads) return;
      const std::int64_t first = blocks * t / threads, last = blocks * (t + 1) / threads;
      const std::int64_t begin = first * grain, end = std::min(n, last * grain);
      if (begin < end) call(begin, end, t);
    });
  }

private:
  static constexpr int kSpins = 1 << 14;

  static bool& inside_task() noexcept {
    thread_local bool inside = false;
    return inside;
  }

  void execute(int thread_index) noexcept {
    inside_task() = true;
    try {
      task_(task_data_, thread_index);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    inside_task() = false;
  }

  void worker_loop(int thread_index) {
    std::uint64_t seen = 0;
    for (;;) {
      std::uint64_t now = generation_.load(std::memory_order_acquire);
      for (int spin = 0; now == seen; ++spin) {
        if (spin >= kSpins) generation_.wait(seen, std::memory_order_acquire);
        now = generation_.load(std::memory_order_acquire);
      }
      seen = now;
      if (stop_.load(std::memory_order_relaxed)) return;
      execute(thread_index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
    }
  }

  int size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex caller_mutex_;
  std::mutex error_mutex_;
  std::exception_ptr error_;
  void (*task_)(void*, int) = nullptr;
  void* task_data_ = nullptr;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace sc2
