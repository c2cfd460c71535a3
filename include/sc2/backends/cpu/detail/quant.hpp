#pragma once
/// \file
/// CPU linear kernels for weights in GGML blocks (Q8_0, Q4_0, Q4_K, Q5_K,
/// Q6_K), kept in panels of 16 rows' blocks (quant/panels.hpp):
///
///     out[t, n] += Σ_k x[t, k] · w[n, k],   w[n, k] = dequantize(block of (n, k))[k mod B]
///
/// The weights are decoded in vector registers, one panel step (the 16 rows
/// of one k) at a time, into exactly the floats `quant::dequantize` gives:
///
///     Q8_0  w = d · q                        Q4_0  w = d · (q − 8)
///     Q4_K  w = (d·sc) · q − dmin·m          Q5_K  the same with 5-bit q
///     Q6_K  w = (d·sc) · (q − 32)
///
/// (every product but Q6_K's last is exact in float, so a fused multiply-add
/// gives the same bits as the reference's separate rounding), and each is
/// multiplied into the same chain of fused multiply-adds, in the same k
/// order and K blocks, as the float kernels of linear.hpp. So a quantized
/// matrix gives the bits of its dequantized float copy on every path, and the
/// batch invariance of the float kernels carries over unchanged.
///
/// Decode (few tokens) runs the fused tiles straight over the blocks: the
/// bound is reading the blocks' bytes, a quarter (Q8_0) to an eighth (Q4_K) of
/// f32's. Prefill decodes each K block of 128 rows once into float panels and
/// runs the float tiles over it.
///
/// The opt-in integer path (`Isa::avx512_vnni`) computes as llama.cpp does:
/// activations quantized per 32 to int8 (`ActivationBlocks`), the weights'
/// unsigned codes u summed against them exactly in int32 per group of 32
/// steps (`vpdpbusd`; from 16 tokens AMX-INT8 `tdpbsud` tiles, the same sums),
///
///     acc += (scale · x_scale) · (Σ u·q − offset · Σ q)  [− min · x_scale · Σ q]
///
/// per group in order. Decoding to float costs about five vector operations
/// per 16 weights of a 4-bit format, more than reading them; the integer sums
/// take about one per 64, so this path decodes at the memory's pace.

#include <sc2/backends/cpu/context.hpp>
#include <sc2/backends/cpu/detail/amx.hpp>
#include <sc2/backends/cpu/detail/panel_tiles.hpp>
#include <sc2/backends/cpu/detail/simd.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/quant/panels.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <cstdint>
#include <type_traits>

