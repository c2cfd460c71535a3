// Every CPU op against its plain reference implementation, over a grid of shapes,
// on every instruction-set path this machine supports.

#include "linear_check.hpp"
#include "support.hpp"

#include "paged_plan.hpp"

#include <sc2/backends/cpu.hpp>

#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>

namespace {

using sc2::test::max_abs_diff;
using sc2::test::random_floats;

// A weight matrix of `rows` × `cols` in dtype `dtype`, with its storage.
struct Weights {
  std::vector<std::uint16_t> half;
  std::vector<float> full;
  sc2::WeightMatrix matrix;
};

Weights random_weights(sc2::DType dtype, std::int64_t rows, std::int64_t cols, std::mt19937& rng) {
  Weights w;
  w.full = random_floats(static_cast<std::size_t>(rows * cols), rng, 0.5f);
  if (dtype == sc2::DType::f32) {
    w.matrix = {dtype, sc2::WeightLayout::row_major, w.full.data(), rows, cols, std::nullopt};
    return w;
  }
  w.half.resize(w.full.size());
  for (std::size_t i = 0; i < w.full.size(); ++i)
    w.half[i] = dtype == sc2::DType::bf16 ? sc2::bf16::round(w.full[i]).bits : sc2::f16::round(w.full[i]).bits;
  w.matrix = {dtype, sc2::WeightLayout::row_major, w.half.data(), rows, cols, std::nullopt};
  return w;
}

}  // namespace

