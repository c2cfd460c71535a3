#pragma once
/// \file
/// GGML blocks in the CPU kernels' panel layout: 16 rows' blocks interleaved
/// field by field, so that one load gives one field of all 16 rows.
///
/// A matrix of (N, K) weights in `format` is stored as panels of 16 rows (as
/// `WeightLayout::panels16` stores floats); a panel is K / B *panel blocks*,
/// one per block column b, each holding block b of its 16 rows. Within a
/// panel block every field of the block struct (format.hpp) is stored as
/// [element][row], an element being one scale (f16 or byte) or, for the
/// fields of weight bits, 4 consecutive bytes:
///
///     field f at byte 16 · offset(f) of the panel block;
///     element i of row r's field at 16 · offset(f) + (16 · i + r) · size(f)
///
/// So a Q8_0 panel block is the 16 f16 scales, then 8 × 64 bytes, each 64 the
/// 4-byte runs (4 steps k) of the 16 rows; Q4_K's is the 16 `d`, the 16
/// `dmin`, 12 × 16 packed scale bytes and 32 × 64 nibble bytes. One 64-byte
/// load gives 4 bytes of each of the 16 rows: a 32-bit lane per row, as
/// integer dot products (4 bytes per lane) and the float decoders (one byte
/// of each lane per step) read them. The bytes are the blocks' own, only
/// moved: a panel block is 16 · block_bytes(format) bytes, and a matrix takes
/// what its GGUF tensor takes (rows rounded up to 16, the padding rows zero
/// blocks).
///
/// `dequantize_panel_block` and `dequantize_panel_lane` give exactly
/// `dequantize`'s floats; the CPU kernels decode the same fields in vector
/// registers and are checked against them bit for bit.

#include <sc2/quant/blocks.hpp>
#include <sc2/quant/format.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sc2::quant {

/// Rows per panel (the CPU kernels' `kPanelRows`).
inline constexpr int kPanelLanes = 16;

/// One field of a block struct as panels interleave it: byte offset, bytes per element, elements.
struct BlockField {
  std::size_t offset = 0;  ///< bytes from the start of the block
  std::size_t size = 0;    ///< bytes per element (1 or 2 for scales, 4 for weight bits)
  std::size_t count = 0;   ///< elements
};

/// The fields of `format`'s block, in memory order (at most 5; the rest empty).
constexpr std::array<BlockField, 5> block_fields(Format format) noexcept {
  switch (format) {
    case Format::q8_0: return {{{0, 2, 1}, {2, 4, 8}}};                                      // d, qs
    case Format::q4_0: return {{{0, 2, 1}, {2, 4, 4}}};                                       // d, qs
    case Format::q4_k: return {{{0, 2, 1}, {2, 2, 1}, {4, 1, 12}, {16, 4, 32}}};              // d, dmin, scales, qs
    case Format::q5_k: return {{{0, 2, 1}, {2, 2, 1}, {4, 1, 12}, {16, 4, 8}, {48, 4, 32}}};  // + qh
    case Format::q6_k: return {{{0, 4, 32}, {128, 4, 16}, {192, 1, 16}, {208, 2, 1}}};        // ql, qh, scales, d
  }
  return {};
}

/// Bytes of one panel block of `format`: 16 blocks.
constexpr std::size_t panel_block_bytes(Format format) noexcept { return kPanelLanes * block_bytes(format); }

/// Writes the panel block of the 16 blocks `rows[r]` (a null row is a block
/// of zero bytes) to `panel`.
inline void interleave_blocks(Format format, const std::byte* const (&rows)[kPanelLanes], std::byte* panel) noexcept {
  for (const BlockField& f : block_fields(format))
    for (std::size_t i = 0; i < f.count; ++i)
      for (int r = 0; r < kPanelLanes; ++r) {
        std::byte* dst = panel + kPanelLanes * f.offset + (kPanelLanes * i + static_cast<std::size_t>(r)) * f.size;
        if (rows[r]) std::memcpy(dst, rows[r] + f.offset + i * f.size, f.size);
        else std::memset(dst, 0, f.size);
      }
}

/// The block of row `lane` (0..15) of a panel block, written to `block`.
inline void block_of_lane(Format format, const std::byte* panel, int lane, std::byte* block) noexcept {
  for (const BlockField& f : block_fields(format))
    for (std::size_t i = 0; i < f.count; ++i)
      std::memcpy(block + f.offset + i * f.size,
                  panel + kPanelLanes * f.offset + (kPanelLanes * i + static_cast<std::size_t>(lane)) * f.size, f.size);
}

/// The B weights of row `lane` of a panel block, as `dequantize` gives them.
inline void dequantize_panel_lane(Format format, const std::byte* panel, int lane, float* out) noexcept {
  std::array<std::byte, 256> block;  // the largest block is Q6_K's 210 bytes
  block_of_lane(format, panel, lane, block.data());
  dequantize(format, block.data(), out, block_elements(format));
}

/// All weights of a panel block in the float panel layout: out[16 · k + r] is
/// weight k (0..B−1) of row r, as `dequantize` gives it.
inline void dequantize_panel_block(Format format, const std::byte* panel, float* out) noexcept {
  std::array<float, kSuperBlock> row;
  const std::int64_t B = block_elements(format);
  for (int r = 0; r < kPanelLanes; ++r) {
    dequantize_panel_lane(format, panel, r, row.data());
    for (std::int64_t k = 0; k < B; ++k) out[kPanelLanes * k + r] = row[static_cast<std::size_t>(k)];
  }
}

}  // namespace sc2::quant