namespace sc2::cpu::detail {

using quant::Format;

/// Steps (values of k) one decoder group covers: a Q8_0 / Q4_0 block, or a
/// 32-weight group of a K-quant super-block (one scale and min).
inline constexpr int kGroupSteps = 32;

static_assert(quant::kPanelLanes == kPanelRows);

/// The block and group of step k (a multiple of 32) of a panel in `format`.
constexpr std::int64_t group_block(Format format, std::int64_t k) noexcept { return k / quant::block_elements(format); }
constexpr int group_in_block(Format format, std::int64_t k) noexcept {
  return static_cast<int>(k % quant::block_elements(format) / kGroupSteps);
}

#if SC2_HAVE_X86_SIMD
/// 16 f16 as 16 floats.
SC2_TARGET_AVX512 inline __m512 lanes_f16(const std::byte* p) noexcept {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
/// 16 bytes of a panel field (one scale of each of 16 rows) as 16 unsigned 32-bit lanes.
SC2_TARGET_AVX512 inline __m512i lanes_u8(const std::byte* p) noexcept {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
/// The same, signed.
SC2_TARGET_AVX512 inline __m512i lanes_i8(const std::byte* p) noexcept {
  return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
/// 64 bytes: 4 bytes of weight bits of each of 16 rows, one row per 32-bit lane.
SC2_TARGET_AVX512 inline __m512i load_quad(const std::byte* p) noexcept { return _mm512_loadu_si512(p); }
/// v >> count in each 32-bit lane.
SC2_TARGET_AVX512 inline __m512i shift_right(__m512i v, int count) noexcept {
  return _mm512_srlv_epi32(v, _mm512_set1_epi32(count));
}
/// (v >> shift) & mask in each 32-bit lane.
SC2_TARGET_AVX512 inline __m512i bits(__m512i v, int shift, int mask) noexcept {
  return _mm512_and_si512(_mm512_srli_epi32(v, static_cast<unsigned>(shift)), _mm512_set1_epi32(mask));
}

/// 8 f16 as 8 floats.
SC2_TARGET_AVX2 inline __m256 lanes8_f16(const std::byte* p) noexcept {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
/// 8 bytes as 8 unsigned 32-bit lanes.
SC2_TARGET_AVX2 inline __m256i lanes8_u8(const std::byte* p) noexcept {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
/// 8 signed bytes as 8 signed 32-bit lanes.
SC2_TARGET_AVX2 inline __m256i lanes8_i8(const std::byte* p) noexcept {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
/// 32 bytes: 4 bytes of weight bits of each of 8 rows.
SC2_TARGET_AVX2 inline __m256i load_quad8(const std::byte* p) noexcept {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
/// v >> count in each 32-bit lane.
SC2_TARGET_AVX2 inline __m256i shift_right(__m256i v, int count) noexcept {
  return _mm256_srlv_epi32(v, _mm256_set1_epi32(count));
}
/// (v >> shift) & mask in each 32-bit lane.
SC2_TARGET_AVX2 inline __m256i bits(__m256i v, int shift, int mask) noexcept {
  return _mm256_and_si256(_mm256_srli_epi32(v, shift), _mm256_set1_epi32(mask));
}

/// How far ahead of its reads a decode tile asks for a panel's bytes: 2 KiB
/// (measured on the 3B shapes, 2 threads: 1 KiB left Q6_K at 22 GB/s, 2 KiB
/// gave 25, 4 KiB no more; Q4_K and Q8_0 peaked at 2 KiB too).
inline constexpr std::size_t kPrefetchAheadBytes = 2048;

/// A panel's bytes are read in order, a group's share at a time: asks for the
/// `group_bytes` that lie a whole number of groups, about kPrefetchAheadBytes, past `at`.
SC2_TARGET_AVX2 inline void prefetch_ahead(const std::byte* at, std::size_t group_bytes) noexcept {
  const std::size_t ahead = (kPrefetchAheadBytes + group_bytes - 1) / group_bytes;
  for (std::size_t b = 0; b < group_bytes; b += 64)
    _mm_prefetch(reinterpret_cast<const char*>(at + ahead * group_bytes + b), _MM_HINT_T0);
}

// Decoders. `group(block, g)` readies group g (32 steps) of a panel block,
// `load(l4)` its steps l4 .. l4 + 3 (one 64-byte run of weight bits), and
// `step(j)` gives step l4 + j of the rows as floats; j is a constant once the
// callers' loops over it are unrolled, so each byte is one shift and mask.
// The AVX-512 decoders cover the 16 rows of a panel, the AVX2 ones the 8 rows
// lane0 .. lane0 + 7.

SC2_AVX512_BEGIN
/// Q8_0 on 16 rows: w = d · q.
struct DecodeQ8_0x16 {
  static constexpr Format format = Format::q8_0;
  __m512 d;
  __m512i quad;
  const std::byte* q;
  SC2_TARGET_AVX512 void group(const std::byte* block, int) noexcept { d = lanes_f16(block), q = block + 32; }
  SC2_TARGET_AVX512 void load(int l4) noexcept { quad = load_quad(q + kPanelRows * l4); }
  SC2_TARGET_AVX512 __m512 step(int j) const noexcept {
    const __m512i signed_byte = _mm512_srai_epi32(_mm512_slli_epi32(quad, static_cast<unsigned>(24 - 8 * j)), 24);
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(signed_byte));
  }
};

/// Q4_0 on 16 rows: w = d · (q − 8), steps l and l + 16 in the low and high nibbles of byte l.
struct DecodeQ4_0x16 {
  static constexpr Format format = Format::q4_0;
  __m512 d;
  __m512i quad;
  const std::byte* q;
  SC2_TARGET_AVX512 void group(const std::byte* block, int) noexcept { d = lanes_f16(block), q = block + 32; }
  SC2_TARGET_AVX512 void load(int l4) noexcept {
    quad = shift_right(load_quad(q + kPanelRows * (l4 & 15)), l4 < 16 ? 0 : 4);
  }
  SC2_TARGET_AVX512 __m512 step(int j) const noexcept {
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(bits(quad, 8 * j, 15), _mm512_set1_epi32(8))));
  }
};

/// Q4_K (Q5_K with `High`) on 16 rows: w = (d·sc) · q − dmin·m, q the nibble of
/// group g (and its fifth bit, bit g of qh[l]).
template <bool High>
struct DecodeKx16 {
  static constexpr Format format = High ? Format::q5_k : Format::q4_k;
  __m512 scale, min;
  __m512i quad, high;
  const std::byte* q;
  const std::byte* qh;
  int g;
  SC2_TARGET_AVX512 void group(const std::byte* block, int group) noexcept {
    // quant::scale_min lane-wise, from the 12 packed scale bytes of each row.
    const auto s = [&](int i) SC2_TARGET_AVX512 { return lanes_u8(block + 64 + kPanelRows * i); };
    const __m512i m6 = _mm512_set1_epi32(63), m4 = _mm512_set1_epi32(15);
    __m512i sc, m;
    if (group < 4) {
      sc = _mm512_and_si512(s(group), m6), m = _mm512_and_si512(s(group + 4), m6);
    } else {
      sc = _mm512_or_si512(_mm512_and_si512(s(group + 4), m4), _mm512_slli_epi32(_mm512_srli_epi32(s(group - 4), 6), 4));
      m = _mm512_or_si512(_mm512_srli_epi32(s(group + 4), 4), _mm512_slli_epi32(_mm512_srli_epi32(s(group), 6), 4));
    }
    scale = _mm512_mul_ps(lanes_f16(block), _mm512_cvtepi32_ps(sc));
    min = _mm512_mul_ps(lanes_f16(block + 32), _mm512_cvtepi32_ps(m));
    qh = block + 256;
    q = block + (High ? 768 : 256) + kPanelRows * kGroupSteps * (group / 2);
    g = group;
  }
  SC2_TARGET_AVX512 void load(int l4) noexcept {
    quad = shift_right(load_quad(q + kPanelRows * l4), 4 * (g & 1));
    if constexpr (High) high = shift_right(load_quad(qh + kPanelRows * l4), g);
  }
  SC2_TARGET_AVX512 __m512 step(int j) const noexcept {
    __m512i n = bits(quad, 8 * j, 15);
    if constexpr (High) n = _mm512_or_si512(n, _mm512_slli_epi32(bits(high, 8 * j, 1), 4));
    return _mm512_fmsub_ps(_mm512_cvtepi32_ps(n), scale, min);
  }
};

/// Q6_K on 16 rows: w = (d·sc) · (q − 32), q = 4 bits of ql and 2 of qh;
/// group g covers weights 128·(g/4) + 32·(g%4) + l, its scale changing at l = 16.
struct DecodeQ6_Kx16 {
  static constexpr Format format = Format::q6_k;
  __m512 scale0, scale1, scale;
  __m512i low, high;
  const std::byte* ql;
  const std::byte* qh;
  int ql_shift, qh_shift;
  SC2_TARGET_AVX512 void group(const std::byte* block, int g) noexcept {
    const int h = g / 4, m = g % 4;
    const __m512 d = lanes_f16(block + 3328);
    const std::byte* sc = block + 3072 + kPanelRows * (8 * h + 2 * m);
    scale0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(lanes_i8(sc)));
    scale1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(lanes_i8(sc + kPanelRows)));
    ql = block + kPanelRows * (64 * h + 32 * (m & 1));
    qh = block + 2048 + kPanelRows * 32 * h;
    ql_shift = 4 * (m >> 1), qh_shift = 2 * m;
  }
  SC2_TARGET_AVX512 void load(int l4) noexcept {
    low = shift_right(load_quad(ql + kPanelRows * l4), ql_shift);
    high = shift_right(load_quad(qh + kPanelRows * l4), qh_shift);
    scale = l4 < 16 ? scale0 : scale1;
  }
  SC2_TARGET_AVX512 __m512 step(int j) const noexcept {
    const __m512i n = _mm512_or_si512(bits(low, 8 * j, 15), _mm512_slli_epi32(bits(high, 8 * j, 3), 4));
    return _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_sub_epi32(n, _mm512_set1_epi32(32))));
  }
};

/// The fused decode tile: out[t, j] += Σ_k x[t, k] · w[j, k] for MT tokens ×
/// NP panels over kc steps (a multiple of 32) from the panel block at `panel`,
/// each weight decoded once and multiplied into all MT chains.
template <class Decode, int MT, int NP>
SC2_TARGET_AVX512 void quant_tile_avx512(const float* x, std::int64_t x_stride, const std::byte* panel,
                                         std::int64_t panel_stride, std::int64_t kc, float* out,
                                         std::int64_t out_stride, int cols) noexcept {
  constexpr std::size_t block_bytes = quant::panel_block_bytes(Decode::format);
  constexpr std::size_t group_bytes = block_bytes * kGroupSteps / quant::block_elements(Decode::format);
  __m512 acc[MT][NP];
  SC2_UNROLL for (int t = 0; t < MT; ++t) SC2_UNROLL for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < kc; k += kGroupSteps) {
    Decode decode[NP];
    SC2_UNROLL for (int p = 0; p < NP; ++p) {
      const std::byte* block = panel + p * panel_stride + group_block(Decode::format, k) * block_bytes;
      decode[p].group(block, group_in_block(Decode::format, k));
      prefetch_ahead(block + group_in_block(Decode::format, k) * group_bytes, group_bytes);
    }
    for (int l4 = 0; l4 < kGroupSteps; l4 += 4) {
      SC2_UNROLL for (int p = 0; p < NP; ++p) decode[p].load(l4);
      SC2_UNROLL for (int j = 0; j < 4; ++j) {
        __m512 wv[NP];
        SC2_UNROLL for (int p = 0; p < NP; ++p) wv[p] = decode[p].step(j);
        SC2_UNROLL for (int t = 0; t < MT; ++t) {
          const __m512 xv = _mm512_set1_ps(x[t * x_stride + k + l4 + j]);
          SC2_UNROLL for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_fmadd_ps(xv, wv[p], acc[t][p]);
        }
      }
    }
  }
  add_tile_avx512<MT, NP>(acc, out, out_stride, cols);
}

