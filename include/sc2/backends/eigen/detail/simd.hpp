#pragma once
/// \file
/// AVX2 building blocks shared by the CPU kernels: widening loads of 8
/// elements of f32, bf16 or f16 to float, and a horizontal sum. Each function
/// carries the `target` attribute, so the library compiles without
/// `-mavx2` and the AVX2 path is chosen at run time.

#include <sc2/core/dtype.hpp>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SC2_HAVE_X86_SIMD 1
#include <immintrin.h>
#else
#define SC2_HAVE_X86_SIMD 0
#endif

/// Marks a function as compiled for AVX2 + FMA + F16C.
#define SC2_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace sc2::cpu::detail {

#if SC2_HAVE_X86_SIMD
/// 8 floats.
SC2_TARGET_AVX2 inline __m256 load8(const float* p) noexcept { return _mm256_loadu_ps(p); }
/// 8 bfloat16 widened to float (a shift: bf16 is the top half of a float).
SC2_TARGET_AVX2 inline __m256 load8(const bf16* p) noexcept {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
/// 8 float16 widened to float (F16C).
SC2_TARGET_AVX2 inline __m256 load8(const f16* p) noexcept {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
/// Sum of the 8 lanes.
SC2_TARGET_AVX2 inline float hsum(__m256 v) noexcept {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 d = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}
#endif

}  // namespace sc2::cpu::detail
