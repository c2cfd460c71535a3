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
/// `WeightView<Space>` is the type-erased (rows, cols) matrix of weights of a
/// linear layer or an embedding: f32, bf16 or f16, or GGML blocks (Q8_0, Q4_K,
/// ...), in the layout its backend keeps it in (row-major as checkpoints store
/// it, or the CPU kernels' panels).

#include <sc2/core/dtype.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/memory.hpp>
#include <sc2/quant/panels.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>

namespace sc2 {

/// A strided view of `Rank` dimensions over memory it does not own.
///
///     float data[6] = {1, 2, 3, 4, 5, 6};
///     sc2::TensorView<float, 2> m(data, {2, 3});   // (2, 3), row-major
///     float x = m(1, 2);                            // 6
template <class T, int Rank, class Space = Host>
class TensorView {
  static_assert(Rank >= 1, "a tensor view has at least one dimension");

public:
  using element_type = T;                          ///< the element type
  using Extents = std::array<std::int64_t, Rank>;  ///< one extent (or stride) per dimension

  /// An empty view.
  constexpr TensorView() noexcept : data_(nullptr), extents_{}, strides_{} {}

  /// A contiguous row-major view.
  constexpr TensorView(T* data, const Extents& extents) noexcept
      : data_(data), extents_(extents), strides_(row_major_strides(extents)) {}

  /// A view with explicit strides (in elements).
  constexpr TensorView(T* data, const Extents& extents, const Extents& strides) noexcept
      : data_(data), extents_(extents), strides_(strides) {}

  /// A rank-1 host view of a span's elements.
  template <class U>
    requires(Rank == 1 && std::is_same_v<Space, Host> && std::is_convertible_v<U (*)[], T (*)[]>)
  constexpr TensorView(std::span<U> s) noexcept
      : data_(s.data()), extents_{static_cast<std::int64_t>(s.size())}, strides_{1} {}

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

  /// The elements of a contiguous rank-1 view as a span (host memory only).
  constexpr std::span<T> span() const noexcept
    requires(Rank == 1 && std::is_same_v<Space, Host>)
  {
    SC2_ASSERT(strides_[0] == 1 || extents_[0] <= 1);
    return {data_, static_cast<std::size_t>(extents_[0])};
  }
  /// True when the view has no element.
  constexpr bool empty() const noexcept { return size() == 0; }

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
/// A (rows, cols) matrix of `T` in memory space `Space`.
template <class T, class Space> using Matrix = TensorView<T, 2, Space>;
/// A vector of `T` in memory space `Space`.
template <class T, class Space> using Vector = TensorView<T, 1, Space>;

/// How the elements of a weight matrix are laid out.
enum class WeightLayout : std::uint8_t {
  /// Row r, column c at r · cols + c, as checkpoints store (out_features, in_features).
  row_major,
  /// Panels of `kPanelRows` rows, each column-major: (r, c) at
  /// (r / 16) · cols · 16 + c · 16 + r % 16; rows past `rows` up to the
  /// next multiple of 16 are zero. The CPU kernels' layout: one column of a
  /// panel is one vector of 16 rows.
  panels16,
};

/// Rows per panel of `WeightLayout::panels16`.
inline constexpr std::int64_t kPanelRows = 16;

/// A read-only (rows, cols) weight matrix in its dtype and layout, in memory
/// space `Space`: (out_features, in_features) of a linear layer, or
/// (vocabulary, hidden) of an embedding. With `blocks` set, `data` holds GGML
/// blocks of that format along each row instead of `dtype` elements: row-major
/// as a GGUF tensor stores them, or in panels of 16 rows' blocks (panels.hpp).
template <class Space = Host>
struct WeightView {
  DType dtype = DType::f32;                       ///< element type of `data` (without `blocks`)
  WeightLayout layout = WeightLayout::row_major;  ///< where element (r, c) lives
  const void* data = nullptr;                     ///< first element
  std::int64_t rows = 0;                          ///< out_features (or vocabulary size for embeddings)
  std::int64_t cols = 0;                          ///< in_features (or hidden size for embeddings)
  std::optional<quant::Format> blocks;            ///< the block format, when the weights are quantized