/// Decodes kc steps (a multiple of 32) of one panel, from the panel block at
/// `panel`, into float panel steps at `dst` (16 floats a step).
template <class Decode>
SC2_TARGET_AVX512 void decode_steps_avx512(const std::byte* panel, std::int64_t kc, float* dst) noexcept {
  constexpr std::size_t block_bytes = quant::panel_block_bytes(Decode::format);
  for (std::int64_t k = 0; k < kc; k += kGroupSteps) {
    Decode decode;
    decode.group(panel + group_block(Decode::format, k) * block_bytes, group_in_block(Decode::format, k));
    for (int l4 = 0; l4 < kGroupSteps; l4 += 4) {
      decode.load(l4);
      SC2_UNROLL for (int j = 0; j < 4; ++j) _mm512_storeu_ps(dst + (k + l4 + j) * kPanelRows, decode.step(j));
    }
  }
}
SC2_AVX512_END

/// Q8_0 on 8 rows.
struct DecodeQ8_0x8 {
  static constexpr Format format = Format::q8_0;
  __m256 d;
  __m256i quad;
  const std::byte* q;
  SC2_TARGET_AVX2 void group(const std::byte* block, int, int lane0) noexcept {
    d = lanes8_f16(block + 2 * lane0), q = block + 32 + 4 * lane0;
  }
  SC2_TARGET_AVX2 void load(int l4) noexcept { quad = load_quad8(q + kPanelRows * l4); }
  SC2_TARGET_AVX2 __m256 step(int j) const noexcept {
    const __m256i signed_byte = _mm256_srai_epi32(_mm256_slli_epi32(quad, 24 - 8 * j), 24);
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(signed_byte));
  }
};

/// Q4_0 on 8 rows.
struct DecodeQ4_0x8 {
  static constexpr Format format = Format::q4_0;
  __m256 d;
  __m256i quad;
  const std::byte* q;
  SC2_TARGET_AVX2 void group(const std::byte* block, int, int lane0) noexcept {
    d = lanes8_f16(block + 2 * lane0), q = block + 32 + 4 * lane0;
  }
  SC2_TARGET_AVX2 void load(int l4) noexcept {
    quad = shift_right(load_quad8(q + kPanelRows * (l4 & 15)), l4 < 16 ? 0 : 4);
  }
  SC2_TARGET_AVX2 __m256 step(int j) const noexcept {
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(bits(quad, 8 * j, 15), _mm256_set1_epi32(8))));
  }
};

/// Q4_K (Q5_K with `High`) on 8 rows.
template <bool High>
struct DecodeKx8 {
  static constexpr Format format = High ? Format::q5_k : Format::q4_k;
  __m256 scale, min;
  __m256i quad, high;
  const std::byte* q;
  const std::byte* qh;
  int g;
  SC2_TARGET_AVX2 void group(const std::byte* block, int group, int lane0) noexcept {
    const auto s = [&](int i) SC2_TARGET_AVX2 { return lanes8_u8(block + 64 + kPanelRows * i + lane0); };
    const __m256i m6 = _mm256_set1_epi32(63), m4 = _mm256_set1_epi32(15);
    __m256i sc, m;
    if (group < 4) {
      sc = _mm256_and_si256(s(group), m6), m = _mm256_and_si256(s(group + 4), m6);
    } else {
      sc = _mm256_or_si256(_mm256_and_si256(s(group + 4), m4), _mm256_slli_epi32(_mm256_srli_epi32(s(group - 4), 6), 4));
      m = _mm256_or_si256(_mm256_srli_epi32(s(group + 4), 4), _mm256_slli_epi32(_mm256_srli_epi32(s(group), 6), 4));
    }
    scale = _mm256_mul_ps(lanes8_f16(block + 2 * lane0), _mm256_cvtepi32_ps(sc));
    min = _mm256_mul_ps(lanes8_f16(block + 32 + 2 * lane0), _mm256_cvtepi32_ps(m));
    qh = block + 256 + 4 * lane0;
    q = block + (High ? 768 : 256) + kPanelRows * kGroupSteps * (group / 2) + 4 * lane0;
    g = group;
  }
  SC2_TARGET_AVX2 void load(int l4) noexcept {
    quad = shift_right(load_quad8(q + kPanelRows * l4), 4 * (g & 1));
    if constexpr (High) high = shift_right(load_quad8(qh + kPanelRows * l4), g);
  }
  SC2_TARGET_AVX2 __m256 step(int j) const noexcept {
    __m256i n = bits(quad, 8 * j, 15);
    if constexpr (High) n = _mm256_or_si256(n, _mm256_slli_epi32(bits(high, 8 * j, 1), 4));
    return _mm256_fmsub_ps(_mm256_cvtepi32_ps(n), scale, min);
  }
};

/// Q6_K on 8 rows.
struct DecodeQ6_Kx8 {
  static constexpr Format format = Format::q6_k;
  __m256 scale0, scale1, scale;
  __m256i low, high;
  const std::byte* ql;
  const std::byte* qh;
  int ql_shift, qh_shift;
  SC2_TARGET_AVX2 void group(const std::byte* block, int g, int lane0) noexcept {
    const int h = g / 4, m = g % 4;
    const __m256 d = lanes8_f16(block + 3328 + 2 * lane0);
    const std::byte* sc = block + 3072 + kPanelRows * (8 * h + 2 * m) + lane0;
    scale0 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(lanes8_i8(sc)));
    scale1 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(lanes8_i8(sc + kPanelRows)));
    ql = block + kPanelRows * (64 * h + 32 * (m & 1)) + 4 * lane0;
    qh = block + 2048 + kPanelRows * 32 * h + 4 * lane0;
    ql_shift = 4 * (m >> 1), qh_shift = 2 * m;
  }
  SC2_TARGET_AVX2 void load(int l4) noexcept {
    low = shift_right(load_quad8(ql + kPanelRows * l4), ql_shift);
    high = shift_right(load_quad8(qh + kPanelRows * l4), qh_shift);
    scale = l4 < 16 ? scale0 : scale1;
  }
  SC2_TARGET_AVX2 __m256 step(int j) const noexcept {
    const __m256i n = _mm256_or_si256(bits(low, 8 * j, 15), _mm256_slli_epi32(bits(high, 8 * j, 3), 4));
    return _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_sub_epi32(n, _mm256_set1_epi32(32))));
  }
};

