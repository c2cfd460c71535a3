// The thread pool: every index once, ranges aligned to the grain, errors rethrown.

#include <sc2/core/arena.hpp>
#include <sc2/core/thread_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <vector>

TEST_CASE("parallel_for visits every index exactly once in grain-aligned ranges", "[thread_pool]") {
  for (int threads : {1, 2, 3, 8}) {
    sc2::ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    for (std::int64_t n : {0, 1, 5, 16, 17, 1000}) {
      for (std::int64_t grain : {1, 4, 16}) {
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
        std::atomic<int> misaligned{0};
        pool.parallel_for(n, grain, [&](std::int64_t begin, std::int64_t end) {
          if (begin % grain != 0) ++misaligned;
          for (std::int64_t i = begin; i < end; ++i) ++hits[static_cast<std::size_t>(i)];
        });
        INFO("threads " << threads << " n " << n << " grain " << grain);
        CHECK(misaligned == 0);
        for (auto& h : hits) CHECK(h == 1);
      }
    }
  }
}

TEST_CASE("run calls every thread once, also when nested", "[thread_pool]") {
  sc2::ThreadPool pool(4);
  std::vector<std::atomic<int>> seen(4);
  std::atomic<int> nested{0};
  pool.run([&](int t) {
    ++seen[static_cast<std::size_t>(t)];
    pool.run([&](int) { ++nested; });  // runs serially on this thread
  });
  for (auto& s : seen) CHECK(s == 1);
  CHECK(nested == 16);
}

TEST_CASE("an exception in a task reaches the caller and the pool stays usable", "[thread_pool]") {
  sc2::ThreadPool pool(3);
  CHECK_THROWS_WITH(pool.run([](int t) {
    if (t == 2) throw sc2::Error("task 2 failed");
  }),
                    "task 2 failed");
  std::atomic<int> count{0};
  pool.run([&](int) { ++count; });
  CHECK(count == 3);
}

TEST_CASE("the arena hands out aligned slices and refuses to overflow", "[arena]") {
  sc2::ArenaPlan plan;
  plan.reserve<float>(3);
  plan.reserve<double>(5);
  sc2::Arena<sc2::Host> arena(plan);
  auto a = arena.take_span<float>(3);
  auto b = arena.take_span<double>(5);
  CHECK(reinterpret_cast<std::uintptr_t>(a.data()) % sc2::kAlignment == 0);
  CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % sc2::kAlignment == 0);
  CHECK(arena.used() == arena.capacity());
  CHECK_THROWS_WITH(arena.take<float>(1), Catch::Contains("scratch arena exhausted"));
  arena.reset();
  CHECK(arena.take<float>(3) == a.data());
}
