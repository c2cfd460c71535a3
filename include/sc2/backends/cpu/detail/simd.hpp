#pragma once
/// \file
/// SIMD building blocks shared by the CPU kernels. AVX2: widening loads of 8
/// elements of f32, bf16 or f16 to float, horizontal sum and maximum, e^x and
/// an 8 × 8 transpose. AVX-512F: widening loads of 16 elements. Each function
/// carries the `target` attribute, so the library compiles without `-mavx2`
/// or `-mavx512f` and the path is chosen at run time.

#include <sc2/core/dtype.hpp>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SC2_HAVE_X86_SIMD 1
#include <immintrin.h>
#else
#define SC2_HAVE_X86_SIMD 0
#endif

/// Asks for a loop over register tiles to be unrolled whole, so that arrays of
/// vector accumulators live in registers instead of on the stack.
#if defined(__clang__)
#define SC2_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define SC2_UNROLL _Pragma("GCC unroll 16")
#else
#define SC2_UNROLL
#endif

/// Marks a function as compiled for AVX2 + FMA + F16C. (A build that supplies
/// the intrinsics some other way, such as an emulation for tests, may define
/// these two macros first.)
#ifndef SC2_TARGET_AVX2
#define SC2_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif
/// Marks a function as compiled for AVX-512F on top of AVX2 + FMA + F16C.
#ifndef SC2_TARGET_AVX512
#define SC2_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#endif
/// Marks a function as compiled for AVX-512 BF16 (with AVX-512BW, which
/// compilers tie to it) on top of AVX-512F.
#ifndef SC2_TARGET_AVX512_BF16
#define SC2_TARGET_AVX512_BF16 __attribute__((target("avx512bf16,avx512bw,avx512f,avx2,fma,f16c")))
#endif

/// Marks a function as compiled for AVX-512 VNNI (int8 dot products) on top of AVX-512F.
#ifndef SC2_TARGET_AVX512_VNNI
#define SC2_TARGET_AVX512_VNNI __attribute__((target("avx512vnni,avx512f,avx2,fma,f16c")))
#endif

/// Marks a function as compiled for AMX tiles with bf16 products, on top of
/// AVX-512 BF16 (every processor with AMX-BF16 has it).
#ifndef SC2_TARGET_AMX
#define SC2_TARGET_AMX \
  __attribute__((target("amx-tile,amx-bf16,avx512bf16,avx512bw,avx512f,avx2,fma,f16c")))
#endif
/// Marks a function as compiled for AMX tiles with int8 products (the integer
/// path's prefill), on top of AVX-512 VNNI.
#ifndef SC2_TARGET_AMX_INT8
#define SC2_TARGET_AMX_INT8 __attribute__((target("amx-tile,amx-int8,avx512vnni,avx512f,avx2,fma,f16c")))
#endif
/// 1 where the AMX kernels are compiled: x86-64 Linux, whose kernel hands out
/// the tile state on request (`arch_prctl`). A build that emulates the vector
/// intrinsics defines it 0 first.
#ifndef SC2_HAVE_AMX
#if SC2_HAVE_X86_SIMD && defined(__linux__)
#define SC2_HAVE_AMX 1
#else
#define SC2_HAVE_AMX 0
#endif
#endif

/// GCC 12 reports its own AVX-512 intrinsics as reading uninitialized values
/// (the `_mm512_undefined_*` placeholders they pass as unused sources, GCC bug
/// 105593). The AVX-512 kernels sit between these two macros, which silence
/// that one warning there and nowhere else.
#if defined(__GNUC__) && !defined(__clang__)
#define SC2_AVX512_BEGIN                                                 \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define SC2_AVX512_END _Pragma("GCC diagnostic pop")
#else
#define SC2_AVX512_BEGIN
#define SC2_AVX512_END
#endif

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

/// Largest of the 8 lanes.
SC2_TARGET_AVX2 inline float hmax(__m256 v) noexcept {
  const __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 d = _mm_max_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_max_ss(d, _mm_movehdup_ps(d)));
}

/// e^z for 8 floats, within 2 ulp: z = n·ln2 + r with |r| <= ln2/2, e^r by a
/// degree-6 polynomial, 2^n put into the exponent bits. z is clamped to
/// [-87.3, 88.3], so the result stays a normal float; NaN stays NaN.
SC2_TARGET_AVX2 inline __m256 exp8(__m256 z) noexcept {
  // min/max return their second operand when either is NaN: z goes second so NaN passes through.
  z = _mm256_max_ps(_mm256_set1_ps(-87.3f), _mm256_min_ps(_mm256_set1_ps(88.3f), z));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(z, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), z);  // ln2 in two parts, exact first product
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
  const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(e, _mm256_castsi256_ps(scale));
}

/// Transposes the 8 × 8 matrix held in r[0..7] (row i in r[i]) in place.
SC2_TARGET_AVX2 inline void transpose8(__m256 r[8]) noexcept {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

SC2_AVX512_BEGIN
/// 16 floats.
SC2_TARGET_AVX512 inline __m512 load16(const float* p) noexcept { return _mm512_loadu_ps(p); }
/// 16 bfloat16 widened to float.
SC2_TARGET_AVX512 inline __m512 load16(const bf16* p) noexcept {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
/// 16 float16 widened to float.
SC2_TARGET_AVX512 inline __m512 load16(const f16* p) noexcept {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

/// `exp8` on each half of 16 floats: the same bits per lane.
SC2_TARGET_AVX512 inline __m512 exp16(__m512 z) noexcept {
  const __m256 lo = exp8(_mm512_castps512_ps256(z));
  const __m256 hi = exp8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z), 1)));
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
}
SC2_AVX512_END
#endif

}  // namespace sc2::cpu::detail
