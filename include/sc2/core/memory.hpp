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
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <sys/mman.h>
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

/// Host allocations of at least this many bytes are aligned to 2 MiB and
/// asked to be backed by huge pages: weights and KV pools of gigabytes then
/// fault in a few thousand pages instead of a million, and decode's streams
/// miss the TLB less.
inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

/// Host memory: aligned_alloc (huge pages for large sizes), zeroed with memset.
template <> struct MemorySpaceTraits<Host> {
  /// `bytes` bytes aligned to `kAlignment`; an `sc2::Error` when memory runs out.
  static void* allocate(std::size_t bytes) {
    const std::size_t align = bytes >= 2 * kHugePageBytes ? kHugePageBytes : kAlignment;
    SC2_CHECK(bytes <= SIZE_MAX - align, "cannot allocate {} bytes of host memory: out of memory", bytes);
    const std::size_t rounded = (bytes + align - 1) / align * align;
    void* p = std::aligned_alloc(align, rounded);
    SC2_CHECK(p != nullptr, "cannot allocate {} bytes of host memory: out of memory", bytes);
#ifdef MADV_HUGEPAGE
    if (align == kHugePageBytes) ::madvise(p, rounded, MADV_HUGEPAGE);  // a hint: no huge pages is no error
#endif
    return p;
  }
  /// Frees what `allocate` returned.
  static void deallocate(void* p) noexcept { std::free(p); }
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
