// sc2-linear-bench: one linear layer, out (T, N) = in (T, K) · Wᵀ + bias with bf16 weights,
// timed on sc2's CPU kernels and, in a build that found oneDNN (Debian's libdnnl-dev), on
// oneDNN's matmul with the same threads, side by side in one run.
//
//   sc2-linear-bench --threads 2 --tokens 512 2048 [--isa amxbf16 --isa avx512] [--json]
//
// Shapes: the 3B model's (K → N) 3072 → 3072 (attention projections), 3072 → 12288 (c_fc)
// and 12288 → 3072 (c_proj), or --shape K N. sc2 takes float activations (and rounds or
// splits them into bf16 itself, which is timed); oneDNN is given them already in bf16, its
// weights reordered once into the layout it picks, as a bf16 model runs it (PyTorch keeps
// activations in bf16 between layers), with a float32 bias and float32 output. Each figure is
// the best of --repeat timed runs after one warm-up; GFLOP/s counts 2·T·K·N, and the share
// of the peak is against the tile (or FMA) peak that sc2-bench --peak measures.

#include "peak.hpp"

#include <sc2/sc2.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#ifdef SC2_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>
#endif

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

namespace {

using sc2::bench::seconds_since;

/// Best seconds of `repeat` calls of `f` after one warm-up call.
template <class F> double best_seconds(int repeat, F&& f) {
  f();
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    const auto start = std::chrono::steady_clock::now();
    f();
    best = std::min(best, seconds_since(start));
  }
  return best;
}

/// sc2's linear on `isa` over the bf16 weights `w` (N × K, row-major).
double time_sc2(sc2::cpu::Isa isa, int threads, std::int64_t T, std::int64_t K, std::int64_t N,
                const std::vector<float>& x, const std::vector<std::uint16_t>& w, const std::vector<float>& bias,
                int repeat) {
  sc2::CpuContext ctx(threads);
  ctx.set_isa(isa);
  const sc2::WeightMatrix plain{sc2::DType::bf16, sc2::WeightLayout::row_major, w.data(), N, K, std::nullopt};
  const auto packed = sc2::cpu::pack_weight(ctx, plain, sc2::DType::bf16);
  std::vector<float> out(static_cast<std::size_t>(T * N));
  return best_seconds(repeat, [&] {
    sc2::cpu::run_linear(ctx, sc2::MatrixView(out.data(), {T, N}), sc2::ConstMatrixView(x.data(), {T, K}), packed.view,
                         sc2::Vector<const float, sc2::Host>(bias.data(), {N}));
  });
}

