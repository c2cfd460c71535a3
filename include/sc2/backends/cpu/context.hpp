#pragma once
/// \file
/// The CPU execution context and backend: threads, the SIMD path, host memory.
///
/// Every CPU op takes a `cpu::Context&` first. The context owns the thread
/// pool the op splits its work over and names the instruction-set path its
/// kernels use; its memory space is `Host` and its activations are float. It
/// holds no per-call state but per-thread scratch, so one context serves any
/// number of models, one call at a time. `cpu::Backend` is what the model
/// templates take: this context, host memory, float activations and a float
/// KV pool. `run_copy` is the CPU side of `ops::copy`.

#include <sc2/backends/cpu/detail/cpu_features.hpp>
#include <sc2/core/buffer.hpp>
#include <sc2/core/memory.hpp>
#include <sc2/core/thread_pool.hpp>

#include <cstring>
#include <span>
#include <vector>

namespace sc2::cpu {

/// Threads and instruction set for the CPU backend.
///
///     sc2::cpu::Context ctx(2);   // two threads, best SIMD path
class Context {
public:
  using Space = Host;       ///< memory the ops of this context read and write
  using Activation = float;  ///< element type of activations

  /// A context with `threads` threads (0: one per hardware thread).
  explicit Context(int threads = 0)
      : pool_(threads), isa_(default_isa()), scratch_(static_cast<std::size_t>(pool_.size())) {}

  /// The pool ops split their loops over.
  ThreadPool& pool() noexcept { return pool_; }
  /// Number of threads.
  int threads() const noexcept { return pool_.size(); }
  /// The SIMD path kernels take.
  Isa isa() const noexcept { return isa_; }
  /// Forces a SIMD path; an `sc2::Error` if this processor lacks it.
  void set_isa(Isa isa) {
    SC2_CHECK(isa_supported(isa), "this processor does not support the {} path", isa_name(isa));
    isa_ = isa;
  }

  /// At least `count` floats of scratch private to thread `thread` of the
  /// pool, kept between calls: it grows the first time a larger size is
  /// asked for and is reused afterwards, so steady-state calls allocate nothing.
  std::span<float> scratch(int thread, std::size_t count) {
    auto& buffer = scratch_[static_cast<std::size_t>(thread)];
    if (buffer.size() < count) buffer = Buffer<float>(count);
    return buffer.span().first(count);
  }

  /// At least `bytes` of scratch shared by the threads of one op (one thread
  /// fills it, all read it), kept between calls like `scratch`; 64-byte aligned.
  std::span<std::byte> shared_scratch(std::size_t bytes) {
    if (shared_.size() * sizeof(float) < bytes) shared_ = Buffer<float>((bytes + sizeof(float) - 1) / sizeof(float));
    return std::as_writable_bytes(shared_.span()).first(bytes);
  }

private:
  ThreadPool pool_;
  Isa isa_;
  std::vector<Buffer<float>> scratch_;
  Buffer<float> shared_;
};

/// The CPU backend: the model is templated on it.
struct Backend {
  using Context = cpu::Context;  ///< execution context type
  using Space = Host;            ///< where weights, activations and the KV pool live
  using Activation = float;      ///< activations and accumulation
  using KvElement = float;       ///< keys and values in the KV pool
};

/// CPU implementation of `ops::copy`: host to host.
inline void run_copy(Context&, void* dst, Host, const void* src, Host, std::size_t bytes) noexcept {
  std::memmove(dst, src, bytes);
}

}  // namespace sc2::cpu

namespace sc2 {
/// The CPU execution context.
using CpuContext = cpu::Context;
}  // namespace sc2
