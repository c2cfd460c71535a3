#pragma once
/// \file
/// Which SIMD instruction set the CPU kernels use.
///
/// Chosen once at run time from what the processor reports, and overridable:
/// the environment variable `SC2_CPU_ISA` (`scalar`, `avx2`, `avx512`,
/// `avx512bf16`, `amx` or `amxbf16`) or `cpu::Context::set_isa` forces a path, so tests can run
/// every path the machine supports. Asking for a path the machine lacks is an
/// `sc2::Error`.
///
/// Every path but `avx512bf16` computes in float32 and differs from the
/// reference only in the order of additions. `avx512bf16` rounds activations
/// to bfloat16 before multiplying them with bfloat16 weights in prefill (the
/// `vdpbf16ps` dot product, twice the multiplies of float32 FMA per
/// instruction), as engines that run bf16 models in bf16 do: faster where the
/// processor has it, but no longer float32 arithmetic, so it is never chosen
/// by default, only when asked for.
///
/// `amx` runs the linear layers of bf16 weights on AMX tiles with the
/// activations split into three bf16 parts, so every product is exact and
/// only the float32 accumulation rounds (see `detail/amx.hpp`): float32-class
/// arithmetic at several times the FMA rate. `amxbf16` rounds the activations
/// to one bf16 part instead, like `avx512bf16`, and is likewise opt-in. The
/// tile state is asked of Linux (`arch_prctl(ARCH_REQ_XCOMP_PERM)`) the first
/// time either path is checked for.

#include <sc2/core/error.hpp>

#include <cstdlib>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <string_view>

namespace sc2::cpu {

/// A family of SIMD kernels.
enum class Isa {
  scalar,  ///< portable C++, always present
  avx2,    ///< AVX2 + FMA + F16C (x86-64)
  avx512,  ///< AVX-512F for the linear kernels, AVX2 + FMA + F16C elsewhere
  avx512_bf16,  ///< avx512, and bf16 × bf16 dot products for bf16 weights in prefill (opt-in)
  amx,          ///< avx512, and AMX tiles for bf16 weights, activations split exactly into bf16 parts
  amx_bf16,     ///< avx512, and AMX tiles for bf16 weights, activations rounded to bf16 (opt-in)
  avx512_vnni,  ///< avx512, and int8 dot products for weights in GGML blocks, activations quantized to int8 (opt-in)
};

/// Readable name of an instruction-set path.
constexpr std::string_view isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512_bf16: return "avx512bf16";
    case Isa::amx: return "amx";
    case Isa::amx_bf16: return "amxbf16";
    case Isa::avx512_vnni: return "avx512vnni";
  }
  return "?";
}

/// True when the path runs the AVX2 kernels (every x86 path but the scalar one
/// does, for the ops that have no wider form).
constexpr bool uses_avx2(Isa isa) noexcept { return isa != Isa::scalar; }

/// True when the path runs the AVX-512F linear kernels.
constexpr bool uses_avx512(Isa isa) noexcept { return isa != Isa::scalar && isa != Isa::avx2; }

/// True when the path runs bf16 weights on AMX tiles.
constexpr bool uses_amx(Isa isa) noexcept { return isa == Isa::amx || isa == Isa::amx_bf16; }

/// Asks Linux, once per process, for the AMX tile data state (without it a
/// tile instruction faults); true when granted.
inline bool amx_permitted() noexcept {
#if defined(__x86_64__) && defined(__linux__)
  static const bool granted = [] {
    constexpr long request_permission = 0x1023, get_permission = 0x1022;  // ARCH_REQ_XCOMP_PERM, ARCH_GET_XCOMP_PERM
    constexpr long tile_data = 18;                                        // XFEATURE_XTILEDATA
    if (syscall(SYS_arch_prctl, request_permission, tile_data) != 0) return false;
    unsigned long features = 0;
    return syscall(SYS_arch_prctl, get_permission, &features) == 0 && (features >> tile_data & 1u);
  }();
  return granted;
#else
  return false;
#endif
}

/// True when this processor can run `isa`.
inline bool isa_supported(Isa isa) noexcept {
  if (isa == Isa::scalar) return true;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
  if (!(fma && osxsave && avx && f16c)) return false;
  unsigned xcr0_low = 0, xcr0_high = 0;
  __asm__("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  if ((xcr0_low & 0x6u) != 0x6u) return false;  // the OS saves SSE and AVX state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const unsigned last_subleaf = a;
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512bw = b & (1u << 30);
  if (isa == Isa::avx2) return avx2;
  // AVX-512 also needs the OS to save the mask registers and the upper ZMM state.
  if (!(avx2 && avx512f && (xcr0_low & 0xE0u) == 0xE0u)) return false;
  if (isa == Isa::avx512) return true;
  if (isa == Isa::avx512_vnni) return c & (1u << 11);  // AVX512_VNNI
  // Compilers enable AVX512BW along with AVX512_BF16, so both are required.
  const bool amx_tile = d & (1u << 24), amx_bf16 = d & (1u << 22);
  if (last_subleaf < 1 || !avx512bw || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  if (!(a & (1u << 5))) return false;  // AVX512_BF16
  if (isa == Isa::avx512_bf16) return true;
  // AMX: the tile instructions, the OS saving the tile state (XCR0 bits 17, 18), and Linux's permission.
  return uses_amx(isa) && amx_tile && amx_bf16 && (xcr0_low & 0x60000u) == 0x60000u && amx_permitted();
#else
  return false;
#endif
}

/// True when this processor (and its OS) runs AMX tiles with int8 products,
/// which the integer path (`Isa::avx512_vnni`) uses for prefill.
inline bool amx_int8_supported() noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool supported = [] {
    if (!isa_supported(Isa::avx512_vnni)) return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
    unsigned xcr0_low = 0, xcr0_high = 0;
    __asm__("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    return amx_tile && amx_int8 && (xcr0_low & 0x60000u) == 0x60000u && amx_permitted();
  }();
  return supported;
#else
  return false;
#endif
}

/// Parses an instruction-set name ("scalar", "avx2", "avx512", "avx512bf16", "amx", "amxbf16", "avx512vnni").
inline Isa parse_isa(std::string_view name) {
  for (const Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512_bf16, Isa::amx, Isa::amx_bf16, Isa::avx512_vnni})
    if (name == isa_name(isa)) return isa;
  SC2_FAIL("unknown CPU instruction set '{}' (expected 'scalar', 'avx2', 'avx512', 'avx512bf16', 'amx', 'amxbf16' or "
           "'avx512vnni')",
           name);
}

/// The best float32 path this processor supports, unless `SC2_CPU_ISA` names
/// one (`avx512bf16`, `amx`, `amxbf16` and `avx512vnni` only ever by name).
inline Isa default_isa() {
  if (const char* forced = std::getenv("SC2_CPU_ISA"); forced && *forced) {
    const Isa isa = parse_isa(forced);
    SC2_CHECK(isa_supported(isa), "SC2_CPU_ISA={} but this processor does not support it", forced);
    return isa;
  }
  for (const Isa isa : {Isa::avx512, Isa::avx2})
    if (isa_supported(isa)) return isa;
  return Isa::scalar;
}

}  // namespace sc2::cpu
