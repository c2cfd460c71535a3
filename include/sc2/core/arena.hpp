#pragma once
/// \file
/// Scratch arena: one allocation, carved into aligned slices.
///
/// A model measures the scratch it needs once (with a `Arena::Planner`), the
/// arena allocates that many bytes at construction, and every forward pass
/// takes its activations from it. Nothing is allocated per token.
///
///     sc2::Arena::Planner plan;
///     plan.reserve<float>(tokens * hidden);
///     sc2::Arena arena(plan);
///     std::span<float> h = arena.take<float>(tokens * hidden);

#include <sc2/core/buffer.hpp>
#include <sc2/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace sc2 {

/// A bump allocator over one aligned buffer; slices live as long as the arena.
class Arena {
public:
  /// Adds up the aligned sizes of the slices an arena will hand out.
  class Planner {
  public:
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

  /// An empty arena.
  Arena() = default;
  /// An arena of exactly the bytes `plan` asked for.
  explicit Arena(const Planner& plan) : storage_(plan.bytes()) {}
  /// An arena of `bytes` bytes.
  explicit Arena(std::size_t bytes) : storage_(bytes) {}

  /// The next `count` elements of `T`, aligned to `kAlignment`.
  template <class T> std::span<T> take(std::size_t count) {
    const std::size_t bytes = slice_bytes<T>(count);
    SC2_CHECK(bytes <= storage_.size() - used_, "scratch arena exhausted: {} bytes asked, {} of {} left", bytes,
              storage_.size() - used_, storage_.size());
    T* p = reinterpret_cast<T*>(storage_.data() + used_);
    used_ += bytes;
    return {p, count};
  }

  /// Hands every slice back; earlier slices must no longer be used.
  void reset() noexcept { used_ = 0; }
  /// Bytes handed out.
  std::size_t used() const noexcept { return used_; }
  /// Bytes owned.
  std::size_t capacity() const noexcept { return storage_.size(); }

private:
  // Bytes of a slice of `count` T, rounded up to kAlignment; checked, as counts may come from files.
  template <class T> static std::size_t slice_bytes(std::size_t count) {
    SC2_CHECK(count <= (SIZE_MAX - kAlignment) / sizeof(T), "scratch arena: a slice of {} elements overflows", count);
    return (count * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
  }

  Buffer<std::byte> storage_;
  std::size_t used_ = 0;
};

}  // namespace sc2
