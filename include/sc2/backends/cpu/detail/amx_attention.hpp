#pragma once
/// \file
/// CPU attention on AMX tiles, for the `amx_bf16` path. For the queries of a
/// few consecutive rows of one sequence that share kv head g (rows × heads
/// queries, taken 16 at a time), with keys j ∈ [lo_q, i_q] visible to query q:
///
///     S (16, n)  = Q (16, Dh) · Kᵀ (Dh, n)                     bf16 × bf16 → float
///     e_qj       = exp(scale · S_qj − m_q),  m_q = max_j scale · S_qj   float, 0 where not visible
///     out (16, Dh) = bf16(e) (16, n) · V (n, Dh)  /  Σ_j e_qj           bf16 × bf16 → float
///
/// q, k, v and e are rounded to bf16 for the products, as transformers' bf16
/// run (and PyTorch's CPU flash attention in it) rounds them; the softmax and
/// every sum are float. n runs over whole 32-key steps aligned to absolute
/// positions, so a query's products are summed over the same steps in the
/// same order whatever its block; the keys of a step it does not see have
/// e = 0 and add exactly zero.
///
/// Layout. A thread keeps the keys and values of its current (sequence, kv
/// head) converted to bf16 tiles in a ring of positions, so rows that follow
/// each other convert each key once:
///   - key tile (16 keys, 32 dims): the B operand of S, rows of dim pairs,
///     (K[n, 2r], K[n, 2r + 1]) for keys n = 0..15 (a 16 × 16 transpose of
///     32-bit pairs);
///   - value tile (32 keys, 16 dims): the B operand of out, rows of key pairs,
///     (V[2r, d], V[2r + 1, d]) for dims d = 0..15.
/// Q is the A operand of S (16 queries × 32 dims per tile), bf16(e) the A
/// operand of out (16 queries × 32 keys). Head dimensions that are not a
/// multiple of 32 are padded with zeros.

#include <sc2/backends/cpu/detail/amx.hpp>
#include <sc2/backends/cpu/detail/simd.hpp>
#include <sc2/core/dtype.hpp>
#include <sc2/ops/batch_plan.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>

namespace sc2::cpu::detail {

/// Keys per value tile and per product step of out: the alignment, in
/// absolute positions, of every key range the AMX attention runs over.
inline constexpr std::int64_t kAmxKeyStep = 32;

/// Rows of one sequence whose queries one AMX attention block takes together:
/// rows × heads is a multiple of 16 (48 queries for 12 heads), so the query
/// tiles are full, up to 16 rows.
inline int amx_attention_rows(int heads) noexcept { return 16 / std::gcd(heads, 16); }

/// Positions a thread's ring of converted keys and values must hold for
/// blocks of `rows` rows whose rows see at most `max_keys` keys: a block's
/// keys, widened to whole 32-key steps at both ends.
constexpr std::int64_t amx_attention_capacity(std::int64_t max_keys, std::int64_t rows) noexcept {
  return round_up(max_keys + rows - 1 + 2 * (kAmxKeyStep - 1), kAmxKeyStep);
}

/// Floats of per-thread scratch the AMX attention takes for a ring of
/// `capacity` positions and head dimension `head_dim`: the ring (keys and
/// values, bf16), the scores and bf16(e) of one query tile, its Q tiles and a
/// staging tile pair.
constexpr std::size_t amx_attention_scratch(std::int64_t capacity, std::int64_t head_dim) noexcept {
  const std::int64_t padded = round_up(head_dim, kTileK);
  return static_cast<std::size_t>(capacity * padded            // keys and values: 2 × bf16 per element
                                  + kTileRows * capacity       // scores
                                  + kTileRows * capacity / 2   // bf16(e)
                                  + kTileRows * padded / 2     // Q tiles
                                  + 2 * kTileRows * kTileRows  // staging
                                  + 64);                       // 64-byte alignment of each part
}

/// A thread's keys and values of one (sequence, kv head), converted to AMX
/// tiles, in a ring of `capacity` positions (a multiple of 32): positions
/// [valid_from, ready) are there.
struct AmxKvRing {
  bf16* keys = nullptr;          ///< (capacity/16 key tiles, padded/32 steps) tiles of 16 × 32 bf16
  bf16* values = nullptr;        ///< (capacity/32 key steps, padded/16 dim tiles) tiles of 16 × 32 bf16
  std::int64_t capacity = 0;     ///< positions, a multiple of 32
  std::int64_t padded = 0;       ///< head dimension padded to 32
  std::int64_t entry = -1;       ///< batch entry whose keys are held
  std::int64_t kv_head = -1;     ///< kv head whose keys are held
  std::int64_t valid_from = 0;   ///< first position held
  std::int64_t ready = 0;        ///< one past the last position held

