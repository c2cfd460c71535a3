// sc2-attention-bench: decode attention alone, one token against a full cache.
//
//   sc2-attention-bench [--keys 4096] [--layers 30] [--heads 24] [--kv-heads 2] [--head-dim 128]
//                       [--page-size 32] [--threads 2] [--isa scalar|avx2|avx512|avx512bf16|amx|amxbf16] [--repeat 10] [--json]
//
// Fills the pages of one sequence in a KV pool with `keys` random keys and values
// in every layer, then times one query token through the attention of every layer
// in turn (best of `repeat`), as decode does at that context. Each layer has its
// own pages, so with the 3B shape (30 layers × 8 MB) the keys and values come from
// memory, not from a cache that one layer left warm. The figure is milliseconds
// per token for all layers, and the bytes of keys and values read per second.

#include <sc2/backends/cpu.hpp>
#include <sc2/models/kv_pool.hpp>

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
  std::int64_t page_size = 32;
  std::string isa;
  bool json = false;
  app.add_option("--keys", keys, "keys in the cache (the window)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--layers", layers, "layers, each with its own cache")->check(CLI::Range(1, 1000));
  app.add_option("--heads", heads, "query heads")->check(CLI::Range(1, 1024));
  app.add_option("--kv-heads", kv_heads, "key/value heads (divides --heads)")->check(CLI::Range(1, 1024));
  app.add_option("--head-dim", head_dim, "head dimension")->check(CLI::Range(1, 1024));
  app.add_option("--page-size", page_size, "positions per KV page")->check(CLI::Range(1, 1 << 16));
  app.add_option("--threads", threads, "threads (0: all cores)");
  app.add_option("--isa", isa, "force a SIMD path: scalar, avx2, avx512, avx512bf16, amx or amxbf16");
  app.add_option("--repeat", repeat, "timed repetitions")->check(CLI::Range(1, 1000));
  app.add_flag("--json", json, "print one JSON object");
  CLI11_PARSE(app, argc, argv);

  try {
    if (heads % kv_heads != 0) throw sc2::Error(fmt::format("--heads {} is not a multiple of --kv-heads {}", heads, kv_heads));
    sc2::CpuContext ctx(threads);
    if (!isa.empty()) ctx.set_isa(sc2::cpu::parse_isa(isa));
    const std::int64_t q_width = std::int64_t{heads} * head_dim, kv_width = std::int64_t{kv_heads} * head_dim;
    const std::int64_t chunk = 512;
    const sc2::KvShape kv_shape{layers, kv_heads, head_dim, keys + 1, keys + 1};
    sc2::KvPool<sc2::cpu::Backend> pool(
        kv_shape, {.page_size = page_size,
                   .pages = sc2::KvPool<sc2::cpu::Backend>::pages_per_sequence(kv_shape, page_size, chunk)});
    const sc2::SequenceId seq = pool.add();
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    const auto random = [&](std::int64_t n) {
      std::vector<float> v(static_cast<std::size_t>(n));
      for (auto& x : v) x = normal(rng);
      return v;
    };
    // The plan of `n` rows of the sequence from its current length, as the model builds it.
    std::vector<std::int32_t> positions, row_entry, table;
    std::vector<sc2::ops::BatchEntry> entry(1);
    const auto plan_rows = [&](std::int64_t n) {
      const std::int64_t start = pool.length(seq);
      pool.prepare(ctx, seq, n);
      const std::int64_t first_page = pool.lowest_needed(start) / page_size;
      const std::int64_t pages = (start + n - 1) / page_size - first_page + 1;
      table.resize(static_cast<std::size_t>(pages));
      pool.page_table(seq, first_page, pages, table.data());
      entry[0] = {0, static_cast<std::int32_t>(n), static_cast<std::int32_t>(start), 0, 0,
                  static_cast<std::int32_t>(first_page), static_cast<std::int32_t>(pages)};
      positions.resize(static_cast<std::size_t>(n));
      row_entry.assign(static_cast<std::size_t>(n), 0);
      for (std::int64_t t = 0; t < n; ++t) positions[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(start + t);
      return sc2::ops::BatchView<sc2::Host>{std::span<const std::int32_t>(positions),
                                            std::span<const std::int32_t>(row_entry),
                                            std::span<const sc2::ops::BatchEntry>(entry),
                                            std::span<const std::int32_t>(table), page_size};
    };
    const auto past_k = random(chunk * kv_width), past_v = random(chunk * kv_width);
    for (std::int64_t done = 0; done < keys; done += chunk) {
      const std::int64_t n = std::min(chunk, keys - done);
      const auto plan = plan_rows(n);
      for (int l = 0; l < layers; ++l)
        sc2::ops::kv_append(ctx, pool.layer(l), sc2::ConstMatrixView(past_k.data(), {n, kv_width}),
                            sc2::ConstMatrixView(past_v.data(), {n, kv_width}), plan);
      pool.advance(seq, n);
    }
    const auto q = random(q_width), k = random(kv_width), v = random(kv_width);
    std::vector<float> out(static_cast<std::size_t>(q_width));
    const sc2::ops::AttentionShape shape{heads, kv_heads, head_dim, 1.0f / std::sqrt(static_cast<float>(head_dim))};
    const sc2::ops::SlidingWindowMask mask{keys};
    const auto decode = plan_rows(1);  // the query token at position `keys`, which sees the last `keys` keys
    for (int l = 0; l < layers; ++l)
      sc2::ops::kv_append(ctx, pool.layer(l), sc2::ConstMatrixView(k.data(), {1, kv_width}),
                          sc2::ConstMatrixView(v.data(), {1, kv_width}), decode);

    double best = 1e30;
    for (int r = 0; r < repeat; ++r) {
      const auto start = std::chrono::steady_clock::now();
      for (int l = 0; l < layers; ++l)
        sc2::ops::attention(ctx, sc2::MatrixView(out.data(), {1, q_width}), sc2::ConstMatrixView(q.data(), {1, q_width}),
                            pool.layer(l), decode, shape, mask);
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
