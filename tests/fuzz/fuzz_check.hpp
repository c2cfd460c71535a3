#pragma once
// What the fuzz targets share: a check that reports a broken invariant as a crash,
// so libFuzzer keeps the input, and an in-memory file for the loaders that map a
// path. Only sc2::Error may leave the library; any other exception escapes
// LLVMFuzzerTestOneInput and is reported too.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <sys/mman.h>
#include <unistd.h>

/// Aborts with the failed condition when `cond` is false.
#define SC2_FUZZ_CHECK(cond)                                                              \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

/// A path whose file holds `data`: one in-memory file (memfd) per process, reached
/// through /proc and rewritten for each input, so fuzzing never waits on a disk.
inline std::filesystem::path sc2_fuzz_input_file(const std::uint8_t* data, std::size_t size) {
  static const int fd = ::memfd_create("sc2-fuzz-input", MFD_CLOEXEC);
  SC2_FUZZ_CHECK(fd >= 0);
  SC2_FUZZ_CHECK(::ftruncate(fd, 0) == 0);
  for (std::size_t done = 0; done < size;) {
    const ::ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<::off_t>(done));
    SC2_FUZZ_CHECK(n > 0);
    done += static_cast<std::size_t>(n);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}
