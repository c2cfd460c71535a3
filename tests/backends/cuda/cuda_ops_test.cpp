// Every CUDA op against the CPU backend or the plain references, over grids of
// shapes: GQA groups 1, 2, 3, 4, 8 and 12, head dims 64, 96 and 128, windows
// shorter than the sequence, page boundaries and ragged batches. Without a GPU
// each case reports itself skipped.
//
// Tolerances. Float32 paths sum in another order than the references: a few
// ulps of the largest term, bounded here by 1e-4 absolute on values of order
// one. Where the GPU keeps bfloat16 (KV pool, GEMM inputs) the references are
// given the same bf16-rounded values, so the same float32 bound applies.

#include "cuda_support.hpp"
#include "paged_plan.hpp"

#include <sc2/backends/cpu.hpp>
#include <sc2/ops/activation.hpp>
#include <sc2/ops/elementwise.hpp>
#include <sc2/ops/embedding.hpp>
#include <sc2/ops/layer_norm.hpp>
#include <sc2/ops/linear.hpp>
#include <sc2/ops/rope.hpp>
#include <sc2/ops/sample.hpp>

#include <random>

namespace {

using sc2::test::max_abs_diff;
using sc2::test::random_floats;

std::vector<std::uint16_t> bf16_bits(const std::vector<float>& v) {
  std::vector<std::uint16_t> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = sc2::bf16::round(v[i]).bits;
  return out;
}

}  // namespace

TEST_CASE("CUDA linear matches the reference in f32 and bf16, with and without bias", "[cuda][linear]") {
  SC2_REQUIRE_GPU();
  auto& ctx = *sc2::test::gpu();
  std::mt19937 rng(11);
  for (const auto& [N, K] : {std::pair<std::int64_t, std::int64_t>{48, 64}, {96, 80}, {200, 136}, {7, 3}})
    for (const std::int64_t T : {1, 2, 5, 33, 130})
      for (const auto dtype : {sc2::DType::f32, sc2::DType::bf16})
        for (const bool with_bias : {false, true}) {
          INFO("T=" << T << " N=" << N << " K=" << K << " " << sc2::dtype_name(dtype) << " bias=" << with_bias);
          auto in = random_floats(static_cast<std::size_t>(T * K), rng);
          auto w = random_floats(static_cast<std::size_t>(N * K), rng, 0.5f);
          const auto bias = random_floats(static_cast<std::size_t>(N), rng);
          const auto w_bits = bf16_bits(w);
          const sc2::WeightMatrix host_w = dtype == sc2::DType::f32
                                               ? sc2::WeightMatrix{dtype, sc2::WeightLayout::row_major, w.data(), N, K, std::nullopt}
                                               : sc2::WeightMatrix{dtype, sc2::WeightLayout::row_major, w_bits.data(), N, K, std::nullopt};
          // The reference sees what the GPU multiplies: bf16 weights and bf16-rounded inputs.
          const auto ref_in = dtype == sc2::DType::f32 ? in : sc2::test::bf16_rounded(in);
          std::vector<float> want(static_cast<std::size_t>(T * N));
          sc2::ops::reference::linear(sc2::MatrixView(want.data(), {T, N}), sc2::ConstMatrixView(ref_in.data(), {T, K}),
                                      host_w, with_bias ? sc2::Vector<const float, sc2::Host>(std::span<const float>(bias))
                                                        : sc2::Vector<const float, sc2::Host>{});
          const auto weight = upload_matrix(ctx, host_w, dtype);
          const auto in_d = sc2::test::to_device(ctx, in), bias_d = sc2::test::to_device(ctx, bias);
          sc2::Buffer<float, sc2::Device> out_d(static_cast<std::size_t>(T * N));
          sc2::ops::linear(ctx, sc2::Matrix<float, sc2::Device>(out_d.data(), {T, N}),
                           sc2::Matrix<const float, sc2::Device>(in_d.data(), {T, K}), weight.view,
                           with_bias ? sc2::Vector<const float, sc2::Device>(bias_d.data(), {N})
                                     : sc2::Vector<const float, sc2::Device>{});
          const auto got = sc2::test::to_host(ctx, out_d);
          CHECK(max_abs_diff(got.data(), want.data(), got.size()) <= 1e-4);
        }
}

