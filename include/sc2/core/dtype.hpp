#pragma once
/// \file
/// Element types: float32, bfloat16, float16.
///
/// bfloat16 is the upper half of an IEEE float32 (8 exponent bits, 7 mantissa
/// bits); float16 is IEEE binary16 (5 exponent bits, 10 mantissa bits).
/// Widening to float32 is exact. Narrowing rounds to nearest, ties to even,
/// keeps NaN a NaN and overflows to infinity, as PyTorch does; these are the
/// conversions the whole library uses.

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace sc2 {

/// Which element type a tensor holds; the names are those of safetensors.
enum class DType : std::uint8_t { f32, bf16, f16 };

/// Size of one element in bytes.
constexpr std::size_t dtype_size(DType t) noexcept { return t == DType::f32 ? 4 : 2; }

/// The safetensors spelling of a dtype ("F32", "BF16", "F16").
constexpr std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
  }
  return "?";
}

/// bfloat16 storage: 16 raw bits, arithmetic goes through float.
struct bf16 {
  std::uint16_t bits = 0;  ///< the raw bits

  /// Reinterprets raw bits (no rounding).
  static constexpr bf16 from_bits(std::uint16_t b) noexcept { return bf16{b}; }

  /// Rounds a float to the nearest bfloat16, ties to even; NaN stays NaN.
  static constexpr bf16 round(float f) noexcept {
    std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return bf16{static_cast<std::uint16_t>(u >> 16)};
  }

  /// Widens exactly to float.
  constexpr float to_float() const noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
  }
};

/// IEEE binary16 storage: 16 raw bits, arithmetic goes through float.
struct f16 {
  std::uint16_t bits = 0;  ///< the raw bits

  /// Reinterprets raw bits (no rounding).
  static constexpr f16 from_bits(std::uint16_t b) noexcept { return f16{b}; }

  /// Rounds a float to the nearest binary16, ties to even; overflow gives
  /// infinity, tiny values become subnormals or signed zero, NaN stays NaN.
  static constexpr f16 round(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return f16{static_cast<std::uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu))};
    if (abs >= 0x477ff000u) return f16{static_cast<std::uint16_t>(sign | 0x7c00u)};  // rounds past 65504
    if (abs < 0x38800000u) {  // below the smallest normal 2^-14: subnormal or zero
      if (abs < 0x33000000u) return f16{static_cast<std::uint16_t>(sign)};  // < 2^-25 rounds to 0
      const std::uint32_t exponent = abs >> 23;
      const std::uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
      const std::uint32_t shift = 126u - exponent;  // 14..24 bits below binary16's subnormal unit
      std::uint32_t half = mantissa >> shift;
      const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
      const std::uint32_t midpoint = 1u << (shift - 1u);
      if (rest > midpoint || (rest == midpoint && (half & 1u))) ++half;
      return f16{static_cast<std::uint16_t>(sign | half)};
    }
    std::uint32_t r = abs - 0x38000000u;  // rebias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return f16{static_cast<std::uint16_t>(sign | (r >> 13))};
  }

  /// Widens exactly to float.
  constexpr float to_float() const noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
    const std::uint32_t exponent = (bits >> 10) & 0x1fu;
    const std::uint32_t mantissa = bits & 0x3ffu;
    if (exponent == 0x1fu) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
    if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    if (mantissa == 0) return std::bit_cast<float>(sign);
    // Subnormal: value = mantissa * 2^-24, exact in float.
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
};

/// Maps a storage type to its DType tag.
template <class T> struct dtype_of;
/// float is f32.
template <> struct dtype_of<float> {
  static constexpr DType value = DType::f32;  ///< the tag
};
/// bf16 is bf16.
template <> struct dtype_of<bf16> {
  static constexpr DType value = DType::bf16;  ///< the tag
};
/// f16 is f16.
template <> struct dtype_of<f16> {
  static constexpr DType value = DType::f16;  ///< the tag
};
/// The DType tag of a storage type.
template <class T> inline constexpr DType dtype_v = dtype_of<T>::value;

/// Widens any storage element to float.
constexpr float to_float(float x) noexcept { return x; }
/// Widens a bfloat16 to float (exact).
constexpr float to_float(bf16 x) noexcept { return x.to_float(); }
/// Widens a float16 to float (exact).
constexpr float to_float(f16 x) noexcept { return x.to_float(); }

/// Rounds a float into storage type T (round to nearest, ties to even).
template <class T> constexpr T from_float(float x) noexcept {
  if constexpr (std::is_same_v<T, float>) return x;
  else return T::round(x);
}

}  // namespace sc2