  /// Key tile of the 16 keys from `position` (a multiple of 16), dims [32·step, 32·step + 32).
  const bf16* key_tile(std::int64_t position, std::int64_t step) const noexcept {
    const std::int64_t slot = position % capacity / kTileRows;
    return keys + (slot * (padded / kTileK) + step) * kTileRows * kTileK;
  }
  /// Value tile of the 32 keys from `position` (a multiple of 32), dims [16·tile, 16·tile + 16).
  const bf16* value_tile(std::int64_t position, std::int64_t tile) const noexcept {
    const std::int64_t slot = position % capacity / kAmxKeyStep;
    return values + (slot * (padded / kTileRows) + tile) * kTileRows * kTileK;
  }
};

/// Per-thread buffers of one query tile.
struct AmxQueryScratch {
  float* scores = nullptr;   ///< (16, width) float
  bf16* probs = nullptr;     ///< (16, width) bf16(e)
  bf16* q = nullptr;         ///< padded/32 A tiles of 16 queries × 32 dims
  float* staging = nullptr;  ///< 16 × 32 floats: two C tiles side by side
  std::int64_t width = 0;    ///< positions per row of scores and probs (the ring's capacity)
};

/// Carves the ring and the query buffers out of `scratch`
/// (`amx_attention_scratch(capacity, head_dim)` floats).
inline void amx_attention_carve(float* scratch, std::int64_t capacity, std::int64_t head_dim, AmxKvRing& ring,
                                AmxQueryScratch& tile) noexcept {
  const auto align = [](float* p) {
    return reinterpret_cast<float*>((reinterpret_cast<std::uintptr_t>(p) + 63) / 64 * 64);
  };
  const std::int64_t padded = round_up(head_dim, kTileK);
  float* p = align(scratch);
  ring = AmxKvRing{};
  ring.capacity = capacity;
  ring.padded = padded;
  ring.keys = reinterpret_cast<bf16*>(p);
  ring.values = ring.keys + capacity * padded;
  p = align(p + capacity * padded);
  tile.width = capacity;
  tile.scores = p;
  tile.probs = reinterpret_cast<bf16*>(align(p + kTileRows * capacity));
  tile.q = tile.probs + kTileRows * capacity;
  tile.staging = align(reinterpret_cast<float*>(tile.q + kTileRows * padded));
}

#if SC2_HAVE_AMX
SC2_AVX512_BEGIN
/// Transposes the 16 × 16 matrix of 32-bit elements held in r[0..15] (row i in r[i]) in place.
SC2_TARGET_AMX inline void transpose16x16_epi32(__m512i r[16]) noexcept {
  __m512i a[16], b[16];
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // b[4i + j], 128-bit lane L: column 4L + j of rows 4i .. 4i + 3.
  for (int i = 0; i < 4; ++i) {
    b[4 * i + 0] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
    b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
    b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
    b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i x0 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0x88), x1 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0xDD);
    const __m512i y0 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0x88);
    const __m512i y1 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0xDD);
    r[j] = _mm512_shuffle_i32x4(x0, y0, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(x0, y0, 0xDD);
    r[4 + j] = _mm512_shuffle_i32x4(x1, y1, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(x1, y1, 0xDD);
  }
}

/// 16 floats from `x`, the first `n` of them (zeros after).
SC2_TARGET_AMX inline __m512 load_first(const float* x, std::int64_t n) noexcept {
  if (n >= 16) return _mm512_loadu_ps(x);
  return _mm512_maskz_loadu_ps(n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1), x);
}

/// 32 floats from `x` (the first `n`, zeros after) rounded to bf16, in order:
/// 16 pairs of consecutive elements, one per 32-bit lane.
SC2_TARGET_AMX inline __m512i bf16_pairs(const float* x, std::int64_t n) noexcept {
  if (!x) return _mm512_setzero_si512();
  return (__m512i)_mm512_cvtne2ps_pbh(load_first(x + 16, n - 16), load_first(x, n));
}

