#pragma once
/// \file
/// Token embedding lookup.
///
///     out[t, :] = table[ids[t], :]            out (T, D), table (V, D), ids (T)
///
/// The table keeps its dtype (f32, bf16, f16) and its backend's layout; rows
/// are widened to float as they are copied. An id outside [0, V) is an
/// `sc2::Error` naming the id and the vocabulary size: ids come from users,
/// and they are checked on the host before they reach a backend.

#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>

#include <cstdint>
#include <span>

namespace sc2::ops {

/// Checks that every id indexes a row of a table of `vocab_size` rows.
inline void check_token_ids(std::span<const std::int32_t> ids, std::int64_t vocab_size) {
  for (std::size_t t = 0; t < ids.size(); ++t)
    SC2_CHECK(ids[t] >= 0 && ids[t] < vocab_size, "token id {} at position {} is outside the vocabulary [0, {})",
              ids[t], t, vocab_size);
}

/// Gathers the rows of `table` named by `ids` (T) into `out` (T, D). The ids
/// must have passed `check_token_ids` (they may live in device memory).
template <ExecutionContext Ctx>
void embedding(Ctx& ctx, Matrix<ActivationOf<Ctx>, SpaceOf<Ctx>> out, const WeightView<SpaceOf<Ctx>>& table,
               Vector<const std::int32_t, SpaceOf<Ctx>> ids) {
  SC2_CHECK(out.extent(0) == ids.extent(0) && out.extent(1) == table.cols && ids.stride(0) == 1,
            "embedding: output is ({}, {}), expected ({}, {})", out.extent(0), out.extent(1), ids.extent(0),
            table.cols);
  if constexpr (HostSpace<SpaceOf<Ctx>>) check_token_ids(ids.span(), table.rows);
  run_embedding(ctx, out, table, ids);
}

namespace reference {
/// Plain embedding lookup, the definition the backends are tested against.
inline void embedding(MatrixView out, const WeightMatrix& table, std::span<const std::int32_t> ids) {
  for (std::int64_t t = 0; t < out.extent(0); ++t)
    for (std::int64_t d = 0; d < out.extent(1); ++d) out(t, d) = table.at(ids[static_cast<std::size_t>(t)], d);
}
}  // namespace reference

}  // namespace sc2::ops
