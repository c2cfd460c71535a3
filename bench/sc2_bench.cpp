// sc2-bench: times prompt processing (prefill) and generation (decode) on a checkpoint.
//
//   sc2-bench --model /tmp/sc2-3b-bf16 --threads 2 --prompt-tokens 512 --decode-tokens 128 [--json]
//             [--bandwidth] [--peak] [--batch 1 2 4 8 16] [--device cuda]
//
// For each batch size N (default 1): N sequences of --prompt-tokens random ids are
// prefilled through one KV pool in batches of at most --chunk tokens (chunks of several
// sequences packed together), then decoded together for --decode-tokens steps, each step
// one batch of N rows that feeds back every sequence's greedy token. Prefill and decode
// are reported as aggregate tokens/s (all sequences) and, for N > 1, as the ratio to the
// first batch size of the same run. Peak resident memory is read from the kernel (VmHWM)
// and compared with the weight and KV pool bytes. --bandwidth measures the machine's read
// bandwidth, the bound of decode; --peak the arithmetic peak of the path's multiply-add,
// the bound of prefill.

#include <sc2/sc2.hpp>
#ifdef SC2_WITH_CUDA
#include <sc2/backends/cuda.hpp>
#endif

#include "peak.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <string>

namespace {

using sc2::bench::peak_gflops;
using sc2::bench::seconds_since;

// Peak resident set size of this process in bytes (Linux: VmHWM in /proc/self/status).
std::uint64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

// Read bandwidth of this machine in GB/s: `threads` threads sum a 1 GiB buffer, each its own
// contiguous part, best of 2 passes for each way of reading it: 1, 4 or 8 streams at once per
// thread (the part cut into that many runs, read side by side), each with the hardware prefetchers
// alone or also asking for lines 4 KiB ahead. The decode kernels read several weight rows at once
// and ask for rows ahead, so a single plain stream would understate what the machine can read.
double read_bandwidth_gbs(sc2::ThreadPool& pool) {
  const std::size_t n = std::size_t{1} << 28;  // floats
  sc2::Buffer<float> data(n);
  for (std::size_t i = 0; i < n; i += 1024) data[i] = 1.0f;
  double best = 0.0;
  std::vector<float> sums(static_cast<std::size_t>(pool.size()));
  for (const std::size_t streams : {1, 4, 8}) {
    for (const std::size_t ahead : {std::size_t{0}, std::size_t{1024}}) {  // floats
      for (int rep = 0; rep < 2; ++rep) {
        const auto start = std::chrono::steady_clock::now();
        pool.run([&](int t) {
          const std::size_t part = n / static_cast<std::size_t>(pool.size());
          const std::size_t run = part / streams / 16 * 16;
          const float* base = data.data() + part * static_cast<std::size_t>(t);
          float acc[16] = {};  // one 64-byte line per stream per step
          for (std::size_t i = 0; i < run; i += 16)
            for (std::size_t s = 0; s < streams; ++s) {
              const float* line = base + s * run + i;
              if (ahead != 0 && i + ahead < run) __builtin_prefetch(line + ahead);
              for (int k = 0; k < 16; ++k) acc[k] += line[k];
            }
          float total = 0.0f;
          for (float a : acc) total += a;
          sums[static_cast<std::size_t>(t)] = total;
        });
        best = std::max(best, static_cast<double>(n * sizeof(float)) / seconds_since(start) / 1e9);
      }
    }
  }
  return sums[0] >= 0.0f ? best : 0.0;
}

// Floating-point operations (a multiply-add counts 2) of one `forward_last` over `tokens` tokens
// that follow `past` cached ones: every layer's linear layers once per token, attention over the keys
// each token sees (q·k and the weighted sum of v: 4·Dh per head and key; the window bounds the keys),
// and the LM head once, for the last token. Norms, activations and RoPE are left out (under 0.1%).
template <class LM> double forward_last_flops(const LM& lm, std::int64_t past, std::int64_t tokens) {
  const sc2::ModelConfig& cfg = lm.config();
  double linear = 0.0;
  for (const auto& layer : lm.backbone().weights().layers)
    for (const sc2::LinearWeights<sc2::Host>* l : {&layer.self_attn.q_proj, &layer.self_attn.k_proj, &layer.self_attn.v_proj,
                                        &layer.self_attn.o_proj, &layer.mlp.c_fc, &layer.mlp.c_proj})
      linear += static_cast<double>(l->weight.rows) * static_cast<double>(l->weight.cols);
  double keys = 0.0;  // Σ over the tokens of the keys each attends to
  for (std::int64_t p = past; p < past + tokens; ++p)
    keys += static_cast<double>(cfg.sliding_window ? std::min<std::int64_t>(p + 1, *cfg.sliding_window) : p + 1);
  const double attention = 4.0 * cfg.num_attention_heads * cfg.head_dim * keys * cfg.num_hidden_layers;
  const double head = 2.0 * cfg.vocab_size * cfg.hidden_size;
  return 2.0 * linear * static_cast<double>(tokens) + attention + head;
}

}  // namespace

