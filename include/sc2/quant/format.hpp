#pragma once
/// \file
/// GGML's quantized block formats by name: the blocks' layouts and sizes.
/// Their arithmetic (dequantization, the reference quantizers) is in
/// blocks.hpp; the CPU kernels' panel layout of them in panels.hpp.

#include <sc2/core/error.hpp>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sc2::quant {

/// A GGML block format.
enum class Format : std::uint8_t { q8_0, q4_0, q4_k, q5_k, q6_k };

/// Weights per super-block of the K-quants.
inline constexpr int kSuperBlock = 256;

/// Q8_0: 32 int8 weights and their f16 scale.
struct BlockQ8_0 {
  std::uint16_t d;        ///< scale, f16 bits
  std::int8_t qs[32];     ///< weights
};
/// Q4_0: 32 4-bit weights (offset 8) and their f16 scale; qs[i] holds weights i and i + 16.
struct BlockQ4_0 {
  std::uint16_t d;        ///< scale, f16 bits
  std::uint8_t qs[16];    ///< weight i in the low nibble of qs[i], weight i + 16 in its high nibble
};
/// Q4_K: 256 4-bit weights in 8 groups of 32, each with a 6-bit scale and min.
struct BlockQ4_K {
  std::uint16_t d;           ///< super-scale of the scales, f16 bits
  std::uint16_t dmin;        ///< super-scale of the mins, f16 bits
  std::uint8_t scales[12];   ///< 8 scales and 8 mins, 6 bits each (see `scale_min`)
  std::uint8_t qs[128];      ///< per 64 weights, 32 bytes: low nibbles the first 32, high the next
};
/// Q5_K: as Q4_K, with a fifth bit per weight in `qh`.
struct BlockQ5_K {
  std::uint16_t d;           ///< super-scale of the scales, f16 bits
  std::uint16_t dmin;        ///< super-scale of the mins, f16 bits
  std::uint8_t scales[12];   ///< 8 scales and 8 mins, 6 bits each
  std::uint8_t qh[32];       ///< bit g of qh[l]: the high bit of weight 32·g + l
  std::uint8_t qs[128];      ///< low 4 bits, laid out as Q4_K's
};
/// Q6_K: 256 6-bit weights (offset 32) in 16 groups of 16, each with an int8 scale.
struct BlockQ6_K {
  std::uint8_t ql[128];      ///< low 4 bits
  std::uint8_t qh[64];       ///< high 2 bits
  std::int8_t scales[16];    ///< group scales
  std::uint16_t d;           ///< super-scale, f16 bits
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

/// Weights per block of `format`.
constexpr std::int64_t block_elements(Format format) noexcept {
  return format == Format::q8_0 || format == Format::q4_0 ? 32 : kSuperBlock;
}
/// Bytes per block of `format`.
constexpr std::size_t block_bytes(Format format) noexcept {
  switch (format) {
    case Format::q8_0: return sizeof(BlockQ8_0);
    case Format::q4_0: return sizeof(BlockQ4_0);
    case Format::q4_k: return sizeof(BlockQ4_K);
    case Format::q5_k: return sizeof(BlockQ5_K);
    case Format::q6_k: return sizeof(BlockQ6_K);
  }
  return 0;
}
/// Bytes of a row of `k` weights (k a multiple of the block size).
constexpr std::size_t row_bytes(Format format, std::int64_t k) noexcept {
  return static_cast<std::size_t>(k / block_elements(format)) * block_bytes(format);
}
/// The lower-case GGML name ("q8_0", "q4_k", ...).
constexpr std::string_view format_name(Format format) noexcept {
  switch (format) {
    case Format::q8_0: return "q8_0";
    case Format::q4_0: return "q4_0";
    case Format::q4_k: return "q4_k";
    case Format::q5_k: return "q5_k";
    case Format::q6_k: return "q6_k";
  }
  return "?";
}
/// Parses a name of `format_name`, upper or lower case; an `sc2::Error` for any other.
inline Format parse_format(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Format f : {Format::q8_0, Format::q4_0, Format::q4_k, Format::q5_k, Format::q6_k})
    if (lower == format_name(f)) return f;
  SC2_FAIL("unknown quantized format '{}' (expected q8_0, q4_0, q4_k, q5_k or q6_k)", name);
}

}  // namespace sc2::quant