TEST_CASE("CUDA embedding, layer norm, gelu, rope, add and gather match their references", "[cuda][ops]") {
  SC2_REQUIRE_GPU();
  auto& ctx = *sc2::test::gpu();
  std::mt19937 rng(5);
  for (const std::int64_t T : {1, 3, 17})
    for (const std::int64_t D : {64, 96, 200, 3072}) {
      INFO("T=" << T << " D=" << D);
      const std::int64_t V = 50;
      // Embedding, from f32 and bf16 tables.
      const auto table = random_floats(static_cast<std::size_t>(V * D), rng);
      const auto table_bits = bf16_bits(table);
      std::vector<std::int32_t> ids(static_cast<std::size_t>(T));
      for (auto& id : ids) id = static_cast<std::int32_t>(rng() % V);
      const auto ids_d = sc2::test::to_device(ctx, ids);
      for (const auto dtype : {sc2::DType::f32, sc2::DType::bf16}) {
        const sc2::WeightMatrix host_t = dtype == sc2::DType::f32
                                             ? sc2::WeightMatrix{dtype, sc2::WeightLayout::row_major, table.data(), V, D, std::nullopt}
                                             : sc2::WeightMatrix{dtype, sc2::WeightLayout::row_major, table_bits.data(), V, D, std::nullopt};
        std::vector<float> want(static_cast<std::size_t>(T * D));
        sc2::ops::reference::embedding(sc2::MatrixView(want.data(), {T, D}), host_t, ids);
        const auto t_d = upload_matrix(ctx, host_t, dtype);
        sc2::Buffer<float, sc2::Device> out(static_cast<std::size_t>(T * D));
        sc2::ops::embedding(ctx, sc2::Matrix<float, sc2::Device>(out.data(), {T, D}), t_d.view, ids_d.view());
        CHECK(sc2::test::to_host(ctx, out) == want);
      }
      // Layer norm.
      auto x = random_floats(static_cast<std::size_t>(T * D), rng, 3.0f);
      for (auto& v : x) v += 1.5f;
      const auto w = random_floats(static_cast<std::size_t>(D), rng), b = random_floats(static_cast<std::size_t>(D), rng);
      std::vector<float> want(x.size());
      sc2::ops::reference::layer_norm(sc2::MatrixView(want.data(), {T, D}), sc2::ConstMatrixView(x.data(), {T, D}),
                                      std::span<const float>(w), std::span<const float>(b), 1e-5f);
      auto x_d = sc2::test::to_device(ctx, x);
      const auto w_d = sc2::test::to_device(ctx, w), b_d = sc2::test::to_device(ctx, b);
      sc2::Buffer<float, sc2::Device> y_d(x.size());
      sc2::ops::layer_norm(ctx, sc2::Matrix<float, sc2::Device>(y_d.data(), {T, D}),
                           sc2::Matrix<const float, sc2::Device>(x_d.data(), {T, D}), w_d.view(), b_d.view(), 1e-5f);
      auto got = sc2::test::to_host(ctx, y_d);
      CHECK(max_abs_diff(got.data(), want.data(), got.size()) <= 1e-5);
      // GELU (tanh).
      want = x;
      sc2::ops::reference::gelu_tanh(sc2::MatrixView(want.data(), {T, D}));
      sc2::ops::gelu_tanh(ctx, sc2::Matrix<float, sc2::Device>(x_d.data(), {T, D}));
      got = sc2::test::to_host(ctx, x_d);
      CHECK(max_abs_diff(got.data(), want.data(), got.size()) <= 1e-5);
      // Residual add, then gather two rows.
      const auto y = sc2::test::to_host(ctx, y_d);
      for (std::size_t i = 0; i < want.size(); ++i) want[i] = got[i] + y[i];
      sc2::ops::add(ctx, sc2::Matrix<float, sc2::Device>(x_d.data(), {T, D}),
                    sc2::Matrix<const float, sc2::Device>(y_d.data(), {T, D}));
      got = sc2::test::to_host(ctx, x_d);
      CHECK(got == want);
      const std::vector<std::int32_t> rows{static_cast<std::int32_t>(T - 1), 0};
      const auto rows_d = sc2::test::to_device(ctx, rows);
      sc2::Buffer<float, sc2::Device> g_d(static_cast<std::size_t>(2 * D));
      sc2::ops::gather_rows(ctx, sc2::Matrix<float, sc2::Device>(g_d.data(), {2, D}),
                            sc2::Matrix<const float, sc2::Device>(x_d.data(), {T, D}), rows_d.view());
      const auto gathered = sc2::test::to_host(ctx, g_d);
      CHECK(std::equal(gathered.begin(), gathered.begin() + D, got.begin() + (T - 1) * D));
      CHECK(std::equal(gathered.begin() + D, gathered.end(), got.begin()));
    }
  // RoPE over heads of 64, 96 and 128, at positions across a long context.
  for (const int Dh : {64, 96, 128}) {
    const std::int64_t T = 9, heads = 5;
    const sc2::ops::RotaryTable table(100000.0, Dh);
    auto x = random_floats(static_cast<std::size_t>(T * heads * Dh), rng);
    std::vector<std::int32_t> positions(static_cast<std::size_t>(T));
    for (std::size_t t = 0; t < positions.size(); ++t) positions[t] = static_cast<std::int32_t>(t * 1733 + 3);
    auto want = x;
    sc2::ops::reference::rope(sc2::TensorView<float, 3>(want.data(), {T, heads, Dh}), positions, table);
    auto x_d = sc2::test::to_device(ctx, x);
    const auto p_d = sc2::test::to_device(ctx, positions);
    sc2::ops::rope(ctx, sc2::TensorView<float, 3, sc2::Device>(x_d.data(), {T, heads, Dh}), p_d.view(), table);
    const auto got = sc2::test::to_host(ctx, x_d);
    INFO("Dh=" << Dh);
    CHECK(max_abs_diff(got.data(), want.data(), got.size()) <= 1e-5);
  }
}