// One batch size's run: N sequences prefilled, then decoded together.
struct BatchRun {
  std::int64_t sequences = 0;
  double prefill_s = 0.0, decode_s = 0.0;
  double prefill_tokens_per_s = 0.0, decode_tokens_per_s = 0.0;
  std::size_t pool_bytes = 0;
};

// Runs N sequences of `prompt_tokens` random ids (after `depth` positions skipped) through
// prefill in batches of at most `chunk` tokens, then `decode_tokens` steps of N decode rows.
template <class LM, class Context>
BatchRun run_batch(const LM& lm, Context& ctx, std::int64_t N, std::int64_t prompt_tokens,
                   std::int64_t decode_tokens, std::int64_t chunk, std::int64_t depth, std::int64_t context) {
  using Pool = typename LM::Pool;
  constexpr std::int64_t page_size = 32;
  const sc2::KvShape shape = lm.backbone().kv_shape(context);
  Pool pool = lm.make_kv_pool({.page_size = page_size,
                               .pages = N * Pool::pages_per_sequence(shape, page_size, std::max(chunk, N))},
                              context);
  auto ws = lm.make_workspace(
      {.max_tokens = std::max(chunk, N), .max_sequences = N, .max_logit_rows = N, .stored_logit_rows = N}, pool);
  std::mt19937 rng(42);
  std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(N));
  std::vector<sc2::SequenceId> seqs;
  for (auto& prompt : prompts) {
    prompt.resize(static_cast<std::size_t>(prompt_tokens));
    for (auto& id : prompt) id = static_cast<std::int32_t>(rng() % static_cast<unsigned>(lm.vocab_size()));
    seqs.push_back(pool.add());
    for (std::int64_t left = depth; left > 0;) {  // positions skipped: keys as the pages hold them
      const std::int64_t n = std::min(left, chunk);
      pool.prepare(ctx, seqs.back(), n);
      pool.advance(seqs.back(), n);
      left -= n;
    }
  }
  std::vector<std::int32_t> next(static_cast<std::size_t>(N)), chosen;
  // Greedy tokens, chosen where the logits are (on a GPU only the ids come back).
  std::vector<sc2::Sampler> greedy(static_cast<std::size_t>(N));
  std::vector<sc2::ops::SampleRow> rows;
  const auto argmax_rows = [&](auto logits, const std::vector<std::size_t>& which) {
    rows.clear();
    for (const std::size_t i : which) rows.push_back({&greedy[i], {}});
    chosen.resize(which.size());
    sc2::ops::sample(ctx, logits, std::span<const sc2::ops::SampleRow>(rows), std::span<std::int32_t>(chosen));
    for (std::size_t r = 0; r < which.size(); ++r) next[which[r]] = chosen[r];
  };
  sc2::Batch batch;
  std::vector<std::size_t> which;
  std::vector<std::int64_t> done(static_cast<std::size_t>(N), 0);
  auto start = std::chrono::steady_clock::now();
  for (std::size_t s = 0; s < prompts.size();) {
    batch.clear();
    which.clear();
    std::int64_t used = 0;
    for (std::size_t i = s; i < prompts.size() && used < chunk; ++i) {
      const std::int64_t n = std::min(prompt_tokens - done[i], chunk - used);
      const bool last = done[i] + n == prompt_tokens;
      batch.add(seqs[i], std::span(prompts[i]).subspan(static_cast<std::size_t>(done[i]), static_cast<std::size_t>(n)),
                last ? sc2::LogitRows::last : sc2::LogitRows::none);
      if (last) which.push_back(i);
      done[i] += n;
      used += n;
    }
    argmax_rows(lm.forward(ctx, ws, pool, batch), which);
    while (s < prompts.size() && done[s] == prompt_tokens) ++s;
  }
  BatchRun run;
  run.sequences = N;
  run.prefill_s = seconds_since(start);
  which.resize(static_cast<std::size_t>(N));
  for (std::size_t i = 0; i < which.size(); ++i) which[i] = i;
  start = std::chrono::steady_clock::now();
  for (std::int64_t step = 0; step < decode_tokens; ++step) {
    batch.clear();
    for (std::size_t i = 0; i < seqs.size(); ++i) batch.add(seqs[i], std::span(&next[i], 1));
    argmax_rows(lm.forward(ctx, ws, pool, batch), which);
  }
  run.decode_s = seconds_since(start);
  run.prefill_tokens_per_s = static_cast<double>(N * prompt_tokens) / run.prefill_s;
  run.decode_tokens_per_s = decode_tokens > 0 ? static_cast<double>(N * decode_tokens) / run.decode_s : 0.0;
  run.pool_bytes = pool.bytes();
  return run;
}

