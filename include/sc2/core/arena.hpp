#pragma once
/// \file
/// Scratch arena: one allocation in one memory space, carved into aligned slices.
///
/// A workspace measures the scratch it needs once (with an `ArenaPlan`), the
/// arena allocates that many bytes at construction, and every forward pass
/// takes its activations from it. Nothing is allocated per step.
///
///     sc2::ArenaPlan plan;
///     plan.reserve<float>(tokens * hidden);
///     sc2::Arena<sc2::Host> arena(plan);
///     float* h = arena.take<float>(tokens * hidden);

#include <sc2/core/buffer.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/memory.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace sc2 {

/// Adds up the aligned sizes of the slices an arena will hand out.
class ArenaPlan {
public:
  /// Bytes of a slice of `count` elements of `T`, rounded up to `kAlignment`;
  /// an `sc2::Error` when it overflows (counts may come from files).
  template <class T> static std::size_t slice_bytes(std::size_t count) {
    SC2_CHECK(count <= (SIZE_MAX - kAlignment) / sizeof(T), "scratch arena: a slice of {} elements overflows", count);
    return (count * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
  }
  /// Accounts for a slice of `count` elements of `T`; an `sc2::Error` if the total overflows.
  template <class T> void reserve(std::size_t count) {
    const std::size_t bytes = slice_bytes<T>(count);
    SC2_CHECK(bytes <= SIZE_MAX - bytes_, "scratch arena: {} more bytes overflow the {} planned", bytes, bytes_);
    bytes_ += bytes;
  }
  /// Total bytes the arena needs.
  std::size_t bytes() const noexcept { return bytes_; }

private:
  std::size_t bytes_ = 0;
};

/// A bump allocator over one aligned buffer of `Space`; slices live as long as the arena.
template <class Space = Host>
class Arena {
public:
  /// An empty arena.
  Arena() = default;
  /// An arena of exactly the bytes `plan` asked for.
  explicit Arena(const ArenaPlan& plan) : storage_(plan.bytes()) {}

  /// The next `count` elements of `T`, aligned to `kAlignment`.
  template <class T> T* take(std::size_t count) {
    const std::size_t bytes = ArenaPlan::slice_bytes<T>(count);
    SC2_CHECK(bytes <= storage_.size() - used_, "scratch arena exhausted: {} bytes asked, {} of {} left", bytes,
              storage_.size() - used_, storage_.size());
    T* p = reinterpret_cast<T*>(storage_.data() + used_);
    used_ += bytes;
    return p;
  }
  /// The next `count` elements of `T` as a span (host memory only).
  template <class T> std::span<T> take_span(std::size_t count)
    requires HostSpace<Space>
  {
    return {take<T>(count), count};
  }

  /// Hands every slice back; earlier slices must no longer be used.
  void reset() noexcept { used_ = 0; }
  /// Bytes handed out.
  std::size_t used() const noexcept { return used_; }
  /// Bytes owned.
  std::size_t capacity() const noexcept { return storage_.size(); }

private:
  Buffer<std::byte, Space> storage_;
  std::size_t used_ = 0;
};

}  // namespace sc2
