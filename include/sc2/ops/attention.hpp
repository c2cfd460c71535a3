#pragma once
/// \file
/// Grouped-query attention with a causal (optionally sliding-window) mask over
/// the pages of a KV pool, for a ragged batch of sequences.
///
/// For row t of entry b at absolute position i and query head h, with kv head
/// g = h / (H / Hkv) and the visible keys j in [lo(i), i] of b's sequence,
/// lo(i) = max(first_visible(i), first_position):
///
///     s_j      = (q[t, h] · k[j, g]) · scale            scale = 1/√Dh
///     p        = softmax_j(s)                           in float
///     out[t,h] = Σ_j p_j · v[j, g]
///
/// The sliding-window mask of StarCoder2 makes key j visible to query i iff
/// 0 <= i − j < W, so first_visible(i) = max(0, i − W + 1); with no window it
/// is 0 (plain causal). Positions are absolute, so the same rule holds in
/// prefill, chunked prefill, decode and any mix of them in one batch.
///
/// Shapes: q, out (T, H·Dh); the layer's pages (pages, Hkv, P, Dh); the plan
/// (see batch_plan.hpp). The chunk's own keys and values are in the pages
/// already (`kv_append` runs first), so every key comes from a page. Pages are
/// aligned to absolute positions, so the keys a query sees fall into the same
/// runs whatever chunk the query came in: results do not depend on chunking.
///
/// `kv_append` writes the rotated keys k (T, Hkv·Dh) and the values v of each
/// row into the slot of its position in its entry's pages. `rope_kv_append`
/// is `rope` on q and k followed by `kv_append`, which a backend may do in one
/// pass over the rows (the CUDA backend does).

#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/ops/batch_plan.hpp>
#include <sc2/ops/rope.hpp>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <vector>

namespace sc2::ops {

/// The sizes of one attention layer.
struct AttentionShape {
  int heads = 0;       ///< H: query heads
  int kv_heads = 0;    ///< Hkv: key/value heads, dividing H
  int head_dim = 0;    ///< Dh
  float scale = 0.0f;  ///< multiplier of q·k, 1/√Dh for StarCoder2
};

/// A mask policy: the keys visible to query position i are [first_visible(i), i].
template <class M>
concept AttentionMask = requires(const M& mask, std::int64_t i) {
  { mask.first_visible(i) } -> std::convertible_to<std::int64_t>;
};

/// StarCoder2's mask: causal, limited to the last W keys when a window is set.
struct SlidingWindowMask {
  std::optional<std::int64_t> window;  ///< W, or none for plain causal attention