#ifdef SC2_WITH_CUDA
// Device-to-device copy bandwidth of the GPU in GB/s, counting bytes read and written:
// the bound of decode, which reads every weight once per step. Best of 5 copies of 2 GiB.
double device_copy_gbs(sc2::cuda::Context& ctx) {
  const std::size_t bytes = std::size_t{1} << 31;
  sc2::Buffer<std::byte, sc2::Device> a(bytes), b(bytes);
  cudaEvent_t start, stop;
  sc2::cuda::check(cudaEventCreate(&start), "cudaEventCreate");
  sc2::cuda::check(cudaEventCreate(&stop), "cudaEventCreate");
  float best_ms = 0.0f;
  for (int rep = 0; rep < 6; ++rep) {
    sc2::cuda::check(cudaEventRecord(start, ctx.stream()), "cudaEventRecord");
    sc2::cuda::check(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, ctx.stream()), "copy");
    sc2::cuda::check(cudaEventRecord(stop, ctx.stream()), "cudaEventRecord");
    ctx.synchronize();
    float ms = 0.0f;
    sc2::cuda::check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    if (rep > 0 && (best_ms == 0.0f || ms < best_ms)) best_ms = ms;  // the first copy warms up
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  return 2.0 * static_cast<double>(bytes) / (static_cast<double>(best_ms) * 1e-3) / 1e9;
}