namespace {

// Runs the same chunk schedule through the CPU backend and a CUDA backend over
// pools of equal shape (so the same pages), and compares every call's output.
// The CPU sees keys and values rounded as the CUDA pool keeps them.
template <class CudaBackend>
void check_attention_schedule(int Hkv, int group, int Dh, std::optional<std::int64_t> window, std::int64_t page,
                              const std::vector<std::vector<sc2::test::PagedChunk>>& steps, std::int64_t length,
                              std::mt19937& rng) {
  const int H = Hkv * group;
  const sc2::ops::AttentionShape shape{H, Hkv, Dh, 1.0f / std::sqrt(static_cast<float>(Dh))};
  const sc2::ops::SlidingWindowMask mask{window};
  const sc2::KvShape kv{1, Hkv, Dh, window, length};
  sc2::test::BasicPagedSequences<sc2::cpu::Backend> cpu(kv, page, 3, 64);
  sc2::test::BasicPagedSequences<CudaBackend> gpu(kv, page, 3, 64);
  for (int s = 0; s < 3; ++s) {
    cpu.add();
    gpu.add();
  }
  sc2::CpuContext cpu_ctx(2);
  for (const auto& step : steps) {
    std::int64_t T = 0;
    for (const auto& c : step) T += c.count;
    const auto q = random_floats(static_cast<std::size_t>(T * H * Dh), rng);
    auto k = random_floats(static_cast<std::size_t>(T * Hkv * Dh), rng);
    auto v = random_floats(static_cast<std::size_t>(T * Hkv * Dh), rng);
    if constexpr (std::is_same_v<typename CudaBackend::KvElement, sc2::bf16>) {
      k = sc2::test::bf16_rounded(k);
      v = sc2::test::bf16_rounded(v);
    }
    std::vector<float> want(q.size()), got(q.size());
    cpu.run(cpu_ctx, step, shape, mask, q.data(), k.data(), v.data(), want.data());
    gpu.run(*sc2::test::gpu(), step, shape, mask, q.data(), k.data(), v.data(), got.data());
    INFO("Hkv=" << Hkv << " group=" << group << " Dh=" << Dh << " W=" << window.value_or(-1) << " page=" << page
                << " rows=" << T);
    CHECK(max_abs_diff(got.data(), want.data(), got.size()) <= 2e-5);
  }
}

}  // namespace