/// Converts positions [from, to) (multiples of 32) of kv head g of entry `e`
/// into `ring`; keys outside [first, last] (which no query of the entry
/// sees, and whose pages the plan may not list) become zeros.
template <class KvLayer>
SC2_TARGET_AMX void amx_ring_convert(AmxKvRing& ring, const KvLayer& layer, const ops::BatchEntry& e,
                                     const std::int32_t* page_table, std::int64_t page_size, std::int64_t g,
                                     std::int64_t Dh, std::int64_t first, std::int64_t last, std::int64_t from,
                                     std::int64_t to) noexcept {
  const __m512i pairs = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (std::int64_t p0 = from; p0 < to; p0 += kAmxKeyStep) {
    const float* key[kAmxKeyStep];
    const float* value[kAmxKeyStep];
    for (std::int64_t j = 0; j < kAmxKeyStep; ++j) {
      const std::int64_t p = p0 + j;
      key[j] = value[j] = nullptr;
      if (p < first || p > last) continue;
      const std::int64_t at = layer.offset(ops::page_of(e, page_table, page_size, p), g, p % page_size);
      key[j] = layer.keys + at;
      value[j] = layer.values + at;
    }
    for (std::int64_t half = 0; half < 2; ++half)
      for (std::int64_t step = 0; step < ring.padded / kTileK; ++step) {
        __m512i rows[kTileRows];
        for (int n = 0; n < kTileRows; ++n) {
          const float* k = key[half * kTileRows + n];
          rows[n] = bf16_pairs(k ? k + step * kTileK : nullptr, Dh - step * kTileK);
        }
        transpose16x16_epi32(rows);
        bf16* tile = const_cast<bf16*>(ring.key_tile(p0 + half * kTileRows, step));
        for (int r = 0; r < kTileRows; ++r) _mm512_storeu_si512(tile + r * kTileK, rows[r]);
      }
    for (std::int64_t d = 0; d < ring.padded / kTileRows; ++d) {
      bf16* tile = const_cast<bf16*>(ring.value_tile(p0, d));
      for (int r = 0; r < kTileRows; ++r) {
        const float* v0 = value[2 * r];
        const float* v1 = value[2 * r + 1];
        const __m512 a = v0 ? load_first(v0 + d * kTileRows, Dh - d * kTileRows) : _mm512_setzero_ps();
        const __m512 b = v1 ? load_first(v1 + d * kTileRows, Dh - d * kTileRows) : _mm512_setzero_ps();
        _mm512_storeu_si512(tile + r * kTileK, _mm512_permutexvar_epi16(pairs, (__m512i)_mm512_cvtne2ps_pbh(b, a)));
      }
    }
  }
}

/// The queries of one AMX attention block: `rows` consecutive rows of one
/// sequence, `heads` query heads of one kv head each, query q = r · heads + h.
struct AmxAttentionBlock {
  const float* q = nullptr;      ///< row 0, first head: (rows, q_stride), heads Dh apart
  std::int64_t q_stride = 0;     ///< floats between rows of q
  float* out = nullptr;          ///< like q
  std::int64_t out_stride = 0;   ///< floats between rows of out
  int rows = 0;                  ///< rows in the block (at most 16)
  int heads = 0;                 ///< query heads per row
  std::int64_t head_dim = 0;     ///< Dh
  float scale = 0.0f;            ///< multiplier of q·k
  std::int64_t position[16] = {};  ///< each row's absolute position i
  std::int64_t first[16] = {};     ///< each row's first visible key lo
};

