#pragma once
// What the fuzz targets share: a check that reports a broken invariant as a crash,
// so libFuzzer keeps the input. Only sc2::Error may leave the library; any other
// exception escapes LLVMFuzzerTestOneInput and is reported too.

#include <cstdio>
#include <cstdlib>

/// Aborts with the failed condition when `cond` is false.
#define SC2_FUZZ_CHECK(cond)                                                              \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)