TEST_CASE("CUDA paged attention equals the CPU's: GQA groups, head dims, windows, pages, ragged batches",
          "[cuda][attention]") {
  SC2_REQUIRE_GPU();
  std::mt19937 rng(7);
  // Three sequences: prefill chunks, then a mixed step, then decode rows, then more decode past the window.
  using C = sc2::test::PagedChunk;
  const std::vector<std::vector<C>> steps = {
      {{0, 0, 37}, {1, 0, 5}},
      {{0, 37, 1}, {1, 5, 40}, {2, 0, 3}},
      {{0, 38, 1}, {1, 45, 1}, {2, 3, 1}},
      {{2, 4, 60}},
      {{0, 39, 1}, {1, 46, 1}, {2, 64, 1}},
  };
  for (const int group : {1, 2, 3, 4, 8, 12})
    for (const int Dh : {64, 96, 128})
      for (const std::optional<std::int64_t> window : {std::optional<std::int64_t>{}, std::optional<std::int64_t>{17}})
        for (const std::int64_t page : {16, 7}) {
          check_attention_schedule<sc2::cuda::Backend>(2, group, Dh, window, page, steps, 128, rng);
          if (group == 4 && page == 7) check_attention_schedule<sc2::cuda::Float32Backend>(2, group, Dh, window, page, steps, 128, rng);
        }
}

TEST_CASE("CUDA decode attention splits a long window over blocks and combines it exactly", "[cuda][attention]") {
  SC2_REQUIRE_GPU();
  std::mt19937 rng(9);
  using C = sc2::test::PagedChunk;
  // 700 positions of prefill, then single rows at 700..703: a 512-key window split over many blocks.
  const std::vector<std::vector<C>> steps = {{{0, 0, 64}}, {{0, 64, 64}}, {{0, 128, 64}}, {{0, 192, 64}},
                                            {{0, 256, 64}}, {{0, 320, 64}}, {{0, 384, 64}}, {{0, 448, 64}},
                                            {{0, 512, 64}}, {{0, 576, 64}}, {{0, 640, 60}}, {{0, 700, 1}},
                                            {{0, 701, 1}},  {{0, 702, 1}},  {{0, 703, 1}}};
  for (const int group : {1, 12}) {
    check_attention_schedule<sc2::cuda::Backend>(2, group, 128, 512, 32, steps, 1024, rng);
    check_attention_schedule<sc2::cuda::Backend>(4, group, 64, std::nullopt, 16, steps, 1024, rng);
  }
}

TEST_CASE("CUDA sampling picks the CPU sampler's tokens, greedy and seeded", "[cuda][sampler]") {
  SC2_REQUIRE_GPU();
  auto& ctx = *sc2::test::gpu();
  sc2::CpuContext cpu_ctx(1);
  std::mt19937 rng(13);
  const std::int64_t R = 5, V = 1000;
  std::vector<sc2::SamplingConfig> configs(7);
  configs[1].repetition_penalty = 1.3f;
  configs[2].do_sample = true, configs[2].temperature = 0.7f;
  configs[3].do_sample = true, configs[3].top_k = 0, configs[3].top_p = 0.9f;
  configs[4].do_sample = true, configs[4].top_k = 0, configs[4].min_p = 0.05f;
  configs[5].do_sample = true, configs[5].temperature = 1.3f, configs[5].top_k = 40, configs[5].top_p = 0.8f,
  configs[5].min_p = 0.01f, configs[5].repetition_penalty = 1.2f;
  configs[6].do_sample = true, configs[6].top_k = 1;
  std::vector<std::int32_t> history(300);
  for (auto& id : history) id = static_cast<std::int32_t>(rng() % V);
  for (std::size_t c = 0; c < configs.size(); ++c) {
    std::vector<sc2::Sampler> on_cpu, on_gpu;
    for (std::int64_t r = 0; r < R; ++r) {
      configs[c].seed = 1000 * c + static_cast<std::uint64_t>(r);
      on_cpu.emplace_back(configs[c]);
      on_gpu.emplace_back(configs[c]);
    }
    for (int step = 0; step < 30; ++step) {
      const auto logits = random_floats(static_cast<std::size_t>(R * V), rng, 2.0f);
      std::vector<sc2::ops::SampleRow> cpu_rows, gpu_rows;
      for (std::int64_t r = 0; r < R; ++r) {
        const std::span<const std::int32_t> h(history.data(), static_cast<std::size_t>(50 * r + step));
        cpu_rows.push_back({&on_cpu[static_cast<std::size_t>(r)], h});
        gpu_rows.push_back({&on_gpu[static_cast<std::size_t>(r)], h});
      }
      std::vector<std::int32_t> want(R), got(R);
      sc2::ops::sample(cpu_ctx, sc2::Matrix<const float, sc2::Host>(logits.data(), {R, V}),
                       std::span<const sc2::ops::SampleRow>(cpu_rows), std::span<std::int32_t>(want));
      const auto logits_d = sc2::test::to_device(ctx, logits);
      sc2::ops::sample(ctx, sc2::Matrix<const float, sc2::Device>(logits_d.data(), {R, V}),
                       std::span<const sc2::ops::SampleRow>(gpu_rows), std::span<std::int32_t>(got));
      INFO("config " << c << " step " << step);
      CHECK(got == want);
    }
  }
}

