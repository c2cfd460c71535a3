#pragma once
/// \file
/// Grouped-query attention with a causal (optionally sliding-window) mask over
/// a ring-buffer KV cache.
///
/// For query token t at absolute position i and query head h, with kv head
/// g = h / (H / Hkv) and the visible keys j in [first_visible(i), i]:
///
///     s_j      = (q[t, h] · k[j, g]) · scale            scale = 1/√Dh
///     p        = softmax_j(s)                           in float
///     out[t,h] = Σ_j p_j · v[j, g]
///
/// The sliding-window mask of StarCoder2 makes key j visible to query i iff
/// 0 <= i − j < W, so first_visible(i) = max(0, i − W + 1); with no window it
/// is 0 (plain causal). Positions are absolute, so the same rule holds in
/// prefill, chunked prefill and one-token decode.
///
/// Shapes: q, out (T, H·Dh); k, v of the new tokens (T, Hkv·Dh) at positions
/// start .. start+T−1; the ring holds the past: slot p mod C has position p
/// for the last min(start − first, C) positions before `start`, C being its
/// capacity (the window W for windowed models). A sequence may begin at a
/// position `first` > 0 (a left-padded row): keys before it do not exist. The new tokens' keys are read from
/// k and v, not from the ring, so a chunk of any length sees exactly the keys
/// the reference sees even where it overwrites ring slots afterwards.

#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>

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

/// The past keys and values of one layer: a ring of `capacity` slots.
struct KvRing {
  float* keys = nullptr;        ///< (Hkv, capacity, Dh): each kv head's keys contiguous
  float* values = nullptr;      ///< (Hkv, capacity, Dh)
  std::int64_t capacity = 0;    ///< C: slots; position p lives in slot p mod C
  std::int64_t first = 0;       ///< the sequence's first position: earlier ones hold no key
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

/// Attention of the new tokens' queries over the past (ring) and new keys.
template <AttentionMask Mask, class Context>
void attention(Context& ctx, MatrixView out, ConstMatrixView q, ConstMatrixView k, ConstMatrixView v,
               const KvRing& past, std::int64_t start, const AttentionShape& shape, const Mask& mask) {
  const std::int64_t T = q.extent(0), H = shape.heads, Hkv = shape.kv_heads, Dh = shape.head_dim;
  SC2_CHECK(H > 0 && Hkv > 0 && H % Hkv == 0, "attention: {} heads are not a multiple of {} kv heads", H, Hkv);
  SC2_CHECK(q.extent(1) == H * Dh && out.extent(0) == T && out.extent(1) == H * Dh,
            "attention: q ({}, {}) / out ({}, {}) do not match {} heads of {}", q.extent(0), q.extent(1),
            out.extent(0), out.extent(1), H, Dh);
  SC2_CHECK(k.extent(0) == T && v.extent(0) == T && k.extent(1) == Hkv * Dh && v.extent(1) == Hkv * Dh,
            "attention: k/v must be ({}, {})", T, Hkv * Dh);
  SC2_CHECK(start >= 0 && past.capacity > 0, "attention: bad start {} or cache capacity {}", start, past.capacity);
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int64_t i = start + t;
    const std::int64_t needed = std::max(mask.first_visible(i), past.first);
    SC2_CHECK(needed >= std::max<std::int64_t>(past.first, start - past.capacity) && start >= past.first,
              "attention: position {} needs key {} but the cache holds only the last {} positions", i, needed,
              past.capacity);
  }
  run_attention(ctx, out, q, k, v, past, start, shape, mask);
}

namespace reference {
/// Plain attention over the full key/value history (no ring): keys, values
/// (P, Hkv·Dh) for positions 0..P−1; q, out (T, H·Dh) at positions start...
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
