// sc2-logits: the logits of a prompt of token ids and the greedy continuation, on
// the CPU or a GPU, for parity checks against another implementation.
//
//   sc2-logits --model DIR --ids ids.json --new-tokens 32 --out logits.f32 [--device cuda] [--chunk 512]
//
// ids.json is a JSON list of token ids. The logits of every prompt position
// (T, V) are written to --out as little-endian float32; the greedy ids of the
// continuation are printed as a JSON list (no end-of-sequence stop).

#include <sc2/sc2.hpp>
#ifdef SC2_WITH_CUDA
#include <sc2/backends/cuda.hpp>
#endif

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace {

template <class Backend, class Context>
int run(Context& ctx, const std::string& model, const std::vector<std::int32_t>& ids, std::int64_t new_tokens,
        std::int64_t chunk, const std::string& out_path) {
  using LM = sc2::CausalLM<sc2::Starcoder2<sc2::ModelConfig, Backend>>;
  sc2::LoadOptions options;
  options.max_chunk_tokens = chunk;
  const auto lm = LM::load(ctx, model, options);
  const auto T = static_cast<std::int64_t>(ids.size()), V = lm.vocab_size();
  // Logits of every position, through a cache in chunks.
  sc2::Buffer<float, typename Backend::Space> logits(static_cast<std::size_t>(T * V));
  auto cache = lm.make_cache();
  lm.forward_all(ctx, std::span<const std::int32_t>(ids), cache,
                 sc2::Matrix<float, typename Backend::Space>(logits.data(), {T, V}));
  std::vector<float> host(static_cast<std::size_t>(T * V));
  sc2::ops::copy(ctx, sc2::Vector<float, sc2::Host>(std::span<float>(host)), logits.view());
  std::ofstream out(out_path, std::ios::binary);
  SC2_CHECK(out.good(), "cannot write '{}'", out_path);
  out.write(reinterpret_cast<const char*>(host.data()), static_cast<std::streamsize>(host.size() * sizeof(float)));
  // The greedy continuation, one row per step through the same cache, chosen where the logits are.
  std::vector<std::int32_t> generated;
  const float* last = host.data() + (T - 1) * V;
  generated.push_back(static_cast<std::int32_t>(std::max_element(last, last + V) - last));
  sc2::Sampler greedy;
  std::vector<std::int32_t> chosen(1);
  while (static_cast<std::int64_t>(generated.size()) < new_tokens) {
    sc2::Batch& batch = cache.batch();
    batch.clear();
    batch.add(cache.sequence(), std::span<const std::int32_t>(&generated.back(), 1), sc2::LogitRows::last);
    const auto row = lm.forward(ctx, cache.workspace(), cache.pool(), batch);
    const sc2::ops::SampleRow rows[] = {{&greedy, {}}};
    sc2::ops::sample(ctx, row, std::span<const sc2::ops::SampleRow>(rows), std::span<std::int32_t>(chosen));
    generated.push_back(chosen[0]);
  }
  std::printf("%s\n", nlohmann::json(generated).dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Logits and greedy continuation of token ids, for parity checks"};
  std::string model, ids_path, out_path, device = "cpu";
  std::int64_t new_tokens = 32, chunk = 512;
  app.add_option("--model", model, "checkpoint directory")->required();
  app.add_option("--ids", ids_path, "JSON list of prompt token ids")->required();
  app.add_option("--out", out_path, "where to write the (T, V) float32 logits")->required();
  app.add_option("--new-tokens", new_tokens, "greedy tokens to generate")->capture_default_str();
  app.add_option("--chunk", chunk, "prefill chunk")->capture_default_str();
  app.add_option("--device", device, "cpu or cuda")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    std::ifstream in(ids_path);
    SC2_CHECK(in.good(), "cannot read '{}'", ids_path);
    const auto ids = nlohmann::json::parse(in).get<std::vector<std::int32_t>>();
    SC2_CHECK(!ids.empty(), "'{}' holds no id", ids_path);
    if (device == "cuda") {
#ifdef SC2_WITH_CUDA
      sc2::cuda::Context gpu;
      return run<sc2::cuda::Backend>(gpu, model, ids, new_tokens, chunk, out_path);
#else
      SC2_FAIL("this sc2-logits was built without CUDA");
#endif
    }
    SC2_CHECK(device == "cpu", "--device must be cpu or cuda, not '{}'", device);
    sc2::CpuContext ctx;
    return run<sc2::cpu::Backend>(ctx, model, ids, new_tokens, chunk, out_path);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
