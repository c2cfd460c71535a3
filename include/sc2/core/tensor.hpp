#pragma once
/// \file
/// Non-owning tensor views.
///
/// A `TensorView<T, Rank, Space>` is a pointer, `Rank` extents and `Rank`
/// strides (in elements). It owns nothing and never allocates; slicing returns
/// another view of the same memory. `Space` says where the memory lives
/// (`Host` or `Device`); element access through `operator()` exists only for
/// host views, so device memory cannot be dereferenced by mistake.
///
/// Dimension legend used in every shape comment of the library:
///   T tokens, D hidden, H heads, Hkv kv heads, Dh head dim, F intermediate,
///   V vocab, W window.
///
/// `WeightMatrix` is the type-erased (rows, cols) row-major matrix of weights
/// as stored in a checkpoint: f32, bf16 or f16, read in place.

#include <sc2/core/dtype.hpp>
#include <sc2/core/error.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

namespace sc2 {

/// Memory space tag: ordinary host memory.
struct Host {};
/// Memory space tag: GPU device memory.
struct Device {};

/// A strided view of `Rank` dimensions over memory it does not own.
///
///     float data[6] = {1, 2, 3, 4, 5, 6};
///     sc2::TensorView<float, 2> m(data, {2, 3});   // (2, 3), row-major
///     float x = m(1, 2);                            // 6
template <class T, int Rank, class Space = Host>
class TensorView {
  static_assert(Rank >= 1, "a tensor view has at least one dimension");

public:
  using element_type = T;
  using Extents = std::array<std::int64_t, Rank>;

  /// An empty view.
  constexpr TensorView() noexcept : data_(nullptr), extents_{}, strides_{} {}

  /// A contiguous row-major view.
  constexpr TensorView(T* data, const Extents& extents) noexcept
      : data_(data), extents_(extents), strides_(row_major_strides(extents)) {}

  /// A view with explicit strides (in elements).
  constexpr TensorView(T* data, const Extents& extents, const Extents& strides) noexcept
      : data_(data), extents_(extents), strides_(strides) {}

  /// A view of const elements made from a mutable one.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  constexpr TensorView(const TensorView<U, Rank, Space>& other) noexcept
      : data_(other.data()), extents_(other.extents()), strides_(other.strides()) {}

  /// First element.
  constexpr T* data() const noexcept { return data_; }
  /// All extents.
  constexpr const Extents& extents() const noexcept { return extents_; }
  /// All strides, in elements.
  constexpr const Extents& strides() const noexcept { return strides_; }
  /// Extent of dimension `d`.
  constexpr std::int64_t extent(int d) const noexcept { return extents_[static_cast<std::size_t>(d)]; }
  /// Stride of dimension `d`, in elements.
  constexpr std::int64_t stride(int d) const noexcept { return strides_[static_cast<std::size_t>(d)]; }
  /// Number of elements.
  constexpr std::int64_t size() const noexcept {
    std::int64_t n = 1;
    for (auto e : extents_) n *= e;
    return n;
  }
  /// True when the elements are dense and row-major.
  constexpr bool is_contiguous() const noexcept { return strides_ == row_major_strides(extents_); }

  /// Element access (host memory only).
  template <class... Index>
    requires(sizeof...(Index) == Rank && std::is_same_v<Space, Host>)
  constexpr T& operator()(Index... index) const noexcept {
    const std::array<std::int64_t, Rank> i{static_cast<std::int64_t>(index)...};
    std::int64_t offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) {
      SC2_ASSERT(i[d] >= 0 && i[d] < extents_[d]);
      offset += i[d] * strides_[d];
    }
    return data_[offset];
  }

  /// The sub-view of `count` indices of dimension 0 starting at `first`.
  constexpr TensorView slice(std::int64_t first, std::int64_t count) const noexcept {
    SC2_ASSERT(first >= 0 && count >= 0 && first + count <= extents_[0]);
    Extents e = extents_;
    e[0] = count;
    return TensorView(data_ + first * strides_[0], e, strides_);
  }

  /// The view of index `i` of dimension 0, one rank lower.
  constexpr auto operator[](std::int64_t i) const noexcept
    requires(Rank > 1)
  {
    SC2_ASSERT(i >= 0 && i < extents_[0]);
    std::array<std::int64_t, Rank - 1> e{}, s{};
    for (std::size_t d = 1; d < Rank; ++d) {
      e[d - 1] = extents_[d];
      s[d - 1] = strides_[d];
    }
    return TensorView<T, Rank - 1, Space>(data_ + i * strides_[0], e, s);
  }

  /// Row `i` of a rank-2 view with unit inner stride, as a span (host memory only).
  constexpr std::span<T> row(std::int64_t i) const noexcept
    requires(Rank == 2 && std::is_same_v<Space, Host>)
  {
    SC2_ASSERT(strides_[1] == 1 && i >= 0 && i < extents_[0]);
    return {data_ + i * strides_[0], static_cast<std::size_t>(extents_[1])};
  }

  /// The same memory seen with other extents; the view must be contiguous.
  template <int NewRank>
  TensorView<T, NewRank, Space> reshape(const std::array<std::int64_t, NewRank>& extents) const {
    std::int64_t n = 1;
    for (auto e : extents) n *= e;
    SC2_CHECK(is_contiguous() && n == size(), "cannot reshape a view of {} elements (contiguous: {}) to {} elements",
              size(), is_contiguous(), n);
    return TensorView<T, NewRank, Space>(data_, extents);
  }

  /// Dense row-major strides for the given extents.
  static constexpr Extents row_major_strides(const Extents& extents) noexcept {
    Extents s{};
    std::int64_t stride = 1;
    for (int d = Rank - 1; d >= 0; --d) {
      s[static_cast<std::size_t>(d)] = stride;
      stride *= extents[static_cast<std::size_t>(d)];
    }
    return s;
  }

private:
  T* data_;
  Extents extents_;
  Extents strides_;
};

/// A (rows, cols) host matrix of floats, row-major with a row stride.
using MatrixView = TensorView<float, 2>;
/// A read-only (rows, cols) host matrix of floats.
using ConstMatrixView = TensorView<const float, 2>;

/// A read-only (rows, cols) row-major weight matrix in its stored dtype.
///
/// This is how checkpoints hold linear layers and embeddings: (out_features,
/// in_features), f32, bf16 or f16, usually pointing into a memory-mapped file.
struct WeightMatrix {
  DType dtype = DType::f32;      ///< element type of `data`
  const void* data = nullptr;    ///< first element of row 0
  std::int64_t rows = 0;         ///< out_features (or vocabulary size for embeddings)
  std::int64_t cols = 0;         ///< in_features (or hidden size for embeddings)

  /// Row `r` as typed pointer; `E` must match `dtype`.
  template <class E> const E* row(std::int64_t r) const noexcept {
    SC2_ASSERT(dtype_v<E> == dtype && r >= 0 && r < rows);
    return static_cast<const E*>(data) + r * cols;
  }
  /// Element (r, c) widened to float.
  float at(std::int64_t r, std::int64_t c) const noexcept {
    switch (dtype) {
      case DType::f32: return row<float>(r)[c];
      case DType::bf16: return row<bf16>(r)[c].to_float();
      case DType::f16: return row<f16>(r)[c].to_float();
    }
    return 0.0f;
  }
  /// Size in bytes.
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(rows * cols) * dtype_size(dtype); }
};

}  // namespace sc2
