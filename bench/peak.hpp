#pragma once
// The arithmetic peak of the instruction each CPU path's prefill linear layers multiply with,
// measured with a pool's threads: the bound sc2-bench and sc2-linear-bench count prefill against.

#include <sc2/sc2.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace sc2::bench {

/// Seconds from `start` to now.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

#if SC2_HAVE_X86_SIMD
// Twelve independent chains of `steps` multiply-adds each, as many as the prefill micro-kernels keep
// in flight, enough to cover the FMA latency on every pipe. Each returns a value that depends on
// every step, so that nothing is optimized away.
SC2_TARGET_AVX2 inline float fma_chains_avx2(std::int64_t steps) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
  const __m256 scale = _mm256_set1_ps(0.9999f), step = _mm256_set1_ps(1e-4f);
  for (std::int64_t n = 0; n < steps; ++n)
    SC2_UNROLL for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], scale, step);
  for (int i = 1; i < 12; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
  return _mm256_cvtss_f32(acc[0]);
}

SC2_AVX512_BEGIN
SC2_TARGET_AVX512 inline float fma_chains_avx512(std::int64_t steps) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512 scale = _mm512_set1_ps(0.9999f), step = _mm512_set1_ps(1e-4f);
  for (std::int64_t n = 0; n < steps; ++n)
    SC2_UNROLL for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], scale, step);
  for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  return _mm512_cvtss_f32(acc[0]);
}

// vdpbf16ps: each of the 16 float lanes adds the two products of a bf16 pair.
SC2_TARGET_AVX512_BF16 inline float dpbf16_chains(std::int64_t steps) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80);  // the pair (1, 1)
  const __m512bh b = (__m512bh)_mm512_set1_epi32(0x3a833a83);  // the pair (~1e-3, ~1e-3)
  for (std::int64_t n = 0; n < steps; ++n)
    SC2_UNROLL for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  return _mm512_cvtss_f32(acc[0]);
}
SC2_AVX512_END
#endif

#if SC2_HAVE_AMX
// tdpbf16ps: four independent 16 × 16 float tiles, each adding the product of a 16 × 32 and a
// 32 × 16 bf16 tile per step.
SC2_TARGET_AMX inline float amx_tile_chains(std::int64_t steps) {
  alignas(64) std::uint16_t a[512], b[512];
  std::fill_n(a, 512, std::uint16_t{0x3f80});  // 1
  std::fill_n(b, 512, std::uint16_t{0x3a83});  // ~1e-3
  const sc2::cpu::detail::AmxTileConfig config;
  _tile_loadconfig(&config);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, a, 64);
  _tile_loadd(5, a, 64);
  _tile_loadd(6, b, 64);
  _tile_loadd(7, b, 64);
  for (std::int64_t n = 0; n < steps / 16; ++n) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float c[256];
  _tile_stored(0, c, 64);
  _tile_release();
  return c[0];
}
#endif

// Arithmetic peak in GFLOP/s, all threads, of the instruction the prefill linear layers multiply
// with on `isa` for `weights` (a multiply-add counts 2): 256-bit FMA on avx2, 512-bit FMA on
// avx512, vdpbf16ps for bf16 weights on avx512bf16, tdpbf16ps on amxbf16, and on amx tdpbf16ps
// divided by the three bf16 products one float product takes there. Best of 3 passes; 0 for the
// scalar path.
inline double peak_gflops(sc2::ThreadPool& pool, sc2::cpu::Isa isa, sc2::DType weights) {
#if SC2_HAVE_X86_SIMD
  using sc2::cpu::Isa;
  float (*chains)(std::int64_t) = nullptr;
  double flops_per_step = 0.0;  // 12 chains × lanes × 2
  if (sc2::cpu::detail::runs_on_amx(isa, weights)) {
#if SC2_HAVE_AMX
    // 16 steps are one round of four tile products.
    chains = amx_tile_chains, flops_per_step = 4.0 * 16 * 16 * 32 * 2 / 16 / sc2::cpu::detail::amx_parts(isa);
#endif
  } else if (isa == Isa::avx512_bf16 && weights == sc2::DType::bf16) {
    chains = dpbf16_chains, flops_per_step = 12 * 16 * 2 * 2;
  } else if (sc2::cpu::uses_avx512(isa)) {
    chains = fma_chains_avx512, flops_per_step = 12 * 16 * 2;
  } else if (isa == Isa::avx2) {
    chains = fma_chains_avx2, flops_per_step = 12 * 8 * 2;
  }
  if (!chains) return 0.0;
  const std::int64_t steps = 50'000'000;
  std::vector<float> sink(static_cast<std::size_t>(pool.size()));
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    pool.run([&](int t) { sink[static_cast<std::size_t>(t)] = chains(steps); });
    const double flops = flops_per_step * static_cast<double>(steps) * static_cast<double>(pool.size());
    best = std::max(best, flops / seconds_since(start) / 1e9);
  }
  return sink[0] == sink[0] ? best : 0.0;
#else
  (void)pool, (void)isa, (void)weights;
  return 0.0;
#endif
}

}  // namespace sc2::bench