/// The fused decode tile on AVX2: MT tokens × the 16 rows of one panel, as
/// two halves of 8 rows.
template <class Decode, int MT>
SC2_TARGET_AVX2 void quant_tile_avx2(const float* x, std::int64_t x_stride, const std::byte* panel,
                                     std::int64_t /*panel_stride*/, std::int64_t kc, float* out,
                                     std::int64_t out_stride, int cols) noexcept {
  constexpr std::size_t block_bytes = quant::panel_block_bytes(Decode::format);
  __m256 acc[MT][2];
  SC2_UNROLL for (int t = 0; t < MT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (std::int64_t k = 0; k < kc; k += kGroupSteps) {
    const std::byte* block = panel + group_block(Decode::format, k) * block_bytes;
    Decode low, high;
    low.group(block, group_in_block(Decode::format, k), 0);
    high.group(block, group_in_block(Decode::format, k), 8);
    for (int l4 = 0; l4 < kGroupSteps; l4 += 4) {
      low.load(l4), high.load(l4);
      SC2_UNROLL for (int j = 0; j < 4; ++j) {
        const __m256 w0 = low.step(j), w1 = high.step(j);
        SC2_UNROLL for (int t = 0; t < MT; ++t) {
          const __m256 xv = _mm256_broadcast_ss(x + t * x_stride + k + l4 + j);
          acc[t][0] = _mm256_fmadd_ps(xv, w0, acc[t][0]);
          acc[t][1] = _mm256_fmadd_ps(xv, w1, acc[t][1]);
        }
      }
    }
  }
  add_tile_avx2<MT>(acc, out, out_stride, cols);
}

/// `decode_steps_avx512` on AVX2.
template <class Decode>
SC2_TARGET_AVX2 void decode_steps_avx2(const std::byte* panel, std::int64_t kc, float* dst) noexcept {
  constexpr std::size_t block_bytes = quant::panel_block_bytes(Decode::format);
  for (std::int64_t k = 0; k < kc; k += kGroupSteps) {
    const std::byte* block = panel + group_block(Decode::format, k) * block_bytes;
    Decode low, high;
    low.group(block, group_in_block(Decode::format, k), 0);
    high.group(block, group_in_block(Decode::format, k), 8);
    for (int l4 = 0; l4 < kGroupSteps; l4 += 4) {
      low.load(l4), high.load(l4);
      SC2_UNROLL for (int j = 0; j < 4; ++j) {
        _mm256_storeu_ps(dst + (k + l4 + j) * kPanelRows, low.step(j));
        _mm256_storeu_ps(dst + (k + l4 + j) * kPanelRows + 8, high.step(j));
      }
    }
  }
}
#endif

/// Int8 activations for the integer path (`Isa::avx512_vnni`): each row of x
/// cut into blocks of 32, each block scaled by its largest magnitude onto
/// −127..127 and rounded to nearest (ties to even), as llama.cpp quantizes
/// activations for its integer dot products (with a float scale here):
///
///     scale[t, b] = max_k |x[t, 32b + k]| / 127,   q[t, k] = round(x[t, k] / scale[t, k / 32])
///     sums[t, s] = Σ q[t, 16s .. 16s + 15]
///
/// Every row is quantized on its own, so a token's int8 values do not depend
/// on the batch.
struct ActivationBlocks {
  std::int8_t* q = nullptr;     ///< (T, K) int8 values
  float* scale = nullptr;       ///< (T, K / 32) block scales
  std::int32_t* sums = nullptr; ///< (T, K / 16) sums of 16 values
  std::int64_t K = 0;           ///< row length, a multiple of 32

  /// Bytes of T rows of K.
  static constexpr std::size_t bytes(std::int64_t T, std::int64_t K) noexcept {
    return static_cast<std::size_t>(T * K + T * (K / 32) * 4 + T * (K / 16) * 4);
  }
  /// The blocks of T rows of K at `data` (`bytes(T, K)` of them, 4-byte aligned).
  static ActivationBlocks at(std::byte* data, std::int64_t T, std::int64_t K) noexcept {
    ActivationBlocks a;
    a.scale = reinterpret_cast<float*>(data);
    a.sums = reinterpret_cast<std::int32_t*>(a.scale + T * (K / 32));
    a.q = reinterpret_cast<std::int8_t*>(a.sums + T * (K / 16));
    a.K = K;
    return a;
  }
};

/// Quantizes rows [t0, t1) of x into `a` (scalar; the reference of the integer path).
inline void quantize_activations(ConstMatrixView x, const ActivationBlocks& a, std::int64_t t0, std::int64_t t1) noexcept {
  const std::int64_t K = a.K;
  for (std::int64_t t = t0; t < t1; ++t) {
    const float* row = x.data() + t * x.stride(0);
    for (std::int64_t b = 0; b < K / 32; ++b) {
      float amax = 0.0f;
      for (int k = 0; k < 32; ++k) amax = std::max(amax, std::abs(row[32 * b + k]));
      const float scale = amax / 127.0f, inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
      a.scale[t * (K / 32) + b] = scale;
      for (int h = 0; h < 2; ++h) {
        std::int32_t sum = 0;
        for (int k = 16 * h; k < 16 * h + 16; ++k) {
          const auto q = static_cast<std::int8_t>(std::nearbyint(row[32 * b + k] * inverse));
          a.q[t * K + 32 * b + k] = q;
          sum += q;
        }
        a.sums[t * (K / 16) + 2 * b + h] = sum;
      }
    }
  }
}

#if SC2_HAVE_X86_SIMD
SC2_AVX512_BEGIN
// Integer decoders (`Isa::avx512_vnni`): `group(block, g)` readies group g,
// `quad(i)` gives steps 4i .. 4i + 3 of the 16 rows as unsigned bytes u (64
// bytes, 4 per row), and the group's weights are w = scale · (u − offset) − min
// per row; Q6_K's scale changes after 16 steps (`scale1`).

/// Q8_0: u = q + 128 (the sign bit flipped), scale d, offset 128.
struct VnniQ8_0 {
  static constexpr Format format = Format::q8_0;
  static constexpr int offset = 128;
  static constexpr bool has_min = false, two_scales = false;
  __m512 scale, scale1, min;
  const std::byte* q;
  SC2_TARGET_AVX512_VNNI void group(const std::byte* block, int) noexcept { scale = lanes_f16(block), q = block + 32; }
  SC2_TARGET_AVX512_VNNI __m512i quad(int i) const noexcept {
    return _mm512_xor_si512(load_quad(q + 64 * i), _mm512_set1_epi32(static_cast<int>(0x80808080u)));
  }
};

/// Q4_0: u = the nibble, scale d, offset 8.
struct VnniQ4_0 {
  static constexpr Format format = Format::q4_0;
  static constexpr int offset = 8;
  static constexpr bool has_min = false, two_scales = false;
  __m512 scale, scale1, min;
  const std::byte* q;
  SC2_TARGET_AVX512_VNNI void group(const std::byte* block, int) noexcept { scale = lanes_f16(block), q = block + 32; }
  SC2_TARGET_AVX512_VNNI __m512i quad(int i) const noexcept {
    return _mm512_and_si512(shift_right(load_quad(q + 64 * (i & 3)), i < 4 ? 0 : 4), _mm512_set1_epi32(0x0F0F0F0F));
  }
};

/// Q4_K (Q5_K with `High`): u = the nibble (and fifth bit), scale d·sc, min dmin·m.
template <bool High>
struct VnniK {
  static constexpr Format format = High ? Format::q5_k : Format::q4_k;
  static constexpr int offset = 0;
  static constexpr bool has_min = true, two_scales = false;
  __m512 scale, scale1, min;
  const std::byte* q;
  const std::byte* qh;
  int g;
  SC2_TARGET_AVX512_VNNI void group(const std::byte* block, int group) noexcept {
    DecodeKx16<High> decode;
    decode.group(block, group);
    scale = decode.scale, min = decode.min, q = decode.q, qh = decode.qh, g = group;
  }
  SC2_TARGET_AVX512_VNNI __m512i quad(int i) const noexcept {
    __m512i u = _mm512_and_si512(shift_right(load_quad(q + 64 * i), 4 * (g & 1)), _mm512_set1_epi32(0x0F0F0F0F));
    if constexpr (High) {
      const __m512i h = _mm512_and_si512(shift_right(load_quad(qh + 64 * i), g), _mm512_set1_epi32(0x01010101));
      u = _mm512_or_si512(u, _mm512_slli_epi32(h, 4));
    }
    return u;
  }
};

/// Q6_K: u = 4 bits of ql and 2 of qh, scale d·sc (one per 16 steps), offset 32.
struct VnniQ6_K {
  static constexpr Format format = Format::q6_k;
  static constexpr int offset = 32;
  static constexpr bool has_min = false, two_scales = true;
  __m512 scale, scale1, min;
  const std::byte* ql;
  const std::byte* qh;
  int ql_shift, qh_shift;
  SC2_TARGET_AVX512_VNNI void group(const std::byte* block, int g) noexcept {
    DecodeQ6_Kx16 decode;
    decode.group(block, g);
    scale = decode.scale0, scale1 = decode.scale1, ql = decode.ql, qh = decode.qh;
    ql_shift = decode.ql_shift, qh_shift = decode.qh_shift;
  }
  SC2_TARGET_AVX512_VNNI __m512i quad(int i) const noexcept {
    // The 2 high bits rotated into bits 4..5 of their byte (what crosses bytes is masked off),
    // then (low & 0x0F) | high in one ternary-logic operation.
    const __m512i high = _mm512_and_si512(_mm512_rolv_epi32(load_quad(qh + 64 * i), _mm512_set1_epi32((4 - qh_shift) & 31)),
                                          _mm512_set1_epi32(0x30303030));
    return _mm512_ternarylogic_epi32(shift_right(load_quad(ql + 64 * i), ql_shift), high,
                                     _mm512_set1_epi32(0x0F0F0F0F), 0xEC);
  }
};

/// The integer tile: out[t, j] += Σ_k x[t, k] · w[j, k] for MT tokens × NP
/// panels over kc steps from the panel block at `panel`, with x as int8
/// blocks (`a`, from step k0 of its rows t0 ..): per group of 32 steps (16
/// for Q6_K's scales) and lane, the exact integer sum Σ u·q of `vpdpbusd`, then
///
///     acc += (scale · x_scale) · (Σ u·q − offset · Σ q)  [− min · (x_scale · Σ q)]
///
/// in float, in group order: the same operations for a token whatever T.
template <class Decode, int MT, int NP>
SC2_TARGET_AVX512_VNNI void vnni_tile(const ActivationBlocks& a, std::int64_t t0, std::int64_t k0,
                                      const std::byte* panel, std::int64_t panel_stride, std::int64_t kc, float* out,
                                      std::int64_t out_stride, int cols) noexcept {
  constexpr std::size_t block_bytes = quant::panel_block_bytes(Decode::format);
  constexpr int parts = Decode::two_scales ? 2 : 1;  // integer sums per group
  const std::int64_t K = a.K;
  constexpr std::size_t group_bytes = block_bytes * kGroupSteps / quant::block_elements(Decode::format);
  __m512 acc[MT][NP];
  SC2_UNROLL for (int t = 0; t < MT; ++t) SC2_UNROLL for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < kc; k += kGroupSteps) {
    Decode decode[NP];
    SC2_UNROLL for (int p = 0; p < NP; ++p) {
      const std::byte* block = panel + p * panel_stride + group_block(Decode::format, k) * block_bytes;
      decode[p].group(block, group_in_block(Decode::format, k));
      prefetch_ahead(block + group_in_block(Decode::format, k) * group_bytes, group_bytes);
    }
    const std::int64_t kx = k0 + k;  // the step in x's rows
    SC2_UNROLL for (int part = 0; part < parts; ++part) {
      __m512i dot[MT][NP];
      SC2_UNROLL for (int t = 0; t < MT; ++t) SC2_UNROLL for (int p = 0; p < NP; ++p) dot[t][p] = _mm512_setzero_si512();
      SC2_UNROLL for (int i = part * 8 / parts; i < (part + 1) * 8 / parts; ++i) {
        __m512i u[NP];
        SC2_UNROLL for (int p = 0; p < NP; ++p) u[p] = decode[p].quad(i);
        SC2_UNROLL for (int t = 0; t < MT; ++t) {
          std::int32_t word;
          std::memcpy(&word, a.q + (t0 + t) * K + kx + 4 * i, 4);
          const __m512i xq = _mm512_set1_epi32(word);
          SC2_UNROLL for (int p = 0; p < NP; ++p) dot[t][p] = _mm512_dpbusd_epi32(dot[t][p], u[p], xq);
        }
      }
      SC2_UNROLL for (int t = 0; t < MT; ++t) {
        const float x_scale = a.scale[(t0 + t) * (K / 32) + kx / 32];
        const std::int32_t* sums = a.sums + (t0 + t) * (K / 16) + kx / 16;
        const std::int32_t q_sum = parts == 2 ? sums[part] : sums[0] + sums[1];
        SC2_UNROLL for (int p = 0; p < NP; ++p) {
          const __m512 scale = _mm512_mul_ps(part == 0 ? decode[p].scale : decode[p].scale1, _mm512_set1_ps(x_scale));
          const __m512i centred = _mm512_sub_epi32(dot[t][p], _mm512_set1_epi32(Decode::offset * q_sum));
          acc[t][p] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(centred), acc[t][p]);
          if constexpr (Decode::has_min)
            acc[t][p] = _mm512_fnmadd_ps(decode[p].min, _mm512_set1_ps(x_scale * static_cast<float>(q_sum)), acc[t][p]);
        }
      }
    }
  }
  add_tile_avx512<MT, NP>(acc, out, out_stride, cols);
}

