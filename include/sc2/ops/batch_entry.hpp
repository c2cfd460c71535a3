#pragma once
/// \file
/// One sequence's chunk in a ragged batch, as every backend's kernels read it
/// (see batch_plan.hpp). Plain 32-bit fields and no other include, so that
/// device code compiled by nvcc reads the same struct the host wrote.

#include <cstdint>

namespace sc2::ops {

/// One sequence's chunk in a batch.
struct BatchEntry {
  std::int32_t first_row = 0;       ///< its first row in the packed batch
  std::int32_t rows = 0;            ///< T_b: its tokens in this batch
  std::int32_t start = 0;           ///< absolute position of its first row
  std::int32_t first_position = 0;  ///< the sequence's first position: no key exists before it
  std::int32_t page_offset = 0;     ///< where its pages start in the page table
  std::int32_t first_page = 0;      ///< the logical page number of page_table[page_offset]
  std::int32_t pages = 0;           ///< how many pages it lists
};

}  // namespace sc2::ops
