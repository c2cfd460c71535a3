#pragma once
/// \file
/// Owning, aligned memory of one memory space.
///
/// `Buffer<T, Space>` is a fixed-size array of trivially copyable `T` in
/// `Space` (host by default), on 64-byte boundaries and zero-initialised. It
/// is movable, not copyable. Its memory comes from `MemorySpaceTraits<Space>`,
/// so a backend that brings a space brings its buffers with it. Element
/// access and spans exist only for host buffers; `view()` gives a tensor view
/// of any space.

#include <sc2/core/error.hpp>
#include <sc2/core/memory.hpp>
#include <sc2/core/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

namespace sc2 {

/// An owning array of `T` in memory space `Space`, aligned to `kAlignment`.
///
///     sc2::Buffer<float> b(1024);          // host, zeroed
///     std::span<float> s = b.span();
template <class T, class Space = Host>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>, "Buffer holds trivially copyable elements");

public:
  using element_type = T;  ///< the element type
  using space = Space;     ///< where the memory lives

  /// An empty buffer.
  Buffer() noexcept = default;

  /// `count` zeroed elements.
  explicit Buffer(std::size_t count) : size_(count) {
    if (count == 0) return;
    SC2_CHECK(count <= SIZE_MAX / sizeof(T), "buffer of {} elements overflows the address space", count);
    data_ = static_cast<T*>(MemorySpaceTraits<Space>::allocate(count * sizeof(T)));
    MemorySpaceTraits<Space>::zero(static_cast<void*>(data_), count * sizeof(T));
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
  /// Size in bytes.
  std::size_t bytes() const noexcept { return size_ * sizeof(T); }
  /// True when the buffer holds no element.
  bool empty() const noexcept { return size_ == 0; }
  /// All elements as a rank-1 view of this buffer's space.
  TensorView<T, 1, Space> view() noexcept { return {data_, {static_cast<std::int64_t>(size_)}}; }
  /// All elements as a read-only rank-1 view of this buffer's space.
  TensorView<const T, 1, Space> view() const noexcept { return {data_, {static_cast<std::int64_t>(size_)}}; }
  /// All elements (host memory only).
  std::span<T> span() noexcept
    requires HostSpace<Space>
  {
    return {data_, size_};
  }
  /// All elements (host memory only).
  std::span<const T> span() const noexcept
    requires HostSpace<Space>
  {
    return {data_, size_};
  }
  /// Element `i` (host memory only).
  T& operator[](std::size_t i) noexcept
    requires HostSpace<Space>
  {
    return data_[i];
  }
  /// Element `i` (host memory only).
  const T& operator[](std::size_t i) const noexcept
    requires HostSpace<Space>
  {
    return data_[i];
  }

private:
  void release() noexcept {
    if (data_) MemorySpaceTraits<Space>::deallocate(static_cast<void*>(data_));
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A weight matrix together with the memory it views: what a backend returns
/// when it takes a weight into its own memory and layout.
template <class Space = Host>
struct OwnedWeight {
  Buffer<std::byte, Space> storage;  ///< the elements
  WeightView<Space> view;            ///< (rows, cols) over `storage`
};

}  // namespace sc2
