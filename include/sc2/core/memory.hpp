#pragma once
/// \file
/// Memory spaces: where a buffer, a tensor view or a weight lives.
///
/// A memory space is a tag type. `Host` is ordinary memory the CPU reads;
/// `Device` is GPU memory. Every buffer, view and weight carries its space in
/// its type, so a host view handed to a device op does not compile. A space
/// says how its memory is allocated through `MemorySpaceTraits<Space>`: the
/// host traits live here, a device backend specialises them in its own
/// headers (a CPU-only build never sees them).
///
///     sc2::Buffer<float, sc2::Host> b(1024);            // 64-byte aligned, zeroed
///     static_assert(sc2::HostSpace<sc2::Host>);

#include <sc2/core/error.hpp>

#include <concepts>
#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>

#include <unistd.h>

namespace sc2 {

/// Memory space tag: ordinary host memory.
struct Host {};
/// Memory space tag: GPU device memory.
struct Device {};

/// True for the space whose memory the CPU may dereference.
template <class Space>
concept HostSpace = std::same_as<Space, Host>;

/// Alignment of every buffer and arena slice, in bytes.
inline constexpr std::size_t kAlignment = 64;

/// How memory of a space is allocated, freed and zeroed. Specialised per
/// space; a backend that brings a space brings its traits.
template <class Space> struct MemorySpaceTraits;

/// Host memory: aligned operator new, zeroed with memset.
template <> struct MemorySpaceTraits<Host> {
  /// `bytes` bytes aligned to `kAlignment`; an `sc2::Error` when memory runs out.
  static void* allocate(std::size_t bytes) {
    try {
      return ::operator new(bytes, std::align_val_t{kAlignment});
    } catch (const std::bad_alloc&) {
      SC2_FAIL("cannot allocate {} bytes of host memory: out of memory", bytes);
    }
  }
  /// Frees what `allocate` returned.
  static void deallocate(void* p) noexcept { ::operator delete(p, std::align_val_t{kAlignment}); }
  /// Sets `bytes` bytes at `p` to zero.
  static void zero(void* p, std::size_t bytes) noexcept { std::memset(p, 0, bytes); }
};

/// Bytes of physical memory of this machine (the largest size_t when unknown):
/// sizes that come from files are checked against it before anything is allocated.
inline std::size_t physical_memory_bytes() noexcept {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return SIZE_MAX;
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page);
}

/// A space whose allocation traits are known (complete) where it is used.
template <class Space>
concept MemorySpace = requires(std::size_t n, void* p) {
  { MemorySpaceTraits<Space>::allocate(n) } -> std::same_as<void*>;
  MemorySpaceTraits<Space>::deallocate(p);
};

}  // namespace sc2
