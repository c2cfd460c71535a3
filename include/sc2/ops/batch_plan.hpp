#pragma once
/// \file
/// A ragged batch as the kernels see it, and the pages of a KV pool layer.
///
/// One forward call runs chunks of several sequences packed into one (T, D)
/// activation matrix, T = Σ_b T_b rows. Entry b is one sequence's chunk: rows
/// first_row .. first_row + T_b − 1 hold its tokens at absolute positions
/// start .. start + T_b − 1. Keys and values live in pages of P positions:
/// logical page n of a sequence holds positions n·P .. n·P + P − 1, and the
/// batch's page table lists, for each entry, the physical pages of the logical
/// pages first_page, first_page + 1, ... that its rows may read or write.
///
///     positions   (T)   absolute position of each row
///     row_entry   (T)   the entry each row belongs to
///     entries     (B)   BatchEntry
///     page_table  (Σ)   physical page ids, entry b's from page_offset on
///
///     KV pool layer:  keys, values  (pages, Hkv, P, Dh)
///
/// The plan is built on the host once per step and copied to the backend's
/// memory, so a device kernel reads it without a round trip.

#include <sc2/core/tensor.hpp>
#include <sc2/ops/batch_entry.hpp>

#include <cstdint>

namespace sc2::ops {

/// The plan of one batch, in memory space `Space`.
template <class Space>
struct BatchView {
  Vector<const std::int32_t, Space> positions;   ///< (T) absolute positions
  Vector<const std::int32_t, Space> row_entry;   ///< (T) entry of each row
  Vector<const BatchEntry, Space> entries;       ///< (B)
  Vector<const std::int32_t, Space> page_table;  ///< physical pages of the entries' logical pages
  std::int64_t page_size = 0;                    ///< P: positions per page

  /// T: rows of the packed batch.
  std::int64_t rows() const noexcept { return positions.extent(0); }
  /// B: sequences in the batch.
  std::int64_t sequences() const noexcept { return entries.extent(0); }
};

/// The keys and values of one layer of a KV pool: pages of (Hkv, P, Dh), in `Space`.
template <class T, class Space>
struct KvLayer {
  T* keys = nullptr;           ///< (pages, Hkv, P, Dh)
  T* values = nullptr;         ///< (pages, Hkv, P, Dh)
  std::int64_t pages = 0;      ///< pages in the pool
  std::int64_t page_size = 0;  ///< P
  int kv_heads = 0;            ///< Hkv
  int head_dim = 0;            ///< Dh

  /// Elements between one page and the next: Hkv · P · Dh.
  std::int64_t page_elements() const noexcept { return std::int64_t{kv_heads} * page_size * head_dim; }
  /// Offset in elements of position slot `slot` of kv head `g` in physical page `page`.
  std::int64_t offset(std::int64_t page, std::int64_t g, std::int64_t slot) const noexcept {
    return ((page * kv_heads + g) * page_size + slot) * head_dim;
  }
};

/// The physical page holding absolute position `position` for `entry`, read from a host page table.
inline std::int32_t page_of(const BatchEntry& entry, const std::int32_t* page_table, std::int64_t page_size,
                            std::int64_t position) noexcept {
  return page_table[entry.page_offset + position / page_size - entry.first_page];
}

}  // namespace sc2::ops