#ifdef SC2_WITH_ONEDNN
/// oneDNN's matmul: bf16 activations (T × K) times bf16 weights (K × N, reordered once into the
/// layout the primitive asks for), float32 bias and output.
double time_onednn(int threads, std::int64_t T, std::int64_t K, std::int64_t N, const std::vector<float>& x,
                   const std::vector<std::uint16_t>& w, const std::vector<float>& bias, int repeat,
                   std::string& implementation) {
  using namespace dnnl;
  using dt = memory::data_type;
  using tag = memory::format_tag;
  omp_set_num_threads(threads);
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  std::vector<std::uint16_t> xb(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) xb[i] = sc2::bf16::round(x[i]).bits;
  const memory::desc src_md({T, K}, dt::bf16, tag::ab), any_weights({K, N}, dt::bf16, tag::any),
      bias_md({1, N}, dt::f32, tag::ab), dst_md({T, N}, dt::f32, tag::ab);
  const matmul::primitive_desc pd(matmul::desc(src_md, any_weights, bias_md, dst_md), eng);
  implementation = pd.impl_info_str();
  // W (N × K) row-major is the (K × N) matrix in column-major order: tag ba.
  memory plain({{K, N}, dt::bf16, tag::ba}, eng, const_cast<std::uint16_t*>(w.data()));
  memory weights(pd.weights_desc(), eng);
  reorder(plain, weights).execute(s, plain, weights);
  memory src(src_md, eng, xb.data()), b(bias_md, eng, const_cast<float*>(bias.data()));
  std::vector<float> out(static_cast<std::size_t>(T * N));
  memory dst(dst_md, eng, out.data());
  const matmul prim(pd);
  return best_seconds(repeat, [&] {
    prim.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, dst}});
    s.wait();
  });
}
#endif

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Times one bf16-weight linear layer on sc2's CPU kernels beside oneDNN's matmul"};
  int threads = 0, repeat = 5;
  std::vector<std::int64_t> tokens{512, 2048};
  std::vector<std::int64_t> shape;
  std::vector<std::string> isas;
  bool json = false;
  app.add_option("--threads", threads, "threads (0: all cores)");
  app.add_option("--tokens", tokens, "rows of the activations (T), one run each")->check(CLI::Range(1, 1 << 20));
  app.add_option("--shape", shape, "K N of one layer (default: the 3B model's three shapes)")->expected(2);
  app.add_option("--isa", isas, "sc2 paths to time (default: amxbf16, amx and avx512 where supported)");
  app.add_option("--repeat", repeat, "timed runs; the best is reported")->check(CLI::Range(1, 1000));
  app.add_flag("--json", json, "print one JSON object");
  CLI11_PARSE(app, argc, argv);
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<sc2::cpu::Isa> paths;
  if (isas.empty()) {
    for (const auto isa : {sc2::cpu::Isa::amx_bf16, sc2::cpu::Isa::amx, sc2::cpu::Isa::avx512})
      if (sc2::cpu::isa_supported(isa)) paths.push_back(isa);
  } else {
    for (const auto& name : isas) {
      const auto isa = sc2::cpu::parse_isa(name);
      if (!sc2::cpu::isa_supported(isa)) {
        fmt::print(stderr, "sc2-linear-bench: this processor cannot run the {} path\n", name);
        return 1;
      }
      paths.push_back(isa);
    }
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> shapes{{3072, 3072}, {3072, 12288}, {12288, 3072}};
  if (!shape.empty()) shapes = {{shape[0], shape[1]}};

  sc2::ThreadPool pool(threads);
  nlohmann::json results = nlohmann::json::array();
  std::vector<double> peaks;
  for (const auto isa : paths) peaks.push_back(sc2::bench::peak_gflops(pool, isa, sc2::DType::bf16));
  if (!json) {
    fmt::print("{} threads; peak of the multiply each path runs (GFLOP/s):", threads);
    for (std::size_t p = 0; p < paths.size(); ++p) fmt::print(" {} {:.0f}", sc2::cpu::isa_name(paths[p]), peaks[p]);
    fmt::print("\n");
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto& [K, N] : shapes) {
    std::vector<std::uint16_t> w(static_cast<std::size_t>(N * K));
    for (auto& v : w) v = sc2::bf16::round(0.02f * normal(rng)).bits;
    std::vector<float> bias(static_cast<std::size_t>(N));
    for (auto& v : bias) v = normal(rng);
    for (const std::int64_t T : tokens) {
      std::vector<float> x(static_cast<std::size_t>(T * K));
      for (auto& v : x) v = normal(rng);
      const double flops = 2.0 * static_cast<double>(T) * static_cast<double>(K) * static_cast<double>(N);
      nlohmann::json row{{"tokens", T}, {"k", K}, {"n", N}};
      std::string line = fmt::format("T {:5d}  {:5d} -> {:5d}:", T, K, N);
      [[maybe_unused]] double first = 0.0;  // the first path's GFLOP/s, beside oneDNN's when it is built in
      for (std::size_t p = 0; p < paths.size(); ++p) {
        const double gflops = flops / time_sc2(paths[p], threads, T, K, N, x, w, bias, repeat) / 1e9;
        if (p == 0) first = gflops;
        row[fmt::format("sc2_{}", sc2::cpu::isa_name(paths[p]))] = gflops;
        line += fmt::format("  sc2 {} {:.0f} GFLOP/s ({:.0f}% of peak)", sc2::cpu::isa_name(paths[p]), gflops,
                            peaks[p] > 0 ? 100.0 * gflops / peaks[p] : 0.0);
      }
#ifdef SC2_WITH_ONEDNN
      std::string impl;
      const double onednn = flops / time_onednn(threads, T, K, N, x, w, bias, repeat, impl) / 1e9;
      row["onednn"] = onednn;
      row["onednn_implementation"] = impl;
      line += fmt::format("  oneDNN ({}) {:.0f} GFLOP/s", impl, onednn);
      if (first > 0) line += fmt::format("  sc2 {} / oneDNN {:.2f}x", sc2::cpu::isa_name(paths.front()), first / onednn);
#endif
      results.push_back(row);
      if (!json) fmt::print("{}\n", line);
    }
  }
  if (json) fmt::print("{}\n", nlohmann::json{{"threads", threads}, {"results", results}}.dump());
  return 0;
}