// The same runs on the GPU: bf16 weights and KV pool, greedy tokens chosen on the device.
int run_cuda(const std::string& model_dir, std::int64_t prompt_tokens, std::int64_t decode_tokens, std::int64_t chunk,
             std::int64_t depth, std::int64_t context, const std::vector<std::int64_t>& batches, bool bandwidth,
             bool json) {
  sc2::cuda::Context ctx;
  sc2::LoadOptions options;
  options.max_chunk_tokens = chunk;
  const auto load_start = std::chrono::steady_clock::now();
  using LM = sc2::CausalLM<sc2::Starcoder2<sc2::ModelConfig, sc2::cuda::Backend>>;
  const auto lm = LM::load(ctx, model_dir, options);
  const double load_s = seconds_since(load_start);
  if (context <= 0) context = std::max<std::int64_t>(depth + prompt_tokens + decode_tokens, 1);
  std::vector<BatchRun> runs;
  for (const std::int64_t N : batches) runs.push_back(run_batch(lm, ctx, N, prompt_tokens, decode_tokens, chunk, depth, context));
  std::size_t free = 0, total = 0;
  sc2::cuda::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  const double copy_gbs = bandwidth ? device_copy_gbs(ctx) : 0.0;
  // Decode at batch 1 reads every weight once per token: the roofline is bandwidth / weight bytes.
  const double roofline = copy_gbs > 0.0 ? copy_gbs * 1e9 / static_cast<double>(lm.weight_bytes()) : 0.0;
  const BatchRun& first = runs.front();
  if (json) {
    nlohmann::ordered_json out = {{"model", model_dir}, {"device", ctx.properties().name}, {"load_s", load_s},
                                  {"prompt_tokens", prompt_tokens}, {"decode_tokens", decode_tokens}, {"depth", depth},
                                  {"weight_bytes", lm.weight_bytes()}, {"gpu_memory_used_bytes", total - free},
                                  {"copy_bandwidth_gbs", copy_gbs}, {"decode_roofline_tokens_per_s", roofline}};
    for (const BatchRun& r : runs)
      out["batches"].push_back({{"sequences", r.sequences}, {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                                {"decode_tokens_per_s", r.decode_tokens_per_s},
                                {"decode_vs_first", r.decode_tokens_per_s / first.decode_tokens_per_s},
                                {"kv_pool_bytes", r.pool_bytes}});
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("model    {} on {}, weights {:.2f} GB (bf16), loaded in {:.2f} s\n", model_dir, ctx.properties().name,
             static_cast<double>(lm.weight_bytes()) / 1e9, load_s);
  fmt::print("batch    sequences | prefill tokens/s | decode tokens/s | decode × first\n");
  for (const BatchRun& r : runs)
    fmt::print("         {:9} | {:16.1f} | {:15.1f} | {:.2f}\n", r.sequences, r.prefill_tokens_per_s,
               r.decode_tokens_per_s, r.decode_tokens_per_s / first.decode_tokens_per_s);
  if (bandwidth)
    fmt::print("roofline copy bandwidth {:.0f} GB/s: weights at most {:.0f} tokens/s; batch-1 decode is {:.0f}% of it\n",
               copy_gbs, roofline, 100.0 * first.decode_tokens_per_s / first.sequences / roofline);
  fmt::print("memory   GPU memory in use {:.3f} GB of {:.1f} GB\n", static_cast<double>(total - free) / 1e9,
             static_cast<double>(total) / 1e9);
  return 0;
}
#endif

int main(int argc, char** argv) {
  CLI::App app{"Times prefill and decode of a StarCoder2 checkpoint on the CPU or a GPU"};
  std::string model_dir;
  int threads = 0;
  std::int64_t prompt_tokens = 512, decode_tokens = 128, chunk = 512, context = 0;
  std::string isa;
  std::string weight_type = "stored";
  bool json = false, bandwidth = false, peak = false;
  std::int64_t depth = 0;
  std::vector<std::int64_t> batches{1};
  app.add_option("--model", model_dir, "checkpoint directory (config.json + safetensors)")->required();
  app.add_option("--threads", threads, "threads (0: all cores)");
  app.add_option("--prompt-tokens", prompt_tokens, "prompt length")->check(CLI::Range(1, 1 << 20));
  app.add_option("--decode-tokens", decode_tokens, "tokens to generate")->check(CLI::Range(0, 1 << 20));
  app.add_option("--chunk", chunk, "prefill chunk (max tokens per forward)")->check(CLI::Range(1, 1 << 16));
  app.add_option("--context", context, "KV-cache context limit (0: prompt + decode)");
  app.add_option("--isa", isa, "force a SIMD path: scalar, avx2, avx512, avx512bf16, amx, amxbf16 or avx512vnni");
  app.add_option("--weight-dtype", weight_type, "f32, bf16, f16, q8_0, q4_0, q4_k, q5_k, q6_k, or stored (the default)");
  app.add_option("--depth", depth,
                 "decode as if this many tokens preceded the prompt: the cache is advanced without computing "
                 "them (its contents are zeros), which costs the same per token; for speed at long context");
  app.add_flag("--bandwidth", bandwidth, "also measure the machine's read bandwidth with the same threads");
  app.add_flag("--peak", peak,
               "also measure the arithmetic peak of the instruction the prefill linear layers multiply with, with "
               "the same threads, and count prefill's floating-point operations against it");
  app.add_option("--batch", batches,
                 "sequences run together (several sizes: one run each, decode compared with the first)")
      ->check(CLI::Range(1, 4096));
  app.add_flag("--json", json, "print one JSON object");
  std::string device = "cpu";
  app.add_option("--device", device, "cpu, or cuda (the first GPU; --bandwidth then measures its copy bandwidth)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    if (device == "cuda") {
#ifdef SC2_WITH_CUDA
      return run_cuda(model_dir, prompt_tokens, decode_tokens, chunk, depth, context, batches, bandwidth, json);
#else
      SC2_FAIL("this sc2-bench was built without CUDA (configure with -DSC2_ENABLE_CUDA=ON)");
#endif
    }
    SC2_CHECK(device == "cpu", "--device must be cpu or cuda, not '{}'", device);
    sc2::CpuContext ctx(threads);
    if (!isa.empty()) ctx.set_isa(sc2::cpu::parse_isa(isa));
    sc2::LoadOptions options;
    options.max_chunk_tokens = chunk;
    sc2::set_weight_type(options, weight_type);
    auto load_start = std::chrono::steady_clock::now();
    auto lm = sc2::Starcoder2ForCausalLM::load(ctx, model_dir, options);
    const double load_s = seconds_since(load_start);
    const sc2::ModelConfig& cfg = lm.config();
    const std::uint64_t weight_bytes = lm.weight_bytes();
    if (context <= 0) context = std::max<std::int64_t>(depth + prompt_tokens + decode_tokens, 1);
    std::vector<BatchRun> runs;
    for (const std::int64_t N : batches)
      runs.push_back(run_batch(lm, ctx, N, prompt_tokens, decode_tokens, chunk, depth, context));
    const BatchRun& first = runs.front();
    const double prefill_s = first.prefill_s, decode_s = first.decode_s;
    std::size_t cache_bytes = 0;  // the largest KV pool of the run
    for (const BatchRun& r : runs) cache_bytes = std::max(cache_bytes, r.pool_bytes);
    const std::uint64_t rss = peak_rss_bytes();
    const double prefill_tps = first.prefill_tokens_per_s;
    const double decode_tps = first.decode_tokens_per_s / static_cast<double>(first.sequences);
    const double budget = static_cast<double>(weight_bytes + cache_bytes);
    const double bandwidth_gbs = bandwidth ? read_bandwidth_gbs(ctx.pool()) : 0.0;
    const double roofline = bandwidth_gbs > 0.0 ? bandwidth_gbs * 1e9 / static_cast<double>(weight_bytes) : 0.0;
    const double prefill_gflops =
        static_cast<double>(first.sequences) * forward_last_flops(lm, depth, prompt_tokens) / prefill_s / 1e9;
    const double peak_gflops_s =
        peak ? peak_gflops(ctx.pool(), ctx.isa(), lm.backbone().weights().layers.front().mlp.c_fc.weight.dtype) : 0.0;

    if (json) {
      nlohmann::ordered_json out = {{"model", model_dir}, {"threads", ctx.threads()}, {"isa", sc2::cpu::isa_name(ctx.isa())},
                                    {"load_s", load_s}, {"prompt_tokens", prompt_tokens}, {"prefill_s", prefill_s},
                                    {"prefill_tokens_per_s", prefill_tps}, {"time_to_first_token_s", prefill_s},
                                    {"prefill_gflops_per_s", prefill_gflops},
                                    {"peak_gflops_per_s", peak_gflops_s}, {"decode_tokens", decode_tokens},
                                    {"decode_s", decode_s}, {"decode_tokens_per_s", decode_tps}, {"depth", depth},
                                    {"read_bandwidth_gbs", bandwidth_gbs}, {"decode_roofline_tokens_per_s", roofline},
                                    {"weight_bytes", weight_bytes}, {"cache_bytes", cache_bytes},
                                    {"peak_rss_bytes", rss}, {"rss_over_weights_and_cache", static_cast<double>(rss) / budget}};
      for (const BatchRun& r : runs)
        out["batches"].push_back({{"sequences", r.sequences}, {"prefill_s", r.prefill_s},
                                  {"prefill_tokens_per_s", r.prefill_tokens_per_s}, {"decode_s", r.decode_s},
                                  {"decode_tokens_per_s", r.decode_tokens_per_s},
                                  {"decode_vs_first", r.decode_tokens_per_s / first.decode_tokens_per_s},
                                  {"kv_pool_bytes", r.pool_bytes}});
      fmt::print("{}\n", out.dump(2));
    } else {
      fmt::print("model    {} ({} layers, hidden {}), weights {:.2f} GB, {} threads, {} path, loaded in {:.2f} s\n",
                 model_dir, cfg.num_hidden_layers, cfg.hidden_size, static_cast<double>(weight_bytes) / 1e9,
                 ctx.threads(), sc2::cpu::isa_name(ctx.isa()), load_s);
      fmt::print("prefill  {} × {} tokens in {:.2f} s: {:.2f} tokens/s, {:.1f} GFLOP/s{}\n", first.sequences,
                 prompt_tokens, prefill_s, prefill_tps, prefill_gflops,
                 first.sequences == 1 ? fmt::format("; first token after {:.2f} s", prefill_s) : std::string());
      fmt::print("decode   {} × {} tokens in {:.2f} s: {:.2f} tokens/s per sequence{}\n", first.sequences,
                 decode_tokens, decode_s, decode_tps,
                 depth > 0 ? fmt::format(" (after a context of {} tokens)", depth + prompt_tokens) : std::string());
      if (bandwidth)
        fmt::print("roofline read bandwidth {:.1f} GB/s: weights at most {:.2f} tokens/s; decode is {:.0f}% of it\n",
                   bandwidth_gbs, roofline, 100.0 * decode_tps / roofline);
      if (peak && peak_gflops_s > 0.0)
        fmt::print("roofline multiply-add peak {:.1f} GFLOP/s: prefill is {:.0f}% of it\n", peak_gflops_s,
                   100.0 * prefill_gflops / peak_gflops_s);
      if (runs.size() > 1) {
        fmt::print("batch    sequences | prefill tokens/s | decode tokens/s | decode × first\n");
        for (const BatchRun& r : runs)
          fmt::print("         {:9} | {:16.2f} | {:15.2f} | {:.2f}\n", r.sequences, r.prefill_tokens_per_s,
                     r.decode_tokens_per_s, r.decode_tokens_per_s / first.decode_tokens_per_s);
      }
      fmt::print("memory   peak RSS {:.3f} GB = {:.3f} × (weights {:.3f} GB + KV cache {:.3f} GB)\n",
                 static_cast<double>(rss) / 1e9, static_cast<double>(rss) / budget,
                 static_cast<double>(weight_bytes) / 1e9, static_cast<double>(cache_bytes) / 1e9);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