/// Attention of one block's queries over the keys and values in `ring`
/// (which holds every key they see), 16 queries at a time.
SC2_TARGET_AMX inline void amx_attention_block(const AmxAttentionBlock& blk, const AmxKvRing& ring,
                                               const AmxQueryScratch& s) noexcept {
  const std::int64_t Dh = blk.head_dim, steps = ring.padded / kTileK, queries = std::int64_t{blk.rows} * blk.heads;
  const std::int64_t p_bytes = s.width * static_cast<std::int64_t>(sizeof(bf16));
  const std::int64_t s_bytes = s.width * static_cast<std::int64_t>(sizeof(float));
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const AmxTileConfig config;  // every tile 16 rows × 64 bytes
  _tile_loadconfig(&config);
  for (std::int64_t q0 = 0; q0 < queries; q0 += kTileRows) {
    const int count = static_cast<int>(std::min<std::int64_t>(kTileRows, queries - q0));
    // The tile's key range, whole 32-key steps.
    std::int64_t lo = std::numeric_limits<std::int64_t>::max(), hi = 0;
    for (int m = 0; m < count; ++m) {
      const int r = static_cast<int>((q0 + m) / blk.heads);
      lo = std::min(lo, blk.first[r]);
      hi = std::max(hi, blk.position[r]);
    }
    const std::int64_t start = lo / kAmxKeyStep * kAmxKeyStep, span = round_up(hi + 1, kAmxKeyStep) - start;
    // Q tiles: bf16(q), zeros past Dh and for rows past the queries.
    for (int m = 0; m < kTileRows; ++m) {
      const float* x = nullptr;
      if (m < count) {
        const std::int64_t qi = q0 + m;
        x = blk.q + qi / blk.heads * blk.q_stride + qi % blk.heads * Dh;
      }
      for (std::int64_t step = 0; step < steps; ++step)
        _mm512_storeu_si512(s.q + (step * kTileRows + m) * kTileK,
                            bf16_pairs(x ? x + step * kTileK : nullptr, Dh - step * kTileK));
    }
    // S = Q Kᵀ, two key tiles at a time.
    for (std::int64_t j = 0; j < span; j += 2 * kTileRows) {
      _tile_zero(0);
      _tile_zero(1);
      for (std::int64_t step = 0; step < steps; ++step) {
        _tile_loadd(4, s.q + step * kTileRows * kTileK, 64);
        _tile_loadd(6, ring.key_tile(start + j, step), 64);
        _tile_loadd(7, ring.key_tile(start + j + kTileRows, step), 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
      }
      _tile_stored(0, s.scores + j, s_bytes);
      _tile_stored(1, s.scores + j + kTileRows, s_bytes);
    }
    // e = exp(scale·S − m) over each query's visible keys, bf16(e) for the
    // products, Σ e in float: lane sums over 16-key chunks in position order.
    float inverse[kTileRows];
    for (int m = 0; m < kTileRows; ++m) {
      const float* row = s.scores + m * s.width;
      bf16* probs = s.probs + m * s.width;
      if (m >= count) {
        std::fill(probs, probs + span, bf16{});
        continue;
      }
      const int r = static_cast<int>((q0 + m) / blk.heads);
      const std::int64_t a = blk.first[r] - start, b = blk.position[r] - start + 1;  // visible [a, b)
      const std::int64_t c0 = a / 16 * 16, c1 = round_up(b, 16);
      const auto visible = [&](std::int64_t c) {
        const std::int64_t lo_lane = std::max<std::int64_t>(a - c, 0), hi_lane = std::min<std::int64_t>(b - c, 16);
        return __mmask16(((1u << hi_lane) - 1) & ~((1u << lo_lane) - 1));
      };
      const __m512 scale = _mm512_set1_ps(blk.scale);
      __m512 max16 = neg_inf;
      for (std::int64_t c = c0; c < c1; c += 16)
        max16 = _mm512_mask_max_ps(max16, visible(c), max16, _mm512_mul_ps(_mm512_loadu_ps(row + c), scale));
      const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(max16));
      __m512 sum16 = _mm512_setzero_ps();
      std::fill(probs, probs + c0, bf16{});
      for (std::int64_t c = c0; c < c1; c += 16) {
        const __m512 e = _mm512_maskz_mov_ps(visible(c), exp16(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(row + c), scale), top)));
        sum16 = _mm512_add_ps(sum16, e);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(probs + c), (__m256i)_mm512_cvtneps_pbh(e));
      }
      std::fill(probs + c1, probs + span, bf16{});
      inverse[m] = 1.0f / _mm512_reduce_add_ps(sum16);
    }
    // out = bf16(e) V / Σ e, two 16-dim tiles at a time.
    for (std::int64_t d = 0; d < ring.padded / kTileRows; d += 2) {
      _tile_zero(0);
      _tile_zero(1);
      for (std::int64_t j = 0; j < span; j += kAmxKeyStep) {
        _tile_loadd(4, s.probs + j, p_bytes);
        _tile_loadd(6, ring.value_tile(start + j, d), 64);
        _tile_loadd(7, ring.value_tile(start + j, d + 1), 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
      }
      _tile_stored(0, s.staging, 2 * kTileRows * sizeof(float));
      _tile_stored(1, s.staging + kTileRows, 2 * kTileRows * sizeof(float));
      const std::int64_t n = std::min<std::int64_t>(2 * kTileRows, Dh - d * kTileRows);
      const __mmask32 lanes = n >= 32 ? ~__mmask32(0) : __mmask32((1u << n) - 1);
      for (int m = 0; m < count; ++m) {
        const std::int64_t qi = q0 + m;
        float* o = blk.out + qi / blk.heads * blk.out_stride + qi % blk.heads * Dh + d * kTileRows;
        const __m512 inv = _mm512_set1_ps(inverse[m]);
        _mm512_mask_storeu_ps(o, __mmask16(lanes), _mm512_mul_ps(_mm512_loadu_ps(s.staging + m * 2 * kTileRows), inv));
        _mm512_mask_storeu_ps(o + 16, __mmask16(lanes >> 16),
                              _mm512_mul_ps(_mm512_loadu_ps(s.staging + m * 2 * kTileRows + kTileRows), inv));
      }
    }
  }
  _tile_release();
}
SC2_AVX512_END
#endif

}  // namespace sc2::cpu::detail