  /// Rows as stored: `rows`, or rounded up to whole panels.
  std::int64_t stored_rows() const noexcept {
    return layout == WeightLayout::panels16 ? (rows + kPanelRows - 1) / kPanelRows * kPanelRows : rows;
  }
  /// Elements as stored, padding included.
  std::int64_t stored_elements() const noexcept { return stored_rows() * cols; }
  /// Bytes of one stored row: its elements, or its blocks.
  std::size_t row_bytes() const noexcept {
    return blocks ? quant::row_bytes(*blocks, cols) : static_cast<std::size_t>(cols) * dtype_size(dtype);
  }
  /// Size in bytes, padding included.
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(stored_rows()) * row_bytes(); }
  /// Index of element (r, c) in `data`, in elements (not for blocks).
  std::int64_t index(std::int64_t r, std::int64_t c) const noexcept {
    SC2_ASSERT(r >= 0 && r < rows && c >= 0 && c < cols && !blocks);
    if (layout == WeightLayout::row_major) return r * cols + c;
    return (r / kPanelRows) * cols * kPanelRows + c * kPanelRows + r % kPanelRows;
  }
  /// Row `r` of a row-major matrix as a typed pointer; `E` must match `dtype`.
  template <class E> const E* row(std::int64_t r) const noexcept {
    SC2_ASSERT(dtype_v<E> == dtype && layout == WeightLayout::row_major && r >= 0 && r < rows && !blocks);
    return static_cast<const E*>(data) + r * cols;
  }
  /// Row `r` widened to float into `out` (cols floats; host memory only): a
  /// block format's rows as `quant::dequantize` gives them.
  void row_to_float(std::int64_t r, float* out) const noexcept
    requires HostSpace<Space>
  {
    SC2_ASSERT(r >= 0 && r < rows);
    if (!blocks) {
      if (layout == WeightLayout::row_major) {
        const auto widen = [&](const auto* row) { for (std::int64_t c = 0; c < cols; ++c) out[c] = to_float(row[c]); };
        switch (dtype) {
          case DType::f32: widen(static_cast<const float*>(data) + r * cols); break;
          case DType::bf16: widen(static_cast<const bf16*>(data) + r * cols); break;
          case DType::f16: widen(static_cast<const f16*>(data) + r * cols); break;
        }
        return;
      }
      for (std::int64_t c = 0; c < cols; ++c) out[c] = at(r, c);
      return;
    }
    const auto* base = static_cast<const std::byte*>(data);
    if (layout == WeightLayout::row_major) {
      quant::dequantize(*blocks, base + static_cast<std::size_t>(r) * row_bytes(), out, cols);
      return;
    }
    const std::int64_t B = quant::block_elements(*blocks);
    const std::byte* panel = base + static_cast<std::size_t>(r / kPanelRows) * kPanelRows * row_bytes();
    for (std::int64_t b = 0; b < cols / B; ++b)
      quant::dequantize_panel_lane(*blocks, panel + static_cast<std::size_t>(b) * quant::panel_block_bytes(*blocks),
                                   static_cast<int>(r % kPanelRows), out + b * B);
  }
  /// Element (r, c) widened to float (host memory only).
  float at(std::int64_t r, std::int64_t c) const noexcept
    requires HostSpace<Space>
  {
    if (blocks) {
      // The element's block, dequantized.
      const std::int64_t B = quant::block_elements(*blocks);
      float block[quant::kSuperBlock];
      const auto* base = static_cast<const std::byte*>(data);
      const std::size_t b = static_cast<std::size_t>(c / B);
      if (layout == WeightLayout::row_major) {
        quant::dequantize(*blocks, base + static_cast<std::size_t>(r) * row_bytes() + b * quant::block_bytes(*blocks),
                          block, B);
      } else {
        const std::byte* panel = base + static_cast<std::size_t>(r / kPanelRows) * kPanelRows * row_bytes();
        quant::dequantize_panel_lane(*blocks, panel + b * quant::panel_block_bytes(*blocks),
                                     static_cast<int>(r % kPanelRows), block);
      }
      return block[c % B];
    }
    const std::int64_t i = index(r, c);
    switch (dtype) {
      case DType::f32: return static_cast<const float*>(data)[i];
      case DType::bf16: return static_cast<const bf16*>(data)[i].to_float();
      case DType::f16: return static_cast<const f16*>(data)[i].to_float();
    }
    return 0.0f;
  }
};

/// A weight matrix in host memory.
using WeightMatrix = WeightView<Host>;

}  // namespace sc2
