#pragma once
/// \file
/// CPU implementation of `ops::sample`: each row's sampler on a copy of its
/// logits, in the context's scratch (nothing is allocated once it has grown).

#include <sc2/backends/cpu/context.hpp>
#include <sc2/ops/sample.hpp>

#include <algorithm>
#include <cstdint>
#include <span>

namespace sc2::cpu {

/// CPU `ops::sample`: ids[r] = rows[r].sampler->sample(copy of logits[r, :], rows[r].history).
inline void run_sample(Context& ctx, Matrix<const float, Host> logits, std::span<const ops::SampleRow> rows,
                       std::span<std::int32_t> ids) {
  const std::span<float> scores = ctx.scratch(0, static_cast<std::size_t>(logits.extent(1)));
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const std::span<const float> row = logits.row(static_cast<std::int64_t>(r));
    std::copy(row.begin(), row.end(), scores.begin());
    ids[r] = rows[r].sampler->sample(scores, rows[r].history);
  }
}

}  // namespace sc2::cpu