/// `quantize_activations` on AVX-512: the same values (max, one division, a
/// product and round to nearest even per element, all exact IEEE operations).
SC2_TARGET_AVX512 inline void quantize_activations_avx512(ConstMatrixView x, const ActivationBlocks& a, std::int64_t t0,
                                                          std::int64_t t1) noexcept {
  const std::int64_t K = a.K;
  for (std::int64_t t = t0; t < t1; ++t) {
    const float* row = x.data() + t * x.stride(0);
    for (std::int64_t b = 0; b < K / 32; ++b) {
      const __m512 v0 = _mm512_loadu_ps(row + 32 * b), v1 = _mm512_loadu_ps(row + 32 * b + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
      const float scale = amax / 127.0f, inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
      a.scale[t * (K / 32) + b] = scale;
      const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(inverse)));
      const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(inverse)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(a.q + t * K + 32 * b), _mm512_cvtepi32_epi8(q0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(a.q + t * K + 32 * b + 16), _mm512_cvtepi32_epi8(q1));
      a.sums[t * (K / 16) + 2 * b] = _mm512_reduce_add_epi32(q0);
      a.sums[t * (K / 16) + 2 * b + 1] = _mm512_reduce_add_epi32(q1);
    }
  }
}
SC2_AVX512_END
#endif