namespace {

// Rotates q and k and appends k, v on the GPU in one op, and on the CPU as rope,
// rope, kv_append; compares q, k and every page of the pools (same page ids).
template <class CudaBackend>
void check_rope_kv_append(int H, int Hkv, int Dh, int rotary_dim, std::int64_t page, double tolerance, std::mt19937& rng) {
  auto& gpu = *sc2::test::gpu();
  sc2::CpuContext cpu(1);
  const sc2::KvShape shape{1, Hkv, Dh, std::nullopt, 256};
  sc2::KvPool<sc2::cpu::Backend> cpu_pool(shape, {.page_size = page, .pages = 64});
  sc2::KvPool<CudaBackend> gpu_pool(shape, {.page_size = page, .pages = 64});
  const auto a = cpu_pool.add(), b = cpu_pool.add();
  REQUIRE(gpu_pool.add() == a);
  REQUIRE(gpu_pool.add() == b);
  // Two chunks in one batch: a at 0..20, b at 0..2 after 9 earlier positions skipped.
  cpu_pool.prepare(cpu, b, 9);
  cpu_pool.advance(b, 9);
  gpu_pool.prepare(gpu, b, 9);
  gpu_pool.advance(b, 9);
  const std::int64_t Ta = 21, Tb = 3, T = Ta + Tb;
  cpu_pool.prepare(cpu, a, Ta), cpu_pool.prepare(cpu, b, Tb);
  gpu_pool.prepare(gpu, a, Ta), gpu_pool.prepare(gpu, b, Tb);
  std::vector<std::int32_t> positions, row_entry, table;
  std::vector<sc2::ops::BatchEntry> entries;
  for (const auto& [seq, start, n] : {std::tuple{a, std::int64_t{0}, Ta}, std::tuple{b, std::int64_t{9}, Tb}}) {
    const std::int64_t first_page = 0, pages = (start + n - 1) / page + 1;
    const auto offset = static_cast<std::int32_t>(table.size());
    table.resize(table.size() + static_cast<std::size_t>(pages));
    cpu_pool.page_table(seq, first_page, pages, table.data() + offset);
    entries.push_back({static_cast<std::int32_t>(positions.size()), static_cast<std::int32_t>(n),
                       static_cast<std::int32_t>(start), 0, offset, 0, static_cast<std::int32_t>(pages)});
    for (std::int64_t t = 0; t < n; ++t) {
      positions.push_back(static_cast<std::int32_t>(start + t));
      row_entry.push_back(static_cast<std::int32_t>(entries.size() - 1));
    }
  }
  std::vector<std::int32_t> gpu_table(table.size());
  gpu_pool.page_table(a, 0, entries[0].pages, gpu_table.data());
  gpu_pool.page_table(b, 0, entries[1].pages, gpu_table.data() + entries[1].page_offset);
  REQUIRE(gpu_table == table);
  const sc2::ops::RotaryTable rotary(10000.0, rotary_dim);
  auto q = random_floats(static_cast<std::size_t>(T * H * Dh), rng), k = random_floats(static_cast<std::size_t>(T * Hkv * Dh), rng);
  const auto v = random_floats(static_cast<std::size_t>(T * Hkv * Dh), rng);
  auto q_d = sc2::test::to_device(gpu, q), k_d = sc2::test::to_device(gpu, k);
  const auto v_d = sc2::test::to_device(gpu, v);
  const auto p_d = sc2::test::to_device(gpu, positions), r_d = sc2::test::to_device(gpu, row_entry);
  const auto e_d = sc2::test::to_device(gpu, entries);
  const auto t_d = sc2::test::to_device(gpu, table);
  const sc2::ops::BatchView<sc2::Device> plan{p_d.view(), r_d.view(), e_d.view(), t_d.view(), page};
  sc2::ops::rope_kv_append(gpu, gpu_pool.layer(0), sc2::TensorView<float, 3, sc2::Device>(q_d.data(), {T, H, Dh}),
                           sc2::TensorView<float, 3, sc2::Device>(k_d.data(), {T, Hkv, Dh}),
                           sc2::Matrix<const float, sc2::Device>(v_d.data(), {T, Hkv * Dh}), plan, rotary);
  const sc2::ops::BatchView<sc2::Host> host_plan{std::span<const std::int32_t>(positions),
                                                 std::span<const std::int32_t>(row_entry),
                                                 std::span<const sc2::ops::BatchEntry>(entries),
                                                 std::span<const std::int32_t>(table), page};
  sc2::ops::rope(cpu, sc2::TensorView<float, 3>(q.data(), {T, H, Dh}), host_plan.positions, rotary);
  sc2::ops::rope(cpu, sc2::TensorView<float, 3>(k.data(), {T, Hkv, Dh}), host_plan.positions, rotary);
  sc2::ops::kv_append(cpu, cpu_pool.layer(0), sc2::ConstMatrixView(k.data(), {T, Hkv * Dh}),
                      sc2::ConstMatrixView(v.data(), {T, Hkv * Dh}), host_plan);
  INFO("H=" << H << " Hkv=" << Hkv << " Dh=" << Dh << " R=" << rotary_dim << " page=" << page);
  const auto q_got = sc2::test::to_host(gpu, q_d), k_got = sc2::test::to_host(gpu, k_d);
  CHECK(max_abs_diff(q_got.data(), q.data(), q.size()) <= 1e-6);
  CHECK(max_abs_diff(k_got.data(), k.data(), k.size()) <= 1e-6);
  // Every slot the batch wrote, keys and values, read back from the GPU pool.
  const auto cpu_layer = cpu_pool.layer(0);
  const auto gpu_layer = gpu_pool.layer(0);
  using Kv = typename CudaBackend::KvElement;
  const std::int64_t n = cpu_layer.pages * cpu_layer.page_elements();
  std::vector<Kv> keys(static_cast<std::size_t>(n)), values(static_cast<std::size_t>(n));
  sc2::ops::copy(gpu, sc2::Vector<Kv, sc2::Host>(keys.data(), {n}), sc2::Vector<const Kv, sc2::Device>(gpu_layer.keys, {n}));
  sc2::ops::copy(gpu, sc2::Vector<Kv, sc2::Host>(values.data(), {n}), sc2::Vector<const Kv, sc2::Device>(gpu_layer.values, {n}));
  double worst = 0.0;
  for (std::int64_t t = 0; t < T; ++t) {
    const auto& e = entries[static_cast<std::size_t>(row_entry[static_cast<std::size_t>(t)])];
    const std::int32_t pg = sc2::ops::page_of(e, table.data(), page, positions[static_cast<std::size_t>(t)]);
    for (int g = 0; g < Hkv; ++g)
      for (int d = 0; d < Dh; ++d) {
        const std::int64_t at = cpu_layer.offset(pg, g, positions[static_cast<std::size_t>(t)] % page) + d;
        worst = std::max(worst, std::fabs(static_cast<double>(sc2::to_float(keys[static_cast<std::size_t>(at)])) - cpu_layer.keys[at]));
        worst = std::max(worst, std::fabs(static_cast<double>(sc2::to_float(values[static_cast<std::size_t>(at)])) - cpu_layer.values[at]));
      }
  }
  CHECK(worst <= tolerance);
}

}  // namespace

TEST_CASE("CUDA rope fused with the KV append writes what rope, rope and kv_append write", "[cuda][attention]") {
  SC2_REQUIRE_GPU();
  std::mt19937 rng(17);
  for (const auto& [H, Hkv, Dh, R] : {std::tuple{4, 2, 64, 64}, std::tuple{24, 2, 128, 128}, std::tuple{12, 4, 96, 64}})
    for (const std::int64_t page : {4, 7, 16}) {
      check_rope_kv_append<sc2::cuda::Float32Backend>(H, Hkv, Dh, R, page, 1e-6, rng);
      // bf16 pages: one rounding to nearest of values below 8 in magnitude, at most 2^-6 off.
      check_rope_kv_append<sc2::cuda::Backend>(H, Hkv, Dh, R, page, std::ldexp(1.0, -6), rng);
    }
}
