// Whole models on the GPU: every fixture checkpoint against the logits
// transformers computed on it, greedy generations against transformers' and
// the CPU backend's, and the engine's batched steps. Without a GPU each case
// reports itself skipped.
//
// Tolerances. `cuda::Float32Backend` computes in float32 like the CPU backend,
// so its logits meet the CPU's bound (1e-4 against transformers' float32 run)
// and its greedy tokens are transformers'. `cuda::Backend` keeps weights, GEMM
// inputs and the KV pool in bfloat16, whose rounding is 2^-9 relative: each
// product of the network carries errors of a few 2^-9 of its inputs' scale, and
// they accumulate over layers roughly as a random walk. For the fixtures (at
// most four layers) the bound is set at 2^-6 (1.6%) of the row's largest
// logit, four times that estimate, and its greedy argmax must agree wherever
// the reference's top two logits are further apart than twice the bound.

#include "cuda_support.hpp"

#include <sc2/sc2.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace {

using sc2::test::max_abs_diff;

template <class Backend> using LM = sc2::CausalLM<sc2::Starcoder2<sc2::ModelConfig, Backend>>;

const char* const kFixtures[] = {"gqa1_tied_window8_f32", "gqa2_untied_nobias_nowindow_f32",
                                 "gqa4_headdim128_window16_bf16", "gqa8_partial_rotary_window8_f16",
                                 "sharded_window12_f32"};

struct Reference {
  std::vector<std::int32_t> ids;
  std::vector<float> logits;
  std::int64_t vocab = 0;
};

Reference read_reference(const std::string& name) {
  const auto file = sc2::SafetensorsFile::open(sc2::test::fixture("models/" + name) / "reference.safetensors");
  Reference r;
  r.ids = sc2::test::read_reference(file, "input_ids").ints;
  const auto logits = sc2::test::read_reference(file, "logits");
  r.logits = logits.values;
  r.vocab = logits.shape[1];
  return r;
}

// The logits (T, V) of the whole prompt on the GPU, fed in chunks of `chunk` through a cache.
template <class Backend>
std::vector<float> gpu_logits(const LM<Backend>& lm, const std::vector<std::int32_t>& ids, std::size_t chunk) {
  auto& ctx = *sc2::test::gpu();
  const auto T = static_cast<std::int64_t>(ids.size());
  sc2::Buffer<float, sc2::Device> out(static_cast<std::size_t>(T * lm.vocab_size()));
  auto cache = lm.make_cache();
  for (std::size_t start = 0; start < ids.size(); start += chunk) {
    const std::size_t n = std::min(chunk, ids.size() - start);
    lm.forward_all(ctx, std::span(ids).subspan(start, n), cache,
                   sc2::Matrix<float, sc2::Device>(out.data() + start * static_cast<std::size_t>(lm.vocab_size()),
                                                   {static_cast<std::int64_t>(n), lm.vocab_size()}));
  }
  return sc2::test::to_host(ctx, out);
}

const sc2::Tokenizer& tiny_tokenizer() {
  static const sc2::Tokenizer tok =
      sc2::Tokenizer::from_file(std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny/tokenizer.json");
  return tok;
}

}  // namespace

TEST_CASE("every fixture's logits match transformers on the GPU in float32", "[cuda][parity]") {
  SC2_REQUIRE_GPU();
  for (const char* name : kFixtures) {
    const Reference ref = read_reference(name);
    const auto lm = LM<sc2::cuda::Float32Backend>::load(*sc2::test::gpu(), sc2::test::fixture(std::string("models/") + name));
    for (const std::size_t chunk : {ref.ids.size(), std::size_t{5}, std::size_t{1}}) {
      const auto got = gpu_logits(lm, ref.ids, chunk);
      INFO(name << " chunk " << chunk);
      REQUIRE(got.size() == ref.logits.size());
      CHECK(max_abs_diff(got.data(), ref.logits.data(), got.size()) <= 1e-4);
    }
  }
}