/// `decode_steps` on the scalar path: each block dequantized as the reference does.
inline void decode_steps_scalar(Format format, const std::byte* panel, std::int64_t kc, float* dst) noexcept {
  const std::int64_t B = quant::block_elements(format);
  float block[quant::kSuperBlock * kPanelRows];
  for (std::int64_t k = 0; k < kc; k += B) {
    quant::dequantize_panel_block(format, panel + (k / B) * quant::panel_block_bytes(format), block);
    std::copy(block, block + std::min(B, kc - k) * kPanelRows, dst + k * kPanelRows);
  }
}

/// The scalar tile: the K block decoded into float panel steps, then the
/// float tile over them (the same chain of fused multiply-adds).
template <Format F, int MT>
void quant_tile_scalar(const float* x, std::int64_t x_stride, const std::byte* panel, std::int64_t /*panel_stride*/,
                       std::int64_t kc, float* out, std::int64_t out_stride, int cols) noexcept {
  float steps[kPackK * kPanelRows];
  decode_steps_scalar(F, panel, kc, steps);
  panel_tile_scalar<float, MT>(x, x_stride, steps, kPanelRows, kc, out, out_stride, cols);
}

/// Signature of the fused decode tiles (PanelTile over bytes).
using QuantTile = void (*)(const float*, std::int64_t, const std::byte*, std::int64_t, std::int64_t, float*,
                           std::int64_t, int) noexcept;

#if SC2_HAVE_X86_SIMD
/// Signature of the integer tiles.
using VnniTile = void (*)(const ActivationBlocks&, std::int64_t, std::int64_t, const std::byte*, std::int64_t,
                          std::int64_t, float*, std::int64_t, int) noexcept;
#endif
/// Most tokens of one integer tile: 4 (16 integer and 16 float accumulators over 2 panels).
inline constexpr int kVnniTileTokens = 4;

/// Most tokens of one fused decode tile: 8 on AVX-512 (16 of the 32 registers
/// accumulate over 2 panels; the decoders keep their scales in the others),
/// 6 on AVX2 and the scalar path.
inline constexpr int kQuantTileTokens512 = 8;
/// Most tokens of one fused decode tile on `isa`.
constexpr int quant_tile_tokens(Isa isa) noexcept { return uses_avx512(isa) ? kQuantTileTokens512 : kPanelTokens; }

/// The fused tiles of one format, MT = 1 .. 8 (AVX-512, 1 and 2 panels), 1 .. 6 (AVX2, scalar).
template <Format F> struct QuantTiles {
  template <int... I> static constexpr std::array<QuantTile, sizeof...(I)> scalar(std::integer_sequence<int, I...>) {
    return {quant_tile_scalar<F, I + 1>...};
  }
#if SC2_HAVE_X86_SIMD
  using Decode16 = std::conditional_t<
      F == Format::q8_0, DecodeQ8_0x16,
      std::conditional_t<F == Format::q4_0, DecodeQ4_0x16,
                         std::conditional_t<F == Format::q6_k, DecodeQ6_Kx16, DecodeKx16<F == Format::q5_k>>>>;
  using Decode8 = std::conditional_t<
      F == Format::q8_0, DecodeQ8_0x8,
      std::conditional_t<F == Format::q4_0, DecodeQ4_0x8,
                         std::conditional_t<F == Format::q6_k, DecodeQ6_Kx8, DecodeKx8<F == Format::q5_k>>>>;
  template <int NP, int... I>
  static constexpr std::array<QuantTile, sizeof...(I)> avx512(std::integer_sequence<int, I...>) {
    return {quant_tile_avx512<Decode16, I + 1, NP>...};
  }
  template <int... I> static constexpr std::array<QuantTile, sizeof...(I)> avx2(std::integer_sequence<int, I...>) {
    return {quant_tile_avx2<Decode8, I + 1>...};
  }
#endif

  /// The tile for `mt` tokens over `panels` panels on `isa`.
  static QuantTile tile(Isa isa, int mt, int panels) noexcept {
    static constexpr auto on_scalar = scalar(std::make_integer_sequence<int, kPanelTokens>{});
#if SC2_HAVE_X86_SIMD
    static constexpr std::array<std::array<QuantTile, kQuantTileTokens512>, 2> on_avx512 = {
        avx512<1>(std::make_integer_sequence<int, kQuantTileTokens512>{}),
        avx512<2>(std::make_integer_sequence<int, kQuantTileTokens512>{})};
    static constexpr auto on_avx2 = avx2(std::make_integer_sequence<int, kPanelTokens>{});
    if (uses_avx512(isa)) return on_avx512[static_cast<std::size_t>(panels - 1)][static_cast<std::size_t>(mt - 1)];
    if (uses_avx2(isa)) return on_avx2[static_cast<std::size_t>(mt - 1)];
#endif
    (void)isa, (void)panels;
    return on_scalar[static_cast<std::size_t>(mt - 1)];
  }

#if SC2_HAVE_X86_SIMD
  using Vnni = std::conditional_t<
      F == Format::q8_0, VnniQ8_0,
      std::conditional_t<F == Format::q4_0, VnniQ4_0,
                         std::conditional_t<F == Format::q6_k, VnniQ6_K, VnniK<F == Format::q5_k>>>>;
  template <int NP, int... I> static constexpr std::array<VnniTile, sizeof...(I)> vnni(std::integer_sequence<int, I...>) {
    return {vnni_tile<Vnni, I + 1, NP>...};
  }
  /// The integer tile for `mt` tokens over `panels` (1, 2 or 4) panels.
  static VnniTile vnni_tile_for(int mt, int panels) noexcept {
    static constexpr std::array<std::array<VnniTile, kVnniTileTokens>, 3> tiles = {
        vnni<1>(std::make_integer_sequence<int, kVnniTileTokens>{}),
        vnni<2>(std::make_integer_sequence<int, kVnniTileTokens>{}),
        vnni<4>(std::make_integer_sequence<int, kVnniTileTokens>{})};
    return tiles[static_cast<std::size_t>(panels == 4 ? 2 : panels - 1)][static_cast<std::size_t>(mt - 1)];
  }
#endif

  /// Decodes kc steps of one panel from `panel` into float steps at `dst`.
  static void decode(Isa isa, const std::byte* panel, std::int64_t kc, float* dst) noexcept {
#if SC2_HAVE_X86_SIMD
    if (uses_avx512(isa)) return decode_steps_avx512<Decode16>(panel, kc, dst);
    if (uses_avx2(isa)) return decode_steps_avx2<Decode8>(panel, kc, dst);
#endif
    (void)isa;
    decode_steps_scalar(F, panel, kc, dst);
  }
};

/// Calls `f(QuantTiles<F>{})` for the runtime format `format`.
template <class Fn> decltype(auto) with_format(Format format, Fn&& f) {
  switch (format) {
    case Format::q8_0: return f(QuantTiles<Format::q8_0>{});
    case Format::q4_0: return f(QuantTiles<Format::q4_0>{});
    case Format::q4_k: return f(QuantTiles<Format::q4_k>{});
    case Format::q5_k: return f(QuantTiles<Format::q5_k>{});
    case Format::q6_k: return f(QuantTiles<Format::q6_k>{});
  }
  return f(QuantTiles<Format::q8_0>{});
}

