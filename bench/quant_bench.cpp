// sc2-quant-bench: the CPU linear kernels on weights in GGML blocks, beside bf16, in one run.
//
//   sc2-quant-bench [--threads 2] [--tokens 1] [--rows 12288] [--cols 3072] [--isa avx512 avx512vnni]
//
// One (rows, cols) matrix of normal weights is packed in bf16 and quantized to every format, then
// copied until the copies pass 2 GiB (past any last-level cache), and `cpu::run_linear` runs over
// the copies in turn with T = --tokens rows of activations: each call reads its matrix from memory,
// as a decode step reads the model's. Per format and SIMD path: milliseconds per matrix (best of 3
// passes), GB/s of weight bytes read (the decode figure), and GFLOP/s (the prefill figure, with
// --tokens 128 or more).

#include <sc2/backends/cpu.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

// Milliseconds per call of `run_linear` over copies of `one`'s storage totalling at least 2 GiB.
double time_matrix(sc2::CpuContext& ctx, const sc2::OwnedWeight<sc2::Host>& one, const std::vector<float>& x,
                   std::vector<float>& out, std::int64_t T) {
  const std::size_t bytes = one.view.bytes();
  const std::size_t copies = (std::size_t{2} << 30) / bytes + 1;
  sc2::Buffer<std::byte> all(bytes * copies);
  for (std::size_t c = 0; c < copies; ++c) std::memcpy(all.data() + c * bytes, one.storage.data(), bytes);
  const std::int64_t N = one.view.rows, K = one.view.cols;
  double best = 1e30;
  for (int pass = 0; pass < 3; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t c = 0; c < copies; ++c) {
      sc2::WeightMatrix w = one.view;
      w.data = all.data() + c * bytes;
      sc2::cpu::run_linear(ctx, sc2::MatrixView(out.data(), {T, N}), sc2::ConstMatrixView(x.data(), {T, K}), w, {});
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
                              static_cast<double>(copies));
  }
  return best * 1e3;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The CPU linear kernels on GGML blocks, beside bf16"};
  int threads = 2;
  std::int64_t T = 1, N = 12288, K = 3072;
  std::vector<std::string> isas{"avx512", "avx512vnni"};
  app.add_option("--threads", threads, "threads")->capture_default_str();
  app.add_option("--tokens", T, "rows of activations (1: decode)")->capture_default_str();
  app.add_option("--rows", N, "output features")->capture_default_str();
  app.add_option("--cols", K, "input features (a multiple of 256)")->capture_default_str();
  app.add_option("--isa", isas, "SIMD paths to run (those this processor lacks are skipped)");
  CLI11_PARSE(app, argc, argv);
  try {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> w(static_cast<std::size_t>(N * K)), x(static_cast<std::size_t>(T * K)), out(static_cast<std::size_t>(T * N));
    for (auto& v : w) v = normal(rng);
    for (auto& v : x) v = 50.0f * normal(rng);
    const sc2::WeightMatrix source{sc2::DType::f32, sc2::WeightLayout::row_major, w.data(), N, K, std::nullopt};
    fmt::print("{} × {} weights, T = {}, {} threads; copies past 2 GiB\n", N, K, T, threads);
    fmt::print("| path | weights | ms per matrix | GB/s read | GFLOP/s |\n|---|---|---|---|---|\n");
    for (const std::string& name : isas) {
      const sc2::cpu::Isa isa = sc2::cpu::parse_isa(name);
      if (!sc2::cpu::isa_supported(isa)) {
        fmt::print("| {} | skipped: not on this processor | | | |\n", name);
        continue;
      }
      sc2::CpuContext ctx(threads);
      ctx.set_isa(isa);
      const auto report = [&](std::string_view label, const sc2::OwnedWeight<sc2::Host>& packed) {
        const double ms = time_matrix(ctx, packed, x, out, T);
        fmt::print("| {} | {} | {:.3f} | {:.1f} | {:.1f} |\n", name, label, ms,
                   static_cast<double>(packed.view.bytes()) / ms / 1e6, 2.0 * static_cast<double>(T * N * K) / ms / 1e6);
      };
      report("bf16", sc2::cpu::pack_weight(ctx, source, sc2::DType::bf16));
      for (const auto format : {sc2::quant::Format::q8_0, sc2::quant::Format::q4_0, sc2::quant::Format::q4_k,
                                sc2::quant::Format::q5_k, sc2::quant::Format::q6_k})
        report(sc2::quant::format_name(format), sc2::cpu::pack_blocks(ctx, source, format));
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
