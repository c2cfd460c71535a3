#pragma once
// Helpers of the GPU tests: one context for the process, skipping without a GPU,
// and host <-> device copies of test arrays.

#include "support.hpp"

#include <sc2/backends/cuda.hpp>
#include <sc2/core/buffer.hpp>
#include <sc2/ops/copy.hpp>

#include <memory>
#include <span>
#include <vector>

namespace sc2::test {

/// The process's CUDA context, or null without a GPU.
inline cuda::Context* gpu() {
  static const std::unique_ptr<cuda::Context> ctx =
      cuda::device_count() > 0 ? std::make_unique<cuda::Context>(0) : nullptr;
  return ctx.get();
}

/// Skips the test case (reported skipped under CTest) when no GPU is present.
#define SC2_REQUIRE_GPU()                                                 \
  do {                                                                    \
    if (::sc2::test::gpu() == nullptr) SC2_SKIP_TEST("no CUDA GPU here"); \
  } while (0)

/// A device copy of host values.
template <class T> Buffer<T, Device> to_device(cuda::Context& ctx, std::span<const T> host) {
  Buffer<T, Device> b(host.size());
  ops::copy(ctx, b.view(), Vector<const T, Host>(host));
  return b;
}
/// A device copy of a host vector.
template <class T> Buffer<T, Device> to_device(cuda::Context& ctx, const std::vector<T>& host) {
  return to_device(ctx, std::span<const T>(host));
}
/// The values of a device buffer, on the host.
template <class T> std::vector<T> to_host(cuda::Context& ctx, const Buffer<T, Device>& device) {
  std::vector<T> host(device.size());
  ops::copy(ctx, Vector<T, Host>(std::span<T>(host)), device.view());
  return host;
}

/// Rounds every value to bfloat16 and back: what a bf16 KV pool or GEMM input keeps.
inline std::vector<float> bf16_rounded(std::vector<float> v) {
  for (float& x : v) x = bf16::round(x).to_float();
  return v;
}

}  // namespace sc2::test