/// out[:, 16·p0 : 16·p1] += in · W[16·p0 : 16·p1, :]ᵀ for a few tokens and W in
/// blocks: each tile of panels decodes its blocks once for all its tokens,
/// K block by K block (the order of `linear_panels_direct`).
inline void linear_blocks_direct(Isa isa, MatrixView out, ConstMatrixView in, const WeightMatrix& w, std::int64_t p0,
                                 std::int64_t p1) noexcept {
  const std::int64_t T = in.extent(0), K = in.extent(1), N = w.rows;
  const std::int64_t panel_stride = static_cast<std::int64_t>(kPanelRows * w.row_bytes());
  const std::int64_t block_bytes = static_cast<std::int64_t>(quant::panel_block_bytes(*w.blocks));
  const std::int64_t B = quant::block_elements(*w.blocks);
  const int np = tile_panels(isa), tokens = quant_tile_tokens(isa);
  const auto* base = static_cast<const std::byte*>(w.data);
  with_format(*w.blocks, [&]<Format F>(QuantTiles<F>) {
    for (std::int64_t p = p0; p < p1; p += np) {
      const int panels = static_cast<int>(std::min<std::int64_t>(np, p1 - p));
      const int cols = static_cast<int>(std::min<std::int64_t>(panels * kPanelRows, N - p * kPanelRows));
      for (std::int64_t k0 = 0; k0 < K; k0 += kPackK) {
        const std::int64_t kc = std::min(kPackK, K - k0);
        for (std::int64_t t0 = 0; t0 < T; t0 += tokens) {
          const int mt = static_cast<int>(std::min<std::int64_t>(tokens, T - t0));
          QuantTiles<F>::tile(isa, mt, panels)(in.data() + t0 * in.stride(0) + k0, in.stride(0),
                                               base + p * panel_stride + (k0 / B) * block_bytes, panel_stride, kc,
                                               out.data() + t0 * out.stride(0) + p * kPanelRows, out.stride(0), cols);
        }
      }
    }
  });
}

#if SC2_HAVE_AMX
/// Tokens from which the integer path runs on AMX tiles where the processor has
/// them (`amx_int8_supported`): one whole 16-row tile.
inline constexpr std::int64_t kAmxInt8Tokens = 16;
/// Panels whose B tiles for one K block are made once and shared by every token tile.
inline constexpr std::int64_t kAmxInt8Panels = 16;
/// Bytes of per-thread scratch the AMX integer path takes: for kAmxInt8Panels
/// panels × 8 groups, the B tiles (512 bytes) and the scale, second scale and
/// min vectors (192 bytes); then four staged C tiles.
inline constexpr std::size_t kAmxInt8Scratch = kAmxInt8Panels * 8 * (512 + 192) + 4 * 1024;

SC2_AVX512_BEGIN
/// The integer path on AMX tiles, for T >= 16: the same int32 group sums as
/// `vnni_tile` (`tdpbsud`: int8 activations × unsigned weight bytes, summed
/// exactly), and the same float epilogue per lane in group order, so every
/// output element has `vnni_tile`'s bits. A: 16 token rows × the group's 32
/// (Q6_K: 16) activation bytes, read in place; B: the group's weight bytes as
/// the decoder makes them, 4 k of 16 rows per 64-byte row — the panel layout's
/// quads; C: 16 × 16 int32, staged to add into the float accumulators.
template <class Decode>
SC2_TARGET_AMX_INT8 void vnni_amx_panels(MatrixView out, const ActivationBlocks& a, const WeightMatrix& w,
                                         std::int64_t p0, std::int64_t p1, std::byte* scratch) noexcept {
  constexpr int parts = Decode::two_scales ? 2 : 1;
  constexpr int part_k = kGroupSteps / parts, b_rows = part_k / 4;
  constexpr std::size_t block_bytes = quant::panel_block_bytes(Decode::format);
  const std::int64_t T = out.extent(0), K = a.K, N = w.rows;
  const std::int64_t panel_stride = static_cast<std::int64_t>(kPanelRows * w.row_bytes());
  const auto* base = static_cast<const std::byte*>(w.data);
  std::byte* b_tiles = scratch;
  float* vectors = reinterpret_cast<float*>(scratch + kAmxInt8Panels * 8 * 512);  // 3 × 16 per panel and group
  std::int32_t* c_tile = reinterpret_cast<std::int32_t*>(scratch + kAmxInt8Panels * 8 * (512 + 192));
  AmxTileConfig config;  // tiles 0–3: C of four units, 4–5: A, 6–7: B
  config.bytes_per_row[4] = config.bytes_per_row[5] = part_k;
  config.rows[6] = config.rows[7] = b_rows;
  std::int64_t configured = kTileRows;
  _tile_loadconfig(&config);
  for (std::int64_t g0 = p0; g0 < p1; g0 += kAmxInt8Panels) {
    const std::int64_t g1 = std::min(p1, g0 + kAmxInt8Panels);
    for (std::int64_t k0 = 0; k0 < K; k0 += kPackK) {
      const std::int64_t groups = std::min(kPackK, K - k0) / kGroupSteps;
      // The group's B tiles and scales, made once for every token tile.
      for (std::int64_t p = g0; p < g1; ++p)
        for (std::int64_t g = 0; g < groups; ++g) {
          const std::int64_t k = k0 + g * kGroupSteps;
          Decode decode;
          decode.group(base + p * panel_stride + group_block(Decode::format, k) * block_bytes,
                       group_in_block(Decode::format, k));
          std::byte* b = b_tiles + ((p - g0) * 8 + g) * 512;
          for (int i = 0; i < 8; ++i) _mm512_storeu_si512(b + 64 * i, decode.quad(i));
          float* v = vectors + ((p - g0) * 8 + g) * 48;
          _mm512_storeu_ps(v, decode.scale);
          if constexpr (Decode::two_scales) _mm512_storeu_ps(v + 16, decode.scale1);
          if constexpr (Decode::has_min) _mm512_storeu_ps(v + 32, decode.min);
        }
      for (std::int64_t t0 = 0; t0 < T; t0 += kTileRows) {
        const std::int64_t rows = std::min<std::int64_t>(kTileRows, T - t0);
        if (rows != configured) {
          for (const int tile : {0, 1, 2, 3, 4, 5}) config.rows[tile] = static_cast<std::uint8_t>(rows);
          _tile_loadconfig(&config);
          configured = rows;
        }
        // Each token's scalars of each unit, the same for every panel.
        const std::int64_t units = groups * parts;
        float x_scales[kTileRows][16], x_sums[kTileRows][16];
        std::int32_t offsets[kTileRows][16];
        for (std::int64_t m = 0; m < rows; ++m)
          for (std::int64_t u = 0; u < units; ++u) {
            const std::int64_t kx = k0 + u / parts * kGroupSteps;
            const float x_scale = a.scale[(t0 + m) * (K / 32) + kx / 32];
            const std::int32_t* sums = a.sums + (t0 + m) * (K / 16) + kx / 16;
            const std::int32_t q_sum = parts == 2 ? sums[u % parts] : sums[0] + sums[1];
            x_scales[m][u] = x_scale, offsets[m][u] = Decode::offset * q_sum;
            x_sums[m][u] = x_scale * static_cast<float>(q_sum);
          }
        for (std::int64_t p = g0; p < g1; ++p) {
          __m512 acc[kTileRows];
          for (std::int64_t m = 0; m < rows; ++m) acc[m] = _mm512_setzero_ps();
          // Units (a group, or half of one for Q6_K) four at a time, one C tile each, so
          // that the tile products overlap; then their sums join the float accumulators.
          for (std::int64_t u0 = 0; u0 < units; u0 += 4) {
            const int batch = static_cast<int>(std::min<std::int64_t>(4, units - u0));
            // GCC's tile intrinsics take the tile numbers as literals.
#define SC2_AMX_UNIT(C, A, B)                                                                          \
  if (C < batch) {                                                                                     \
    const std::int64_t u = u0 + C, g = u / parts, part = u % parts;                                    \
    _tile_zero(C);                                                                                     \
    _tile_loadd(A, a.q + t0 * K + k0 + g * kGroupSteps + part * part_k, K);                            \
    _tile_loadd(B, b_tiles + ((p - g0) * 8 + g) * 512 + part * b_rows * 64, 64);                       \
    _tile_dpbsud(C, A, B);                                                                             \
    _tile_stored(C, c_tile + C * kTileRows * kTileRows, 64);                                           \
  }
            SC2_AMX_UNIT(0, 4, 6)
            SC2_AMX_UNIT(1, 5, 7)
            SC2_AMX_UNIT(2, 4, 6)
            SC2_AMX_UNIT(3, 5, 7)
#undef SC2_AMX_UNIT
            for (int c = 0; c < batch; ++c) {
              const std::int64_t u = u0 + c, g = u / parts, part = u % parts;
              const float* v = vectors + ((p - g0) * 8 + g) * 48;
              const __m512 w_scale = _mm512_loadu_ps(v + 16 * part);
              const __m512 w_min = Decode::has_min ? _mm512_loadu_ps(v + 32) : _mm512_setzero_ps();
              const std::int32_t* tile = c_tile + c * kTileRows * kTileRows;
              for (std::int64_t m = 0; m < rows; ++m) {
                const __m512 scale = _mm512_mul_ps(w_scale, _mm512_set1_ps(x_scales[m][u]));
                const __m512i centred =
                    _mm512_sub_epi32(_mm512_loadu_si512(tile + m * kTileRows), _mm512_set1_epi32(offsets[m][u]));
                acc[m] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(centred), acc[m]);
                if constexpr (Decode::has_min) acc[m] = _mm512_fnmadd_ps(w_min, _mm512_set1_ps(x_sums[m][u]), acc[m]);
              }
            }
          }
          const std::int64_t cols = std::min<std::int64_t>(kPanelRows, N - p * kPanelRows);
          const __mmask16 valid = cols == kPanelRows ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
          for (std::int64_t m = 0; m < rows; ++m) {
            float* o = out.data() + (t0 + m) * out.stride(0) + p * kPanelRows;
            _mm512_mask_storeu_ps(o, valid, _mm512_add_ps(_mm512_maskz_loadu_ps(valid, o), acc[m]));
          }
        }
      }
    }
  }
  _tile_release();
}
SC2_AVX512_END
#endif

