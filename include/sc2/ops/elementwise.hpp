#pragma once
/// \file
/// Residual addition.
///
///     acc[t, d] += x[t, d]          acc, x (T, D)

#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>

namespace sc2::ops {

/// Adds `x` into `acc`, element by element.
template <class Context> void add(Context& ctx, MatrixView acc, ConstMatrixView x) {
  SC2_CHECK(acc.extents() == x.extents(), "add: shapes ({}, {}) and ({}, {}) differ", acc.extent(0), acc.extent(1),
            x.extent(0), x.extent(1));
  run_add(ctx, acc, x);
}

}  // namespace sc2::ops
