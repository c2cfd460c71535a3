// sc2-attention-bench: decode attention alone, one token against a full cache.
//
//   sc2-attention-bench [--keys 4096] [--layers 30] [--heads 24] [--kv-heads 2] [--head-dim 128]
//                       [--threads 2] [--isa scalar|avx2|avx512|avx512bf16] [--repeat 10] [--json]
//
// Fills one ring-buffer KV cache per layer with `keys` random keys and values,
// then times one query token through the attention of every layer in turn
// (best of `repeat`), as decode does at that context. Each layer has its own
// cache, so with the 3B shape (30 layers × 8 MB) the keys and values come from
// memory, not from a cache that one layer left warm. The figure is milliseconds
// per token for all layers, and the bytes of keys and values read per second.

#include <sc2/backends/eigen.hpp>
#include <sc2/models/kv_cache.hpp>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

int main(int argc, char** argv) {
  CLI::App app{"Times decode attention (one token, full cache) on the CPU"};
  std::int64_t keys = 4096;
  int layers = 30, heads = 24, kv_heads = 2, head_dim = 128, threads = 2, repeat = 10;
  std::string isa;
  bool json = false;
  app.add_option("--keys", keys, "keys in the cache (the window)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--layers", layers, "layers, each with its own cache")->check(CLI::Range(1, 1000));
  app.add_option("--heads", heads, "query heads")->check(CLI::Range(1, 1024));
  app.add_option("--kv-heads", kv_heads, "key/value heads (divides --heads)")->check(CLI::Range(1, 1024));
  app.add_option("--head-dim", head_dim, "head dimension")->check(CLI::Range(1, 1024));
  app.add_option("--threads", threads, "threads (0: all cores)");
  app.add_option("--isa", isa, "force a SIMD path: scalar, avx2, avx512 or avx512bf16");
  app.add_option("--repeat", repeat, "timed repetitions")->check(CLI::Range(1, 1000));
  app.add_flag("--json", json, "print one JSON object");
  CLI11_PARSE(app, argc, argv);

  try {
    if (heads % kv_heads != 0) throw sc2::Error(fmt::format("--heads {} is not a multiple of --kv-heads {}", heads, kv_heads));
    sc2::CpuContext ctx(threads);
    if (!isa.empty()) ctx.set_isa(sc2::cpu::parse_isa(isa));
    const std::int64_t q_width = std::int64_t{heads} * head_dim, kv_width = std::int64_t{kv_heads} * head_dim;
    sc2::KvCache cache(layers, keys, kv_heads, head_dim, keys + 1);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    const auto random = [&](std::int64_t n) {
      std::vector<float> v(static_cast<std::size_t>(n));
      for (auto& x : v) x = normal(rng);
      return v;
    };
    const auto past_k = random(keys * kv_width), past_v = random(keys * kv_width);
    for (int l = 0; l < layers; ++l)
      cache.store(l, sc2::ConstMatrixView(past_k.data(), {keys, kv_width}),
                  sc2::ConstMatrixView(past_v.data(), {keys, kv_width}));
    cache.advance(keys);
    const auto q = random(q_width), k = random(kv_width), v = random(kv_width);
    std::vector<float> out(static_cast<std::size_t>(q_width));
    const sc2::ops::AttentionShape shape{heads, kv_heads, head_dim, 1.0f / std::sqrt(static_cast<float>(head_dim))};
    const sc2::ops::SlidingWindowMask mask{keys};

    double best = 1e30;
    for (int r = 0; r < repeat; ++r) {
      const auto start = std::chrono::steady_clock::now();
      for (int l = 0; l < layers; ++l)
        sc2::ops::attention(ctx, sc2::MatrixView(out.data(), {1, q_width}), sc2::ConstMatrixView(q.data(), {1, q_width}),
                            sc2::ConstMatrixView(k.data(), {1, kv_width}), sc2::ConstMatrixView(v.data(), {1, kv_width}),
                            cache.ring(l), keys, shape, mask);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    const double bytes = 2.0 * static_cast<double>(layers) * static_cast<double>(keys) * static_cast<double>(kv_width) * 4;
    if (json)
      fmt::print("{{\"isa\": \"{}\", \"threads\": {}, \"keys\": {}, \"layers\": {}, \"ms_per_token\": {}, "
                 "\"kv_gb_per_s\": {}}}\n",
                 sc2::cpu::isa_name(ctx.isa()), ctx.threads(), keys, layers, best * 1e3, bytes / best / 1e9);
    else
      fmt::print("{} path, {} threads: {} layers × {} keys: {:.2f} ms per token ({:.1f} GB/s of keys and values)\n",
                 sc2::cpu::isa_name(ctx.isa()), ctx.threads(), layers, keys, best * 1e3, bytes / best / 1e9);
  } catch (const std::exception& e) {
    fmt::print(stderr, "sc2-attention-bench: {}\n", e.what());
    return 1;
  }
}
