#pragma once
/// \file
/// The CUDA execution context and backends: one GPU, one stream, cuBLASLt.
///
/// Every CUDA op takes a `cuda::Context&` first. The context owns the stream
/// all its work is ordered on, a cuBLASLt handle with its workspace, the
/// device's properties, the matrix-product plans it has chosen (one per
/// shape, chosen once), and scratch areas that grow on first use and are
/// reused afterwards, so steady-state steps allocate nothing. Its memory
/// space is `Device` and its activations are float. Ops return as soon as
/// their kernels are queued; a copy to host memory waits for them.
///
/// Two backends run on it: `cuda::Backend` keeps weights and the KV pool in
/// bfloat16 (the product: half the bytes per step), `cuda::Float32Backend`
/// keeps both in float32 (to check the GPU kernels against the CPU backend
/// to float32 tolerances).
///
///     sc2::cuda::Context ctx;   // device 0
///     auto lm = sc2::CausalLM<sc2::Starcoder2<sc2::Config3B, sc2::cuda::Backend>>::load(ctx, "starcoder2-3b");

#include <sc2/backends/cuda/memory.hpp>
#include <sc2/core/dtype.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/memory.hpp>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <tuple>

namespace sc2::cuda {

/// Device scratch areas of a context, each grown on demand.
enum class Scratch : int {
  linear_input,        ///< activations rounded to the weights' dtype
  attention_partials,  ///< split-KV partial outputs
  sampling,            ///< scores, sorted scores, CUB's sort storage
  sampling_rows,       ///< per-row parameters, history, ids
  count_,
};

/// Pinned host staging areas of a context, each grown on demand.
enum class Staging : int {
  sampling_rows,  ///< parameters and history going up
  sampled_ids,    ///< ids coming back
  count_,
};

/// A chosen cuBLASLt matrix product for one shape: descriptors and algorithm.
struct MatmulPlan {
  cublasLtMatmulDesc_t op = nullptr;                         ///< transposes, compute type, epilogue
  cublasLtMatrixLayout_t a = nullptr;                        ///< the weight's layout
  cublasLtMatrixLayout_t b = nullptr;                        ///< the input's layout
  cublasLtMatrixLayout_t c = nullptr;                        ///< the output's layout
  cublasLtMatmulAlgo_t algo{};                               ///< the heuristic's first choice
};

/// The shape, types and alignments a `MatmulPlan` was chosen for.
using MatmulKey = std::tuple<int, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, int, int,
                             int>;  // dtype, T, N, K, ld in, ld out, bias, align a, b, c

/// One GPU, one stream, cuBLASLt; see the file comment.
class Context {
public:
  using Space = Device;      ///< memory the ops of this context read and write
  using Activation = float;  ///< element type of activations

  /// Bytes of cuBLASLt workspace (what NVIDIA recommends for Hopper).
  static constexpr std::size_t kBlasWorkspaceBytes = std::size_t{32} << 20;

  /// A context on GPU `device`; an `sc2::Error` when there is none.
  explicit Context(int device = 0) : device_(device) {
    const int devices = device_count();
    SC2_CHECK(devices > 0, "CUDA: no GPU is available to this process");
    SC2_CHECK(device >= 0 && device < devices, "CUDA: device {} does not exist ({} present)", device, devices);
    check(cudaSetDevice(device), "cudaSetDevice");
    check(cudaGetDeviceProperties(&properties_, device), "cudaGetDeviceProperties");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cublasLtCreate(&blas_), "cublasLtCreate");
    check(cudaMallocAsync(&blas_workspace_, kBlasWorkspaceBytes, stream_), "cudaMallocAsync");
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context() {
    (void)cudaStreamSynchronize(stream_);
    for (auto& [key, plan] : plans_) {
      (void)cublasLtMatmulDescDestroy(plan.op);
      (void)cublasLtMatrixLayoutDestroy(plan.a);
      (void)cublasLtMatrixLayoutDestroy(plan.b);
      (void)cublasLtMatrixLayoutDestroy(plan.c);
    }
    for (auto& area : scratch_)
      if (area.data) (void)cudaFreeAsync(area.data, stream_);
    for (auto& area : staging_)
      if (area.data) (void)cudaFreeHost(area.data);
    (void)cudaFreeAsync(blas_workspace_, stream_);
    (void)cudaStreamSynchronize(stream_);
    (void)cublasLtDestroy(blas_);
    (void)cudaStreamDestroy(stream_);
  }

