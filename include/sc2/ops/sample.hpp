#pragma once
/// \file
/// Choosing the next token of many rows at once, where their logits are.
///
///     ids[r] = sampler_r(logits[r, :], history_r)      logits (R, V), ids (R)
///
/// Row r is processed by its own `Sampler` (repetition penalty over its
/// history, then greedy argmax or temperature, top-k, top-p, min-p and a draw
/// from its own seeded generator; see sampler.hpp). The CPU backend runs the
/// sampler on each row; a device backend runs the same rules on the device
/// with the draw's uniform number taken from the row's generator, so only R
/// ids cross to the host.

#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/generation/sampler.hpp>

#include <cstdint>
#include <span>

namespace sc2::ops {

/// One row to sample: its sampler (settings and generator) and the ids seen so far.
struct SampleRow {
  Sampler* sampler = nullptr;               ///< settings and random state of the row's sequence
  std::span<const std::int32_t> history;    ///< prompt and generated ids, for the repetition penalty
};

/// Writes one chosen id per row of `logits` (R, V) to `ids` (R).
template <ExecutionContext Ctx>
void sample(Ctx& ctx, Matrix<const float, SpaceOf<Ctx>> logits, std::span<const SampleRow> rows,
            std::span<std::int32_t> ids) {
  SC2_CHECK(logits.extent(0) == static_cast<std::int64_t>(rows.size()) && ids.size() == rows.size() &&
                logits.stride(1) == 1,
            "sample: {} rows of logits for {} samplers and {} ids", logits.extent(0), rows.size(), ids.size());
  for (const SampleRow& row : rows) SC2_CHECK(row.sampler != nullptr, "sample: a row has no sampler");
  if (rows.empty()) return;
  run_sample(ctx, logits, rows, ids);
}

}  // namespace sc2::ops
