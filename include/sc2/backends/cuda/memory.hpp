#pragma once
/// \file
/// Device memory for the CUDA backend: `MemorySpaceTraits<Device>`, and the
/// checks that turn CUDA and cuBLAS status codes into `sc2::Error`.
///
/// Device buffers come from CUDA's stream-ordered allocator (its default
/// memory pool, so that freed memory is reused without a trip to the driver).
/// An allocation is complete and zeroed when `allocate`/`zero` return, so any
/// stream may use it; freeing waits for the device first, since kernels of any
/// stream may still read the memory.
///
///     sc2::Buffer<float, sc2::Device> b(1024);   // 1024 zeroed floats on the current GPU

#include <sc2/core/error.hpp>
#include <sc2/core/memory.hpp>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>

namespace sc2::cuda {

/// Throws `sc2::Error` naming `what` when `status` is not cudaSuccess.
inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) [[unlikely]] {
    (void)cudaGetLastError();  // clear a sticky launch error so the next call reports its own
    SC2_FAIL("CUDA: {} failed: {} ({})", what, cudaGetErrorString(status), cudaGetErrorName(status));
  }
}
/// Throws `sc2::Error` naming `what` when `status` is not CUBLAS_STATUS_SUCCESS.
inline void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) [[unlikely]]
    SC2_FAIL("cuBLASLt: {} failed: {} ({})", what, cublasLtGetStatusString(status), cublasLtGetStatusName(status));
}

/// Number of CUDA devices this process can use (0 without a GPU or a driver).
inline int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace sc2::cuda

namespace sc2 {

/// GPU memory of the current device: stream-ordered allocation, zeroed with cudaMemset.
template <> struct MemorySpaceTraits<Device> {
  /// `bytes` bytes of device memory (256-byte aligned); an `sc2::Error` when it runs out.
  static void* allocate(std::size_t bytes) {
    void* p = nullptr;
    const cudaError_t status = cudaMallocAsync(&p, bytes, cudaStreamPerThread);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      std::size_t free = 0, total = 0;
      (void)cudaMemGetInfo(&free, &total);
      SC2_FAIL("cannot allocate {} bytes of GPU memory: out of memory ({} of {} bytes free)", bytes, free, total);
    }
    cuda::check(status, "cudaMallocAsync");
    cuda::check(cudaStreamSynchronize(cudaStreamPerThread), "cudaMallocAsync");
    return p;
  }
  /// Frees what `allocate` returned, once the device has finished with it.
  static void deallocate(void* p) noexcept {
    (void)cudaDeviceSynchronize();
    (void)cudaFreeAsync(p, cudaStreamPerThread);
  }
  /// Sets `bytes` bytes at `p` to zero, complete when it returns.
  static void zero(void* p, std::size_t bytes) noexcept {
    (void)cudaMemsetAsync(p, 0, bytes, cudaStreamPerThread);
    (void)cudaStreamSynchronize(cudaStreamPerThread);
  }
};

}  // namespace sc2
