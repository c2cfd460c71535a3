#pragma once
// Counting heap allocations in tests.
//
// tests/support_allocations.cpp replaces the global operator new (every form: plain,
// array, nothrow, aligned, aligned nothrow) and the matching operator delete forms
// with malloc/free-based versions that add 1 to a counter of the calling thread. A
// test binary that includes this header must link that source file (sc2-tests does).
//
// Only calls to operator new are counted: memory a library takes from malloc itself
// is not, and a compiler may elide the new/delete pair of a new-expression whose
// pointer never escapes (explicit `::operator new(n)` calls are never elided). The
// counter is per thread, so allocations made by other threads (a thread pool, the
// test framework) never disturb a measurement taken on this one.
//
//     const std::uint64_t before = sc2::test::allocations();
//     sampler.sample(scores, history);
//     CHECK(sc2::test::allocations() == before);  // nothing allocated in between

#include <cstdint>

namespace sc2::test {

/// The number of calls to a global operator new made so far on the calling thread.
std::uint64_t allocations() noexcept;

}  // namespace sc2::test
