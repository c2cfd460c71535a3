#pragma once
/// \file
/// Owning, aligned host memory.
///
/// `Buffer<T>` is a fixed-size array of trivially copyable `T` on 64-byte
/// (cache-line, AVX-512) boundaries. It is movable, not copyable, and
/// zero-initialised. Device buffers live in the CUDA headers.

#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

namespace sc2 {

/// Alignment of every buffer and arena slice, in bytes.
inline constexpr std::size_t kAlignment = 64;

/// An owning array of `T` in host memory, aligned to `kAlignment`.
///
///     sc2::Buffer<float> b(1024);          // zeroed
///     std::span<float> s = b.span();
template <class T>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>, "Buffer holds trivially copyable elements");

public:
  /// An empty buffer.
  Buffer() noexcept = default;

  /// `count` zeroed elements.
  explicit Buffer(std::size_t count) : size_(count) {
    if (count == 0) return;
    SC2_CHECK(count <= SIZE_MAX / sizeof(T), "buffer of {} elements overflows the address space", count);
    try {
      data_ = static_cast<T*>(::operator new(count * sizeof(T), std::align_val_t{kAlignment}));
    } catch (const std::bad_alloc&) {
      SC2_FAIL("cannot allocate a buffer of {} bytes: out of memory", count * sizeof(T));
    }
    std::memset(static_cast<void*>(data_), 0, count * sizeof(T));
  }

  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  /// Takes the memory of `other`, which becomes empty.
  Buffer(Buffer&& other) noexcept : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  /// Releases this buffer's memory and takes `other`'s.
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~Buffer() { release(); }

  /// First element.
  T* data() noexcept { return data_; }
  /// First element.
  const T* data() const noexcept { return data_; }
  /// Number of elements.
  std::size_t size() const noexcept { return size_; }
  /// True when the buffer holds no element.
  bool empty() const noexcept { return size_ == 0; }
  /// All elements.
  std::span<T> span() noexcept { return {data_, size_}; }
  /// All elements.
  std::span<const T> span() const noexcept { return {data_, size_}; }
  /// Element `i`.
  T& operator[](std::size_t i) noexcept { return data_[i]; }
  /// Element `i`.
  const T& operator[](std::size_t i) const noexcept { return data_[i]; }

private:
  void release() noexcept {
    if (data_) ::operator delete(static_cast<void*>(data_), std::align_val_t{kAlignment});
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace sc2