#if SC2_HAVE_X86_SIMD
/// out[:, 16·p0 : 16·p1] += x · W[16·p0 : 16·p1, :]ᵀ on the integer path for W
/// in blocks and x as int8 blocks `a`, for any T: every token tile of up to 4
/// passes over each K block of 2 (or 4) panels while it is in L1, so the
/// weights are read from memory once. From 16 tokens, on a processor with
/// AMX-INT8, the tiles do it (`vnni_amx_panels`, the same bits) in
/// `amx_scratch` (`kAmxInt8Scratch` bytes; none: never).
inline void linear_blocks_vnni(MatrixView out, const ActivationBlocks& a, const WeightMatrix& w, std::int64_t p0,
                               std::int64_t p1, std::byte* amx_scratch) noexcept {
  const std::int64_t T = out.extent(0), K = w.cols, N = w.rows;
  const std::int64_t panel_stride = static_cast<std::int64_t>(kPanelRows * w.row_bytes());
  const std::int64_t block_bytes = static_cast<std::int64_t>(quant::panel_block_bytes(*w.blocks));
  const std::int64_t B = quant::block_elements(*w.blocks);
  const auto* base = static_cast<const std::byte*>(w.data);
  // Decode (one or two rows) streams 4 panels at once, which keeps more reads in flight
  // (3B shapes, 2 threads: Q5_K 27 → 31 GB/s, Q6_K 25 → 27); more rows keep 2, whose
  // integer and float accumulators fit the registers.
  const int wide = T <= 2 ? 4 : 2;
#if SC2_HAVE_AMX
  if (T >= kAmxInt8Tokens && amx_scratch && amx_int8_supported()) {
    with_format(*w.blocks, [&]<Format F>(QuantTiles<F>) {
      vnni_amx_panels<typename QuantTiles<F>::Vnni>(out, a, w, p0, p1, amx_scratch);
    });
    return;
  }
#endif
  (void)amx_scratch;
  with_format(*w.blocks, [&]<Format F>(QuantTiles<F>) {
    for (std::int64_t p = p0; p < p1;) {
      const int panels = p1 - p >= wide ? wide : static_cast<int>(std::min<std::int64_t>(2, p1 - p));
      const int cols = static_cast<int>(std::min<std::int64_t>(panels * kPanelRows, N - p * kPanelRows));
      for (std::int64_t k0 = 0; k0 < K; k0 += kPackK) {
        const std::int64_t kc = std::min(kPackK, K - k0);
        for (std::int64_t t0 = 0; t0 < T; t0 += kVnniTileTokens) {
          const int mt = static_cast<int>(std::min<std::int64_t>(kVnniTileTokens, T - t0));
          QuantTiles<F>::vnni_tile_for(mt, panels)(a, t0, k0, base + p * panel_stride + (k0 / B) * block_bytes,
                                                   panel_stride, kc, out.data() + t0 * out.stride(0) + p * kPanelRows,
                                                   out.stride(0), cols);
        }
      }
      p += panels;
    }
  });
}
#endif

/// Decodes steps [k0, k0 + kc) of panel p of the block matrix `w` into float
/// panel steps at `dst` (for the prefill path's widened blocks).
inline void decode_panel_steps(Isa isa, const WeightMatrix& w, std::int64_t p, std::int64_t k0, std::int64_t kc,
                               float* dst) noexcept {
  const std::int64_t B = quant::block_elements(*w.blocks);
  const std::byte* panel = static_cast<const std::byte*>(w.data) + p * kPanelRows * static_cast<std::int64_t>(w.row_bytes()) +
                           (k0 / B) * static_cast<std::int64_t>(quant::panel_block_bytes(*w.blocks));
  with_format(*w.blocks, [&]<Format F>(QuantTiles<F>) { QuantTiles<F>::decode(isa, panel, kc, dst); });
}

}  // namespace sc2::cpu::detail
