#pragma once
/// \file
/// Copy between memory spaces: the one place data crosses from host to device
/// or back.
///
///     dst[i...] = src[i...]            dst, src: the same extents, dense rows
///
/// The context decides how: the CPU backend copies host memory; a device
/// backend copies between its memory and the host (or within its memory) on
/// its stream. Each side must be the context's own space or host memory; any
/// other pairing fails to compile. The copy is ordered with the context's
/// other work: a host destination holds the data when `copy` returns only on
/// a context that completes its work before returning (the CPU) or after the
/// context is synchronised (a device).

#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>

#include <cstddef>

namespace sc2::ops {

/// Copies `src` into `dst`; both contiguous, of the same extents.
template <ExecutionContext Ctx, class T, int Rank, class DstSpace, class SrcSpace>
  requires ReachableFrom<SpaceOf<Ctx>, DstSpace> && ReachableFrom<SpaceOf<Ctx>, SrcSpace>
void copy(Ctx& ctx, TensorView<T, Rank, DstSpace> dst, TensorView<const T, Rank, SrcSpace> src) {
  SC2_CHECK(dst.extents() == src.extents(), "copy: extents differ ({} and {} elements)", dst.size(), src.size());
  SC2_CHECK(dst.is_contiguous() && src.is_contiguous(), "copy: both sides must be contiguous");
  if (dst.size() == 0) return;
  run_copy(ctx, static_cast<void*>(dst.data()), DstSpace{}, static_cast<const void*>(src.data()), SrcSpace{},
           static_cast<std::size_t>(dst.size()) * sizeof(T));
}

/// Copies `src` into `dst` (mutable source view).
template <ExecutionContext Ctx, class T, int Rank, class DstSpace, class SrcSpace>
  requires ReachableFrom<SpaceOf<Ctx>, DstSpace> && ReachableFrom<SpaceOf<Ctx>, SrcSpace> && (!std::is_const_v<T>)
void copy(Ctx& ctx, TensorView<T, Rank, DstSpace> dst, TensorView<T, Rank, SrcSpace> src) {
  copy(ctx, dst, TensorView<const T, Rank, SrcSpace>(src));
}

}  // namespace sc2::ops