  /// First key position query position `i` sees: max(0, i − W + 1), or 0.
  constexpr std::int64_t first_visible(std::int64_t i) const noexcept {
    return window ? std::max<std::int64_t>(0, i - *window + 1) : 0;
  }
};

namespace detail {
/// Checks the plan against the pages it names (host plans only): every row's
/// visible keys and its own slot lie in pages its entry lists.
template <AttentionMask Mask>
void check_plan(const BatchView<Host>& plan, std::int64_t pool_pages, const Mask& mask) {
  SC2_CHECK(plan.row_entry.extent(0) == plan.rows() && plan.page_size > 0, "batch plan: {} rows but {} row entries",
            plan.rows(), plan.row_entry.extent(0));
  for (std::int64_t b = 0; b < plan.sequences(); ++b) {
    const BatchEntry& e = plan.entries(b);
    SC2_CHECK(e.rows > 0 && e.first_row >= 0 && e.first_row + e.rows <= plan.rows() && e.start >= e.first_position &&
                  e.page_offset >= 0 && e.page_offset + e.pages <= plan.page_table.extent(0),
              "batch plan: entry {} (rows {}..{}, start {}) does not fit the batch", b, e.first_row,
              e.first_row + e.rows, e.start);
    const std::int64_t lo = std::max<std::int64_t>(mask.first_visible(e.start), e.first_position);
    const std::int64_t last = std::int64_t{e.start} + e.rows - 1;
    SC2_CHECK(lo / plan.page_size >= e.first_page && last / plan.page_size < e.first_page + e.pages,
              "batch plan: entry {} reads positions {}..{} but lists pages {}..{} of {} positions", b, lo, last,
              e.first_page, e.first_page + e.pages - 1, plan.page_size);
    for (std::int64_t n = lo / plan.page_size; n <= last / plan.page_size; ++n) {
      const std::int32_t page = plan.page_table(e.page_offset + n - e.first_page);
      SC2_CHECK(page >= 0 && page < pool_pages, "batch plan: entry {} has no page for logical page {}", b, n);
    }
  }
}
}  // namespace detail

/// Writes each row's keys and values (T, Hkv·Dh) into its slot of the layer's pages.
template <ExecutionContext Ctx, class Kv>
void kv_append(Ctx& ctx, const KvLayer<Kv, SpaceOf<Ctx>>& layer, Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> k,
               Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> v, const BatchView<SpaceOf<Ctx>>& plan) {
  const std::int64_t width = std::int64_t{layer.kv_heads} * layer.head_dim;
  SC2_CHECK(k.extent(0) == plan.rows() && v.extent(0) == plan.rows() && k.extent(1) == width && v.extent(1) == width &&
                k.stride(1) == 1 && v.stride(1) == 1 && plan.page_size == layer.page_size,
            "kv_append: k ({}, {}) and v ({}, {}) must be ({}, {})", k.extent(0), k.extent(1), v.extent(0),
            v.extent(1), plan.rows(), width);
  run_kv_append(ctx, layer, k, v, plan);
}

/// Rotates q (T, H, Dh) and k (T, Hkv, Dh) in place by each row's position,
/// then writes the rotated keys and the values v (T, Hkv·Dh) into each row's
/// slot of the layer's pages: `rope(q)`, `rope(k)`, `kv_append(k, v)`.
template <ExecutionContext Ctx, class Kv>
void rope_kv_append(Ctx& ctx, const KvLayer<Kv, SpaceOf<Ctx>>& layer, TensorView<ActivationOf<Ctx>, 3, SpaceOf<Ctx>> q,
                    TensorView<ActivationOf<Ctx>, 3, SpaceOf<Ctx>> k, Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> v,
                    const BatchView<SpaceOf<Ctx>>& plan, const RotaryTable& table) {
  const std::int64_t T = plan.rows();
  SC2_CHECK(q.extent(0) == T && k.extent(0) == T && k.extent(1) == layer.kv_heads && k.extent(2) == layer.head_dim &&
                q.extent(2) == layer.head_dim && q.is_contiguous() && k.is_contiguous(),
            "rope_kv_append: q ({}, {}, {}) and k ({}, {}, {}) must be dense rows of {} heads of {}", q.extent(0),
            q.extent(1), q.extent(2), k.extent(0), k.extent(1), k.extent(2), layer.kv_heads, layer.head_dim);
  SC2_CHECK(table.rotary_dim() <= layer.head_dim, "rope_kv_append: rotary dim {} exceeds head dim {}",
            table.rotary_dim(), layer.head_dim);
  SC2_CHECK(v.extent(0) == T && v.extent(1) == std::int64_t{layer.kv_heads} * layer.head_dim && v.stride(1) == 1 &&
                plan.page_size == layer.page_size,
            "rope_kv_append: v ({}, {}) must be ({}, {})", v.extent(0), v.extent(1), T,
            std::int64_t{layer.kv_heads} * layer.head_dim);
  run_rope_kv_append(ctx, layer, q, k, v, plan, table);
}

/// Attention of every row's queries over its own sequence's keys in the pages.
template <ExecutionContext Ctx, class Kv, AttentionMask Mask>
void attention(Ctx& ctx, Matrix<ActivationOf<Ctx>, SpaceOf<Ctx>> out, Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> q,
               const KvLayer<Kv, SpaceOf<Ctx>>& layer, const BatchView<SpaceOf<Ctx>>& plan,
               const AttentionShape& shape, const Mask& mask) {
  const std::int64_t T = q.extent(0), H = shape.heads, Hkv = shape.kv_heads, Dh = shape.head_dim;
  SC2_CHECK(H > 0 && Hkv > 0 && H % Hkv == 0, "attention: {} heads are not a multiple of {} kv heads", H, Hkv);
  SC2_CHECK(q.extent(1) == H * Dh && out.extent(0) == T && out.extent(1) == H * Dh && T == plan.rows() &&
                q.stride(1) == 1 && out.stride(1) == 1,
            "attention: q ({}, {}) / out ({}, {}) do not match {} rows of {} heads of {}", q.extent(0), q.extent(1),
            out.extent(0), out.extent(1), plan.rows(), H, Dh);
  SC2_CHECK(layer.kv_heads == Hkv && layer.head_dim == Dh && layer.page_size == plan.page_size,
            "attention: the KV pool holds {} kv heads of {} in pages of {}, the layer needs {} of {} in pages of {}",
            layer.kv_heads, layer.head_dim, layer.page_size, Hkv, Dh, plan.page_size);
  if constexpr (HostSpace<SpaceOf<Ctx>>) detail::check_plan(plan, layer.pages, mask);
  run_attention(ctx, out, q, layer, plan, shape, mask);
}

namespace reference {
/// Plain attention over the full key/value history of one sequence (no
/// pages): keys, values (P, Hkv·Dh) for positions 0..P−1; q, out (T, H·Dh)
/// at positions start...
template <AttentionMask Mask>
void attention(MatrixView out, ConstMatrixView q, ConstMatrixView keys, ConstMatrixView values, std::int64_t start,
               const AttentionShape& shape, const Mask& mask) {
  const std::int64_t H = shape.heads, Dh = shape.head_dim, group = shape.heads / shape.kv_heads;
  for (std::int64_t t = 0; t < q.extent(0); ++t) {
    const std::int64_t i = start + t;
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t g = h / group;
      std::vector<double> s;
      for (std::int64_t j = mask.first_visible(i); j <= i; ++j) {
        double dot = 0.0;
        for (std::int64_t d = 0; d < Dh; ++d) dot += static_cast<double>(q(t, h * Dh + d)) * keys(j, g * Dh + d);
        s.push_back(dot * shape.scale);
      }
      const double m = *std::max_element(s.begin(), s.end());
      double sum = 0.0;
      for (auto& x : s) sum += (x = std::exp(x - m));
      for (std::int64_t d = 0; d < Dh; ++d) {
        double acc = 0.0;
        std::int64_t n = 0;
        for (std::int64_t j = mask.first_visible(i); j <= i; ++j, ++n)
          acc += s[static_cast<std::size_t>(n)] * values(j, g * Dh + d);
        out(t, h * Dh + d) = static_cast<float>(acc / sum);
      }
    }
  }
}
}  // namespace reference

}  // namespace sc2::ops
