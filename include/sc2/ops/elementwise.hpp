#pragma once
/// \file
/// Residual addition, and the gathering of rows.
///
///     acc[t, d] += x[t, d]          acc, x (T, D)
///     out[r, d]  = in[rows[r], d]   out (R, D), in (T, D), rows (R): the rows that want logits

#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>

#include <cstdint>

namespace sc2::ops {

/// Adds `x` into `acc`, element by element.
template <ExecutionContext Ctx>
void add(Ctx& ctx, Matrix<ActivationOf<Ctx>, SpaceOf<Ctx>> acc, Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> x) {
  SC2_CHECK(acc.extents() == x.extents() && acc.stride(1) == 1 && x.stride(1) == 1,
            "add: shapes ({}, {}) and ({}, {}) differ, or rows are not contiguous", acc.extent(0), acc.extent(1),
            x.extent(0), x.extent(1));
  run_add(ctx, acc, x);
}

/// Copies rows `rows` (R) of `in` (T, D) into `out` (R, D), in order.
template <ExecutionContext Ctx>
void gather_rows(Ctx& ctx, Matrix<ActivationOf<Ctx>, SpaceOf<Ctx>> out, Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> in,
                 Vector<const std::int32_t, SpaceOf<Ctx>> rows) {
  SC2_CHECK(out.extent(0) == rows.extent(0) && out.extent(1) == in.extent(1) && out.stride(1) == 1 &&
                in.stride(1) == 1 && rows.stride(0) == 1,
            "gather_rows: output ({}, {}) for {} rows of ({}, {})", out.extent(0), out.extent(1), rows.extent(0),
            in.extent(0), in.extent(1));
  if constexpr (HostSpace<SpaceOf<Ctx>>)
    for (std::int64_t r = 0; r < rows.extent(0); ++r)
      SC2_CHECK(rows(r) >= 0 && rows(r) < in.extent(0), "gather_rows: row {} of {}", rows(r), in.extent(0));
  run_gather_rows(ctx, out, in, rows);
}

}  // namespace sc2::ops
