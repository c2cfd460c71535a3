// Memory spaces are part of the types: an op takes views of its context's space
// only, copy is the one op that crosses spaces, and host-only access does not
// exist for device views. These are compile-time facts, checked with requires-
// expressions against a stand-in device context (no device is needed).

#include "support.hpp"

#include <sc2/backends/cpu.hpp>
#include <sc2/core/buffer.hpp>
#include <sc2/core/context.hpp>
#include <sc2/models/kv_pool.hpp>
#include <sc2/ops/attention.hpp>
#include <sc2/ops/copy.hpp>
#include <sc2/ops/embedding.hpp>
#include <sc2/ops/layer_norm.hpp>
#include <sc2/ops/linear.hpp>

namespace {

// A context of the device space: only its types matter here.
struct DeviceContext {
  using Space = sc2::Device;
  using Activation = float;
};
static_assert(sc2::ExecutionContext<DeviceContext>);
static_assert(sc2::ExecutionContext<sc2::cpu::Context>);
static_assert(sc2::ComputeBackend<sc2::cpu::Backend>);

using HostMatrix = sc2::Matrix<float, sc2::Host>;
using DeviceMatrix = sc2::Matrix<float, sc2::Device>;

// linear(ctx, out, in, w) is callable for these argument types.
template <class Ctx, class Out, class In, class W>
constexpr bool linear_accepts = requires(Ctx& ctx, Out out, In in, const W& w) { sc2::ops::linear(ctx, out, in, w); };

// A host context takes host views; a device context takes device views and refuses host ones.
static_assert(linear_accepts<sc2::cpu::Context, HostMatrix, sc2::ConstMatrixView, sc2::WeightView<sc2::Host>>);
static_assert(linear_accepts<DeviceContext, DeviceMatrix, sc2::Matrix<const float, sc2::Device>,
                             sc2::WeightView<sc2::Device>>);
static_assert(!linear_accepts<DeviceContext, HostMatrix, sc2::ConstMatrixView, sc2::WeightView<sc2::Host>>);
static_assert(!linear_accepts<DeviceContext, DeviceMatrix, sc2::Matrix<const float, sc2::Device>,
                              sc2::WeightView<sc2::Host>>);
static_assert(!linear_accepts<sc2::cpu::Context, DeviceMatrix, sc2::Matrix<const float, sc2::Device>,
                              sc2::WeightView<sc2::Device>>);

// Copy crosses between a context's space and the host, both ways, and nowhere else.
template <class Ctx, class Dst, class Src>
constexpr bool copy_accepts = requires(Ctx& ctx, Dst dst, Src src) { sc2::ops::copy(ctx, dst, src); };
using HostVector = sc2::Vector<float, sc2::Host>;
using DeviceVector = sc2::Vector<float, sc2::Device>;
static_assert(copy_accepts<DeviceContext, DeviceVector, sc2::Vector<const float, sc2::Host>>);
static_assert(copy_accepts<DeviceContext, HostVector, sc2::Vector<const float, sc2::Device>>);
static_assert(copy_accepts<DeviceContext, DeviceVector, sc2::Vector<const float, sc2::Device>>);
static_assert(copy_accepts<sc2::cpu::Context, HostVector, sc2::Vector<const float, sc2::Host>>);
static_assert(!copy_accepts<sc2::cpu::Context, DeviceVector, sc2::Vector<const float, sc2::Host>>);

// Element access exists for host views only.
template <class V>
constexpr bool indexable = requires(V v) { v(0, 0); };
static_assert(indexable<HostMatrix>);
static_assert(!indexable<DeviceMatrix>);
template <class B>
constexpr bool spans = requires(B& b) { b.span(); };
static_assert(spans<sc2::Buffer<float, sc2::Host>>);
static_assert(!spans<sc2::Buffer<float, sc2::Device>>);
static_assert(!sc2::MemorySpace<sc2::Device>);  // a CPU-only build has no device allocator

}  // namespace

TEST_CASE("host copies go through the CPU context", "[spaces]") {
  sc2::CpuContext ctx(1);
  std::vector<float> a{1, 2, 3}, b(3);
  sc2::ops::copy(ctx, HostVector(std::span(b)), sc2::Vector<const float, sc2::Host>(std::span<const float>(a)));
  CHECK(a == b);
  std::vector<float> c(2);
  CHECK_THROWS_WITH(sc2::ops::copy(ctx, HostVector(std::span(c)), HostVector(std::span(a))),
                    Catch::Contains("extents differ"));
}