TEST_CASE("every fixture's logits match transformers on the GPU in bfloat16 within the derived bound", "[cuda][parity]") {
  SC2_REQUIRE_GPU();
  for (const char* name : kFixtures) {
    const Reference ref = read_reference(name);
    const auto lm = LM<sc2::cuda::Backend>::load(*sc2::test::gpu(), sc2::test::fixture(std::string("models/") + name));
    const auto got = gpu_logits(lm, ref.ids, 7);
    REQUIRE(got.size() == ref.logits.size());
    double worst_ratio = 0.0;
    for (std::size_t t = 0; t < ref.ids.size(); ++t) {
      const float* want = ref.logits.data() + t * static_cast<std::size_t>(ref.vocab);
      const float* row = got.data() + t * static_cast<std::size_t>(ref.vocab);
      float largest = 0.0f;
      for (std::int64_t v = 0; v < ref.vocab; ++v) largest = std::max(largest, std::fabs(want[v]));
      const double bound = std::ldexp(static_cast<double>(largest), -6);
      const double diff = max_abs_diff(row, want, static_cast<std::size_t>(ref.vocab));
      worst_ratio = std::max(worst_ratio, diff / bound);
      INFO(name << " row " << t << " largest logit " << largest);
      CHECK(diff <= bound);
      // Greedy agreement where the reference's choice is clear.
      std::vector<float> sorted(want, want + ref.vocab);
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
      if (sorted[0] - sorted[1] > 2 * bound)
        CHECK(std::max_element(row, row + ref.vocab) - row == std::max_element(want, want + ref.vocab) - want);
    }
    WARN(name << ": largest bf16 difference is " << worst_ratio << " of the bound");
  }
}

TEST_CASE("greedy generation on the GPU equals transformers' generate, also past the sliding window", "[cuda][parity]") {
  SC2_REQUIRE_GPU();
  const auto runs = nlohmann::json::parse(sc2::read_text_file(sc2::test::fixture("generation/greedy.json")));
  REQUIRE(runs.size() >= 4);
  for (const auto& r : runs) {
    const std::string model = r["model"];
    const auto prompt = r["prompt"].get<std::vector<std::int32_t>>();
    const auto expected = r["generated"].get<std::vector<std::int32_t>>();
    const auto lm = LM<sc2::cuda::Float32Backend>::load(*sc2::test::gpu(), sc2::test::fixture("models/" + model));
    sc2::Generator gen(lm, tiny_tokenizer());
    sc2::GenerationConfig config;
    config.max_new_tokens = static_cast<std::int64_t>(expected.size());
    config.eos_token_ids = {-1};  // transformers ran with eos_token_id=None
    config.prefill_chunk = 7;
    const auto result = gen.generate(*sc2::test::gpu(), std::span<const std::int32_t>(prompt), config);
    INFO(model << " prompt of " << prompt.size());
    CHECK(result.ids == expected);
  }
}

TEST_CASE("the bundled model generates transformers' tokens on the GPU, batched in the engine", "[cuda][bundled]") {
  SC2_REQUIRE_GPU();
  const auto dir = std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny";
  const auto fixture = nlohmann::json::parse(sc2::read_text_file(sc2::test::fixture("bundled/greedy.json")));
  const auto tok = sc2::Tokenizer::from_file(dir / "tokenizer.json");
  const auto lm = LM<sc2::cuda::Float32Backend>::load(*sc2::test::gpu(), dir);
  sc2::Engine<LM<sc2::cuda::Float32Backend>> engine(lm, tok, {.max_batch_tokens = 64, .max_running = 8});
  std::vector<std::pair<sc2::RequestId, std::vector<std::int32_t>>> requests;
  for (const auto& c : fixture.at("prompts")) {
    sc2::Request request;
    request.prompt = tok.encode(c.at("prompt").get<std::string>());
    request.config.max_new_tokens = fixture.at("max_new_tokens").get<std::int64_t>();
    requests.emplace_back(engine.add(std::move(request)), c.at("generated").get<std::vector<std::int32_t>>());
  }
  REQUIRE(requests.size() >= 2);
  while (engine.step(*sc2::test::gpu())) {
  }
  for (const auto& [id, expected] : requests) CHECK(engine.result(id).ids == expected);
}

TEST_CASE("seeded sampling on the GPU gives the same tokens run after run", "[cuda][sampler]") {
  SC2_REQUIRE_GPU();
  const auto dir = std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny";
  const auto tok = sc2::Tokenizer::from_file(dir / "tokenizer.json");
  const auto lm = LM<sc2::cuda::Backend>::load(*sc2::test::gpu(), dir);
  sc2::Generator gen(lm, tok);
  sc2::GenerationConfig config;
  config.max_new_tokens = 24;
  config.sampling.do_sample = true;
  config.sampling.temperature = 0.8f;
  config.sampling.top_p = 0.9f;
  config.sampling.seed = 42;
  const auto a = gen.generate(*sc2::test::gpu(), "def fibonacci(n):", config);
  const auto b = gen.generate(*sc2::test::gpu(), "def fibonacci(n):", config);
  CHECK(a.ids == b.ids);
  CHECK(a.ids.size() > 0);
}