  /// The stream every op of this context is queued on.
  cudaStream_t stream() const noexcept { return stream_; }
  /// The cuBLASLt handle.
  cublasLtHandle_t blas() const noexcept { return blas_; }
  /// cuBLASLt's workspace on the device.
  void* blas_workspace() const noexcept { return blas_workspace_; }
  /// The device ordinal.
  int device() const noexcept { return device_; }
  /// The device's properties.
  const cudaDeviceProp& properties() const noexcept { return properties_; }
  /// Streaming multiprocessors of the device.
  int multiprocessors() const noexcept { return properties_.multiProcessorCount; }

  /// Waits until all queued work has finished; an `sc2::Error` for a kernel that failed.
  void synchronize() { check(cudaStreamSynchronize(stream_), "a kernel of this context"); }

  /// At least `bytes` bytes of device scratch `area` (256-byte aligned), valid
  /// until the area is asked for again with a larger size. Grows in stream
  /// order: work queued before still sees the old memory.
  void* scratch(Scratch area, std::size_t bytes) {
    Area& a = scratch_[static_cast<std::size_t>(area)];
    if (a.bytes < bytes) {
      if (a.data) check(cudaFreeAsync(a.data, stream_), "cudaFreeAsync");
      a.data = nullptr;
      a.bytes = 0;
      check(cudaMallocAsync(&a.data, bytes, stream_), "cudaMallocAsync (scratch)");
      a.bytes = bytes;
    }
    return a.data;
  }
  /// At least `bytes` bytes of pinned host staging `area`, valid until asked
  /// for again with a larger size (growing waits for the stream first).
  void* staging(Staging area, std::size_t bytes) {
    Area& a = staging_[static_cast<std::size_t>(area)];
    if (a.bytes < bytes) {
      synchronize();
      if (a.data) check(cudaFreeHost(a.data), "cudaFreeHost");
      a.data = nullptr;
      a.bytes = 0;
      check(cudaMallocHost(&a.data, bytes), "cudaMallocHost");
      a.bytes = bytes;
    }
    return a.data;
  }

  /// The matrix-product plan of `key`, made by `make` the first time.
  template <class Make> const MatmulPlan& matmul_plan(const MatmulKey& key, Make&& make) {
    const auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    return plans_.emplace(key, make()).first->second;
  }

private:
  struct Area {
    void* data = nullptr;
    std::size_t bytes = 0;
  };

  int device_ = 0;
  cudaDeviceProp properties_{};
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t blas_ = nullptr;
  void* blas_workspace_ = nullptr;
  std::array<Area, static_cast<std::size_t>(Scratch::count_)> scratch_{};
  std::array<Area, static_cast<std::size_t>(Staging::count_)> staging_{};
  std::map<MatmulKey, MatmulPlan> plans_;
};

/// A CUDA backend keeping weights in `weight_dtype` and keys and values in `Kv`.
template <DType WeightDType, class Kv>
struct BackendOf {
  using Context = cuda::Context;  ///< execution context type
  using Space = Device;           ///< where weights, activations and the KV pool live
  using Activation = float;       ///< activations and accumulation
  using KvElement = Kv;           ///< keys and values in the KV pool
  /// The dtype weight matrices are kept in on the device, whatever the checkpoint stores.
  static constexpr DType weight_dtype(DType) noexcept { return WeightDType; }
};

/// The CUDA backend: bfloat16 weights and KV pool, float activations, float accumulation.
using Backend = BackendOf<DType::bf16, bf16>;
/// The CUDA backend in float32 throughout: for checking the kernels to float32 tolerances.
using Float32Backend = BackendOf<DType::f32, float>;

/// CUDA implementation of `ops::copy`: host to device, queued on the context's stream.
inline void run_copy(Context& ctx, void* dst, Device, const void* src, Host, std::size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx.stream()), "copy to the GPU");
}
/// CUDA implementation of `ops::copy`: device to host; returns once `dst` holds the data.
inline void run_copy(Context& ctx, void* dst, Host, const void* src, Device, std::size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx.stream()), "copy from the GPU");
  ctx.synchronize();
}
/// CUDA implementation of `ops::copy`: device to device, queued on the context's stream.
inline void run_copy(Context& ctx, void* dst, Device, const void* src, Device, std::size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx.stream()), "copy on the GPU");
}
/// CUDA implementation of `ops::copy`: host to host.
inline void run_copy(Context&, void* dst, Host, const void* src, Host, std::size_t bytes) noexcept {
  std::memmove(dst, src, bytes);
}

}  // namespace sc2::cuda