TEST_CASE("linear matches the reference for every dtype, shape and path", "[ops][linear]") {
  std::mt19937 rng(1);
  for (const auto isa : sc2::test::supported_isas()) {
    sc2::CpuContext ctx(2);
    ctx.set_isa(isa);
    for (const auto dtype : {sc2::DType::f32, sc2::DType::bf16, sc2::DType::f16}) {
      // Tokens cover every tail of the 6-token tile, read directly (decode, T <= 24) and through
      // the widened blocks (prefill, 25 and 40); rows cover the 16-row panel tails, the 32- and
      // 64-row AVX-512 tiles and the 128-row block; K covers the 256-step K blocks and their tails.
      for (const std::int64_t T : {1, 2, 3, 4, 5, 6, 7, 9, 13, 25, 40}) {
        for (const std::int64_t N : {1, 2, 5, 16, 50, 161}) {
          for (const std::int64_t K : {3, 8, 17, 64, 260, 520, 1030}) {
            Weights w = random_weights(dtype, N, K, rng);
            const sc2::OwnedWeight<sc2::Host> packed = sc2::cpu::pack_weight(ctx, w.matrix, dtype);
            const auto x = random_floats(static_cast<std::size_t>(T * K), rng);
            const auto bias = random_floats(static_cast<std::size_t>(N), rng);
            std::vector<float> got(static_cast<std::size_t>(T * N)), want(got.size());
            sc2::ConstMatrixView in(x.data(), {T, K});
            for (bool with_bias : {false, true}) {
              std::span<const float> b = with_bias ? std::span<const float>(bias) : std::span<const float>();
              sc2::ops::linear(ctx, sc2::MatrixView(got.data(), {T, N}), in, packed.view, b);
              sc2::ops::reference::linear(sc2::MatrixView(want.data(), {T, N}), in, w.matrix, b);
              INFO(sc2::cpu::isa_name(isa) << " " << sc2::dtype_name(dtype) << " T=" << T << " N=" << N << " K=" << K);
              // Float accumulation of K products of magnitude ~0.5: error grows like sqrt(K) ulps.
              CHECK(max_abs_diff(got.data(), want.data(), got.size()) <= 1e-5 * std::sqrt(static_cast<double>(K)) * 4);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("a row of linear's output has the same bits whatever the other rows", "[ops][linear][invariance]") {
  // The property batching rests on: row t of in · Wᵀ does not depend on T or on t.
  std::mt19937 rng(5);
  for (const auto isa : sc2::test::supported_isas()) {
    sc2::CpuContext ctx(2);
    ctx.set_isa(isa);
    for (const auto dtype : {sc2::DType::f32, sc2::DType::bf16, sc2::DType::f16}) {
      // T = 40 runs the prefill kernels (widened blocks, 6 × 4 tiles on AVX-512); parts of
      // up to 24 rows run the decode ones: a row gets the same bits from both.
      const std::int64_t N = 150, K = 600, T = 40;
      Weights w = random_weights(dtype, N, K, rng);
      const auto packed = sc2::cpu::pack_weight(ctx, w.matrix, dtype);
      const auto x = random_floats(static_cast<std::size_t>(T * K), rng);
      const auto bias = random_floats(static_cast<std::size_t>(N), rng);
      std::vector<float> all(static_cast<std::size_t>(T * N));
      sc2::ops::linear(ctx, sc2::MatrixView(all.data(), {T, N}), sc2::ConstMatrixView(x.data(), {T, K}), packed.view,
                       std::span<const float>(bias));
      for (const std::int64_t rows : {1, 2, 5, 6, 7, 12, 25, 31}) {
        for (std::int64_t first = 0; first + rows <= T; first += 7) {
          std::vector<float> part(static_cast<std::size_t>(rows * N));
          sc2::ops::linear(ctx, sc2::MatrixView(part.data(), {rows, N}),
                           sc2::ConstMatrixView(x.data() + first * K, {rows, K}), packed.view,
                           std::span<const float>(bias));
          INFO(sc2::cpu::isa_name(isa) << " " << sc2::dtype_name(dtype) << " rows " << first << ".." << first + rows);
          CHECK(std::memcmp(part.data(), all.data() + first * N, part.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("packed weights hold every element where the layout says", "[ops][linear]") {
  std::mt19937 rng(9);
  sc2::CpuContext ctx(2);
  for (const auto dtype : {sc2::DType::f32, sc2::DType::bf16, sc2::DType::f16}) {
    Weights w = random_weights(dtype, 37, 21, rng);
    for (const auto to : {sc2::DType::f32, sc2::DType::bf16, sc2::DType::f16}) {
      const auto packed = sc2::cpu::pack_weight(ctx, w.matrix, to);
      CHECK(packed.view.stored_rows() == 48);
      for (std::int64_t r = 0; r < 37; ++r)
        for (std::int64_t c = 0; c < 21; ++c) {
          const float v = w.matrix.at(r, c);
          const float want = to == sc2::DType::f32 ? v : to == sc2::DType::bf16 ? sc2::bf16::round(v).to_float()
                                                                                  : sc2::f16::round(v).to_float();
          CHECK(packed.view.at(r, c) == want);
        }
    }
  }
}

TEST_CASE("the opt-in AVX-512 BF16 prefill matches the reference on bf16 activations", "[ops][linear]") {
  if (!sc2::cpu::isa_supported(sc2::cpu::Isa::avx512_bf16))
    SC2_SKIP_TEST("this processor has no AVX-512 BF16: the path runs only under emulation (sc2-avx512-emulated-tests)");
  sc2::test::check_linear_panel_range(sc2::cpu::Isa::avx512_bf16);
}

TEST_CASE("the AMX linear kernels match the reference, split exactly and rounded to bf16", "[ops][linear][amx]") {
  for (const sc2::cpu::Isa isa : {sc2::cpu::Isa::amx, sc2::cpu::Isa::amx_bf16}) {
    if (!sc2::cpu::isa_supported(isa)) SC2_SKIP_TEST("this processor (or its OS) gives no AMX-BF16 tiles");
    sc2::test::check_linear_panel_range(isa);
  }
}

TEST_CASE("linear rejects mismatched shapes", "[ops][linear]") {
  sc2::CpuContext ctx(1);
  std::vector<float> x(6), w(6), out(4);
  sc2::WeightMatrix m{sc2::DType::f32, sc2::WeightLayout::row_major, w.data(), 2, 3, std::nullopt};
  const auto packed = sc2::cpu::pack_weight(ctx, m, sc2::DType::f32);
  CHECK_THROWS_WITH(sc2::ops::linear(ctx, sc2::MatrixView(out.data(), {2, 2}), sc2::ConstMatrixView(x.data(), {3, 2}),
                                     packed.view),
                    Catch::Contains("does not fit"));
  CHECK_THROWS_WITH(sc2::ops::linear(ctx, sc2::MatrixView(out.data(), {2, 2}), sc2::ConstMatrixView(x.data(), {2, 3}), m),
                    Catch::Contains("packed into panels"));
}

#if SC2_HAVE_X86_SIMD
namespace {
/// out[0..8) = exp8(z[0..8)).
SC2_TARGET_AVX2 void exp8_into(const float* z, float* out) {
  _mm256_storeu_ps(out, sc2::cpu::detail::exp8(_mm256_loadu_ps(z)));
}
}  // namespace

TEST_CASE("the AVX2 exponential is within 2 ulp of exp over its range and keeps NaN", "[ops][gelu]") {
  if (!sc2::cpu::isa_supported(sc2::cpu::Isa::avx2))
    SC2_SKIP_TEST("this processor has no AVX2: the AVX2 exponential is not checked");
  std::vector<float> z;
  for (int i = -87000; i <= 88000; i += 7) z.push_back(static_cast<float>(i) * 1e-3f);
  z.insert(z.end(), {0.0f, -0.0f, 1e-20f, -1e-20f, std::numeric_limits<float>::quiet_NaN()});
  while (z.size() % 8 != 0) z.push_back(1.0f);
  std::vector<float> got(z.size());
  for (std::size_t i = 0; i < z.size(); i += 8) exp8_into(z.data() + i, got.data() + i);
  for (std::size_t i = 0; i < z.size(); ++i) {
    INFO("z=" << z[i] << " got=" << got[i]);
    if (std::isnan(z[i])) {
      CHECK(std::isnan(got[i]));
      continue;
    }
    const double want = std::exp(static_cast<double>(z[i]));
    CHECK(std::abs(got[i] - want) <= 2 * std::numeric_limits<float>::epsilon() * want);
  }
}
#endif

TEST_CASE("gelu is accurate over the whole float range on every path", "[ops][gelu]") {
  std::vector<float> x;
  for (int i = -4000; i <= 4000; ++i) x.push_back(static_cast<float>(i) * 0.01f);  // the curved part, densely
  for (float v = 1e-30f; v < 1e30f; v *= 3.7f) x.insert(x.end(), {v, -v});          // tiny to huge, both signs
  x.insert(x.end(), {0.0f, -0.0f, 88.0f, -88.0f, std::numeric_limits<float>::infinity(),
                     std::numeric_limits<float>::denorm_min()});
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const auto isa : sc2::test::supported_isas()) {
    sc2::CpuContext ctx(2);
    ctx.set_isa(isa);
    std::vector<float> got = x;
    sc2::ops::gelu_tanh(ctx, sc2::MatrixView(got.data(), {1, static_cast<std::int64_t>(got.size())}));
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      const double want = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
      INFO(sc2::cpu::isa_name(isa) << " x=" << x[i] << " got=" << got[i] << " want=" << want);
      // A few ulp of the result, plus the float rounding of 1 + tanh(u) (at most ulp(1) · |x| / 2),
      // which torch's own float evaluation also carries.
      const double eps = std::numeric_limits<float>::epsilon();
      if (std::isinf(want)) CHECK(got[i] == static_cast<float>(want));
      else CHECK(std::abs(got[i] - want) <= 8 * eps * std::abs(want) + eps * std::abs(v) + 1e-30);
    }
    // NaN stays NaN; -inf gives NaN as torch's 0.5 · x · (1 + tanh(u)) = -inf · 0 does.
    std::vector<float> special{nan, -inf};
    sc2::ops::gelu_tanh(ctx, sc2::MatrixView(special.data(), {1, 2}));
    CHECK(std::isnan(special[0]));
    CHECK(std::isnan(special[1]));
  }
}

TEST_CASE("embedding, layer norm, gelu, rope and add match their references", "[ops]") {
  std::mt19937 rng(2);
  for (const auto isa : sc2::test::supported_isas()) {
    sc2::CpuContext ctx(2);
    ctx.set_isa(isa);
    for (const std::int64_t T : {1, 3, 200}) {
      for (const std::int64_t D : {8, 64, 130}) {
        INFO(sc2::cpu::isa_name(isa) << " T=" << T << " D=" << D);
        const auto x = random_floats(static_cast<std::size_t>(T * D), rng, 3.0f);
        std::vector<float> got(x.size()), want(x.size());
        sc2::ConstMatrixView in(x.data(), {T, D});

        const auto w = random_floats(static_cast<std::size_t>(D), rng), b = random_floats(static_cast<std::size_t>(D), rng);
        sc2::ops::layer_norm(ctx, sc2::MatrixView(got.data(), {T, D}), in, std::span(w), std::span(b), 1e-5f);
        sc2::ops::reference::layer_norm(sc2::MatrixView(want.data(), {T, D}), in, std::span(w), std::span(b), 1e-5f);
        CHECK(max_abs_diff(got.data(), want.data(), got.size()) <= 1e-5);

        got = x, want = x;
        sc2::ops::gelu_tanh(ctx, sc2::MatrixView(got.data(), {T, D}));
        sc2::ops::reference::gelu_tanh(sc2::MatrixView(want.data(), {T, D}));
        CHECK(max_abs_diff(got.data(), want.data(), got.size()) <= 1e-5);

        got = x, want = x;
        const auto y = random_floats(x.size(), rng);
        sc2::ops::add(ctx, sc2::MatrixView(got.data(), {T, D}), sc2::ConstMatrixView(y.data(), {T, D}));
        for (std::size_t i = 0; i < want.size(); ++i) want[i] += y[i];
        CHECK(max_abs_diff(got.data(), want.data(), got.size()) == 0.0);

        for (const auto dtype : {sc2::DType::f32, sc2::DType::bf16, sc2::DType::f16}) {
          Weights table = random_weights(dtype, 50, D, rng);
          std::vector<std::int32_t> ids(static_cast<std::size_t>(T));
          for (auto& id : ids) id = static_cast<std::int32_t>(rng() % 50);
          sc2::ops::embedding(ctx, sc2::MatrixView(got.data(), {T, D}), table.matrix, std::span<const std::int32_t>(ids));
          sc2::ops::reference::embedding(sc2::MatrixView(want.data(), {T, D}), table.matrix, ids);
          CHECK(max_abs_diff(got.data(), want.data(), got.size()) == 0.0);
          const auto packed = sc2::cpu::pack_weight(ctx, table.matrix, dtype);  // the tied lm_head layout
          std::fill(got.begin(), got.end(), 0.0f);
          sc2::ops::embedding(ctx, sc2::MatrixView(got.data(), {T, D}), packed.view, std::span<const std::int32_t>(ids));
          CHECK(max_abs_diff(got.data(), want.data(), got.size()) == 0.0);
        }
      }
      for (const int Dh : {8, 16, 128}) {
        for (const int rotary : {Dh, Dh / 2}) {
          const int heads = 3;
          const auto x = random_floats(static_cast<std::size_t>(T * heads * Dh), rng);
          std::vector<float> got = x, want = x;
          std::vector<std::int32_t> positions(static_cast<std::size_t>(T));
          for (auto& p : positions) p = static_cast<std::int32_t>(rng() % 20000);
          const sc2::ops::RotaryTable table(999999.4420358813, rotary);
          sc2::ops::rope(ctx, sc2::TensorView<float, 3>(got.data(), {T, heads, Dh}), std::span<const std::int32_t>(positions),
                         table);
          sc2::ops::reference::rope(sc2::TensorView<float, 3>(want.data(), {T, heads, Dh}), positions, table);
          CHECK(max_abs_diff(got.data(), want.data(), got.size()) <= 1e-6);
          if (rotary < Dh)  // dimensions past the rotary ones pass through
            for (std::int64_t t = 0; t < T; ++t)
              for (int d = rotary; d < Dh; ++d) CHECK(got[static_cast<std::size_t>((t * heads) * Dh + d)] == x[static_cast<std::size_t>((t * heads) * Dh + d)]);
        }
      }
    }
  }
}

TEST_CASE("rope frequencies round theta to float as transformers does", "[ops][rope]") {
  // transformers: inv_freq = 1 / (theta ** (arange(0, R, 2).float() / R)) with float32 tensors.
  const sc2::ops::RotaryTable table(999999.4420358813, 128);
  const float base = 999999.4375f;  // the float nearest the 3B's theta
  CHECK(static_cast<float>(999999.4420358813) == base);
  CHECK(table.inv_freq()[0] == 1.0f);
  CHECK(table.inv_freq()[1] == 1.0f / std::pow(base, 2.0f / 128.0f));
  const sc2::ops::RotaryTable truncated(1000000.0, 128);
  CHECK(table.inv_freq()[63] != truncated.inv_freq()[63]);
}

TEST_CASE("embedding rejects ids outside the vocabulary", "[ops]") {
  sc2::CpuContext ctx(1);
  std::vector<float> table(20), out(8);
  sc2::WeightMatrix m{sc2::DType::f32, sc2::WeightLayout::row_major, table.data(), 5, 4, std::nullopt};
  const std::vector<std::int32_t> ids{1, 5};
  CHECK_THROWS_WITH(sc2::ops::embedding(ctx, sc2::MatrixView(out.data(), {2, 4}), m, std::span<const std::int32_t>(ids)),
                    Catch::Contains("token id 5 at position 1 is outside the vocabulary [0, 5)"));
}

namespace {

/// One way to run the attention: a context (threads and SIMD path), a chunk size and a page size.
struct AttentionRun {
  sc2::CpuContext* ctx;
  std::int64_t chunk;
  std::int64_t page_size;
};

// Runs a sequence of P tokens through paged attention in chunks, once per
// run, and compares the outputs (P, H·Dh) with reference attention over the
// whole history; every run must also give the first run's bits on the same path.
void check_attention_in_chunks(std::int64_t P, int H, int Hkv, int Dh, std::optional<std::int64_t> window,
                               const std::vector<AttentionRun>& runs, std::mt19937& rng) {
  const sc2::ops::AttentionShape shape{H, Hkv, Dh, 1.0f / std::sqrt(static_cast<float>(Dh))};
  const sc2::ops::SlidingWindowMask mask{window};
  const auto q = random_floats(static_cast<std::size_t>(P * H * Dh), rng);
  const auto k = random_floats(static_cast<std::size_t>(P * Hkv * Dh), rng);
  const auto v = random_floats(static_cast<std::size_t>(P * Hkv * Dh), rng);
  const auto reference = [&](const std::vector<float>& qs, const std::vector<float>& ks, const std::vector<float>& vs) {
    std::vector<float> want(qs.size());
    sc2::ops::reference::attention(sc2::MatrixView(want.data(), {P, H * Dh}), sc2::ConstMatrixView(qs.data(), {P, H * Dh}),
                                   sc2::ConstMatrixView(ks.data(), {P, Hkv * Dh}),
                                   sc2::ConstMatrixView(vs.data(), {P, Hkv * Dh}), 0, shape, mask);
    return want;
  };
  const auto want = reference(q, k, v);
  // The amx_bf16 path multiplies bf16(q)·bf16(k) and bf16(e)·bf16(v): against attention
  // over the rounded q, k and v, only the rounding of e (2^-9 relative, weights summing
  // to 1) is left, so each output is within 2^-9 · max|v| (plus float sums).
  const auto rounded = [](std::vector<float> x) {
    for (float& f : x) f = sc2::bf16::round(f).to_float();
    return x;
  };
  const auto want_bf16 = reference(rounded(q), rounded(k), rounded(v));
  float max_v = 0.0f;
  for (const float x : v) max_v = std::max(max_v, std::abs(x));
  std::map<sc2::cpu::Isa, std::vector<float>> first_bits;
  for (const auto& [ctx, chunk, page_size] : runs) {
    sc2::test::PagedSequences seqs({1, Hkv, Dh, window, P}, page_size, 1, chunk);
    const auto seq = seqs.add();
    std::vector<float> got(q.size());
    for (std::int64_t s = 0; s < P; s += chunk) {
      const std::int64_t n = std::min(chunk, P - s);
      seqs.run(*ctx, {{seq, s, n}}, shape, mask, q.data() + s * H * Dh, k.data() + s * Hkv * Dh,
               v.data() + s * Hkv * Dh, got.data() + s * H * Dh);
    }
    INFO(sc2::cpu::isa_name(ctx->isa()) << " threads=" << ctx->threads() << " P=" << P << " H=" << H << " Hkv=" << Hkv
                                        << " Dh=" << Dh << " W=" << (window ? *window : -1) << " chunk=" << chunk
                                        << " page=" << page_size);
    if (ctx->isa() == sc2::cpu::Isa::amx_bf16)
      CHECK(max_abs_diff(got.data(), want_bf16.data(), got.size()) <= std::ldexp(max_v, -9) + 1e-5);
    else CHECK(max_abs_diff(got.data(), want.data(), got.size()) <= 2e-6);
    auto [it, fresh] = first_bits.try_emplace(ctx->isa(), got);
    if (!fresh) CHECK(std::memcmp(it->second.data(), got.data(), got.size() * sizeof(float)) == 0);
  }
}

/// A context with `threads` threads for every SIMD path this processor supports, bf16 ones included.
std::vector<std::unique_ptr<sc2::CpuContext>> contexts_for_every_path(int threads) {
  std::vector<std::unique_ptr<sc2::CpuContext>> out;
  for (const auto isa : sc2::test::all_supported_isas()) {
    out.push_back(std::make_unique<sc2::CpuContext>(threads));
    out.back()->set_isa(isa);
  }
  return out;
}

}  // namespace

TEST_CASE("paged attention equals full attention for any chunking and page size, to the bit", "[ops][attention]") {
  std::mt19937 rng(3);
  std::vector<AttentionRun> runs;
  const auto contexts = contexts_for_every_path(2);
  for (const auto& ctx : contexts)
    for (const std::int64_t chunk : {1, 3, 5, 16, 40})
      for (const std::int64_t page : {1, 4, 7, 32}) runs.push_back({ctx.get(), chunk, page});
  for (const auto& [H, Hkv] : {std::pair{2, 2}, std::pair{4, 2}, std::pair{8, 2}, std::pair{4, 1}})
    for (const int Dh : {8, 12, 64})
      for (const std::optional<std::int64_t> window : {std::optional<std::int64_t>{}, std::optional<std::int64_t>{1},
                                                       std::optional<std::int64_t>{5}, std::optional<std::int64_t>{16}})
        check_attention_in_chunks(40, H, Hkv, Dh, window, runs, rng);
}

TEST_CASE("paged attention at model shapes: key blocks, head and dimension tails, split heads", "[ops][attention]") {
  // 300 positions cross the kernels' 128-key blocks and a 264-position window; G ∈ {12, 5, 1}
  // and Dh ∈ {40, 128} give full and partial head and dimension tiles; with 5 threads and
  // one kv head, decode (chunks of 1) splits its 12 query heads into two groups of 6.
  std::mt19937 rng(11);
  std::vector<AttentionRun> runs;
  const auto two = contexts_for_every_path(2), five = contexts_for_every_path(5);
  for (const auto& ctx : two)
    for (const std::int64_t chunk : {300, 97, 1}) runs.push_back({ctx.get(), chunk, chunk == 97 ? 16 : 32});
  for (const auto& ctx : five) runs.push_back({ctx.get(), 1, 64});
  for (const auto& [H, Hkv] : {std::pair{12, 1}, std::pair{10, 2}, std::pair{3, 3}})
    for (const int Dh : {40, 128})
      for (const std::optional<std::int64_t> window : {std::optional<std::int64_t>{}, std::optional<std::int64_t>{264}})
        check_attention_in_chunks(300, H, Hkv, Dh, window, runs, rng);
}

TEST_CASE("sequences of a batch attend only to their own pages, each with its own bits", "[ops][attention][invariance]") {
  // Three sequences of different lengths and windows past them, run alone in chunks and
  // then together (a decode row beside prefill chunks): every output row is the same bits.
  std::mt19937 rng(17);
  const int H = 6, Hkv = 2, Dh = 16;
  const sc2::ops::AttentionShape shape{H, Hkv, Dh, 0.25f};
  const sc2::ops::SlidingWindowMask mask{std::int64_t{9}};
  const std::int64_t lengths[] = {23, 5, 14};
  std::vector<std::vector<float>> q, k, v, alone;
  for (const std::int64_t n : lengths) {
    q.push_back(random_floats(static_cast<std::size_t>(n * H * Dh), rng));
    k.push_back(random_floats(static_cast<std::size_t>(n * Hkv * Dh), rng));
    v.push_back(random_floats(static_cast<std::size_t>(n * Hkv * Dh), rng));
  }
  for (const auto& ctx : contexts_for_every_path(2)) {
    for (std::size_t i = 0; i < 3; ++i) {
      sc2::test::PagedSequences one({1, Hkv, Dh, 9, 64}, 4, 1, 64);
      const auto s = one.add();
      alone.emplace_back(q[i].size());
      for (std::int64_t t = 0; t < lengths[i]; ++t)
        one.run(*ctx, {{s, t, 1}}, shape, mask, q[i].data() + t * H * Dh, k[i].data() + t * Hkv * Dh,
                v[i].data() + t * Hkv * Dh, alone.back().data() + t * H * Dh);
    }
    // Together: sequence 0 in chunks of 7, sequence 1 one token at a time, sequence 2 in two halves.
    sc2::test::PagedSequences all({1, Hkv, Dh, 9, 64}, 4, 3, 64);
    const sc2::SequenceId ids[] = {all.add(), all.add(), all.add()};
    std::vector<std::vector<float>> got;
    for (std::size_t i = 0; i < 3; ++i) got.emplace_back(q[i].size());
    std::int64_t done[3] = {0, 0, 0};
    const std::int64_t step[3] = {7, 1, 7};
    while (done[0] < lengths[0] || done[1] < lengths[1] || done[2] < lengths[2]) {
      std::vector<sc2::test::PagedChunk> chunks;
      std::vector<float> qb, kb, vb;
      for (std::size_t i = 0; i < 3; ++i) {
        const std::int64_t n = std::min(step[i], lengths[i] - done[i]);
        if (n <= 0) continue;
        chunks.push_back({ids[i], done[i], n});
        qb.insert(qb.end(), q[i].begin() + done[i] * H * Dh, q[i].begin() + (done[i] + n) * H * Dh);
        kb.insert(kb.end(), k[i].begin() + done[i] * Hkv * Dh, k[i].begin() + (done[i] + n) * Hkv * Dh);
        vb.insert(vb.end(), v[i].begin() + done[i] * Hkv * Dh, v[i].begin() + (done[i] + n) * Hkv * Dh);
      }
      std::vector<float> out(qb.size());
      all.run(*ctx, chunks, shape, mask, qb.data(), kb.data(), vb.data(), out.data());
      std::int64_t row = 0;
      for (const auto& c : chunks) {
        const std::size_t i = static_cast<std::size_t>(c.sequence);
        std::copy(out.begin() + row * H * Dh, out.begin() + (row + c.count) * H * Dh, got[i].begin() + done[i] * H * Dh);
        done[i] += c.count;
        row += c.count;
      }
    }
    for (std::size_t i = 0; i < 3; ++i) {
      INFO(sc2::cpu::isa_name(ctx->isa()) << " sequence " << i);
      CHECK(std::memcmp(got[i].data(), alone[alone.size() - 3 + i].data(), got[i].size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("the window boundary: i - j = W - 1 is visible, i - j = W is not", "[ops][attention]") {
  // One head, Dh = 1, W = 4. Every key is 0 so all visible keys get equal weight; values
  // are 1 at exactly one position j0 and 0 elsewhere. The output of query i is then
  // 1 / (#visible keys) if j0 is visible and 0 if it is not.
  sc2::CpuContext ctx(1);
  const std::int64_t W = 4, P = 12;
  const sc2::ops::AttentionShape shape{1, 1, 1, 1.0f};
  const sc2::ops::SlidingWindowMask mask{W};
  for (const std::int64_t chunk : {std::int64_t{1}, std::int64_t{3}, P}) {
    for (const std::int64_t page : {std::int64_t{1}, std::int64_t{2}, std::int64_t{4}, std::int64_t{5}}) {
      for (std::int64_t j0 = 0; j0 < P; ++j0) {
        std::vector<float> q(P, 1.0f), k(P, 0.0f), v(P, 0.0f), out(P, -1.0f);
        v[static_cast<std::size_t>(j0)] = 1.0f;
        sc2::test::PagedSequences seqs({1, 1, 1, W, P}, page, 1, P);
        const auto s = seqs.add();
        for (std::int64_t start = 0; start < P; start += chunk) {
          const std::int64_t n = std::min(chunk, P - start);
          seqs.run(ctx, {{s, start, n}}, shape, mask, q.data() + start, k.data() + start, v.data() + start,
                   out.data() + start);
        }
        for (std::int64_t i = 0; i < P; ++i) {
          const std::int64_t visible = std::min(i + 1, W);
          const bool sees_j0 = i - j0 >= 0 && i - j0 < W;
          INFO("chunk " << chunk << " page " << page << " query " << i << " key " << j0);
          CHECK(out[static_cast<std::size_t>(i)] == Approx(sees_j0 ? 1.0 / static_cast<double>(visible) : 0.0).margin(1e-7));
        }
      }
    }
  }
  // The mask itself, at the boundary.
  CHECK(mask.first_visible(10) == 7);  // keys 7, 8, 9, 10: i - j = 3 = W - 1 is the last visible
  CHECK(sc2::ops::SlidingWindowMask{std::nullopt}.first_visible(10) == 0);
}
