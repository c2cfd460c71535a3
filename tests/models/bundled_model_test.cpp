// The bundled model, models/sc2-tiny (tools/training/train_model.py): a trained StarCoder2
// checkpoint checked against what PyTorch and transformers computed on it
// (tools/evaluation/eval_model.py): the held-out loss, greedy continuations, and a
// fill-in-the-middle completion.

#include "support.hpp"

#include <sc2/generation/fim.hpp>
#include <sc2/generation/generator.hpp>
#include <sc2/sc2.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace {

std::filesystem::path model_dir() { return std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny"; }

nlohmann::json read_json(const std::string& fixture) {
  std::ifstream in(sc2::test::fixture(fixture));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

// Mean over positions 0..T-2 of -log softmax(logits[t])[ids[t + 1]], added up in double.
double summed_cross_entropy(const std::vector<float>& logits, const std::vector<std::int32_t>& ids, std::int64_t vocab) {
  double total = 0.0;
  for (std::size_t t = 0; t + 1 < ids.size(); ++t) {
    const float* row = logits.data() + t * static_cast<std::size_t>(vocab);
    const double top = *std::max_element(row, row + vocab);
    double sum = 0.0;
    for (std::int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - top);
    total += top + std::log(sum) - static_cast<double>(row[ids[t + 1]]);
  }
  return total;
}

sc2::StopReason expected_stop(const std::vector<std::int32_t>& generated, const std::vector<int>& eos) {
  const bool ended = !generated.empty() && std::find(eos.begin(), eos.end(), generated.back()) != eos.end();
  return ended ? sc2::StopReason::eos : sc2::StopReason::max_new_tokens;
}

}  // namespace

TEST_CASE("the bundled model is small and exercises grouped-query attention and the sliding window", "[bundled]") {
  std::uintmax_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(model_dir())) bytes += entry.file_size();
  CHECK(bytes <= 25'000'000u);

  const auto lm = sc2::Starcoder2ForCausalLM::load(model_dir());
  const sc2::ModelConfig& config = lm.config();
  CHECK(config.num_key_value_heads < config.num_attention_heads);
  REQUIRE(config.sliding_window.has_value());
  CHECK(*config.sliding_window < read_json("bundled/heldout.json").at("context").get<int>());
  // Generation stops at <|endoftext|> and at <file_sep>, as fill-in-the-middle needs.
  const auto tok = sc2::Tokenizer::from_file(model_dir() / "tokenizer.json");
  CHECK(config.eos_token_ids == std::vector<int>{*tok.special_token_id("<|endoftext|>"), *tok.special_token_id("<file_sep>")});
}

TEST_CASE("the bundled model's held-out loss equals PyTorch's", "[bundled]") {
  const auto fixture = read_json("bundled/heldout.json");
  auto lm = sc2::Starcoder2ForCausalLM::load(model_dir());
  sc2::CpuContext ctx(2);
  const std::int64_t vocab = lm.vocab_size();

  double total = 0.0;
  std::int64_t positions = 0;
  for (const auto& block : fixture.at("blocks")) {
    const auto ids = block.get<std::vector<std::int32_t>>();
    const auto T = static_cast<std::int64_t>(ids.size());
    std::vector<float> logits(static_cast<std::size_t>(T * vocab));
    sc2::KvCache cache = lm.make_cache();  // each block is scored on its own
    lm.forward_all(ctx, ids, cache, sc2::MatrixView(logits.data(), {T, vocab}));
    total += summed_cross_entropy(logits, ids, vocab);
    positions += T - 1;
  }
  const double loss = total / static_cast<double>(positions);
  const double expected = fixture.at("pytorch_loss").get<double>();
  INFO("sc2 " << loss << ", PyTorch " << expected << " over " << positions << " positions");
  CHECK(std::abs(loss - expected) <= 1e-3 * expected);
}

TEST_CASE("the bundled model's greedy generations equal transformers'", "[bundled]") {
  const auto fixture = read_json("bundled/greedy.json");
  auto lm = sc2::Starcoder2ForCausalLM::load(model_dir());
  const auto tok = sc2::Tokenizer::from_file(model_dir() / "tokenizer.json");
  sc2::Generator gen(lm, tok);
  sc2::CpuContext ctx(2);
  sc2::GenerationConfig config;
  config.max_new_tokens = fixture.at("max_new_tokens").get<std::int64_t>();
  const auto eos = fixture.at("eos_token_ids").get<std::vector<int>>();
  REQUIRE(eos == lm.config().eos_token_ids);

  for (const auto& c : fixture.at("prompts")) {
    const auto prompt = c.at("prompt").get<std::string>();
    const auto expected = c.at("generated").get<std::vector<std::int32_t>>();
    INFO(prompt);
    CHECK(tok.encode(prompt) == c.at("prompt_ids").get<std::vector<std::int32_t>>());
    const auto result = gen.generate(ctx, prompt, config);
    CHECK(result.ids == expected);
    CHECK(result.stop_reason == expected_stop(expected, eos));
    CHECK(!result.text.empty());
  }
}

TEST_CASE("the bundled model fills in the middle", "[bundled]") {
  const auto fim = read_json("bundled/greedy.json").at("fim");
  auto lm = sc2::Starcoder2ForCausalLM::load(model_dir());
  const auto tok = sc2::Tokenizer::from_file(model_dir() / "tokenizer.json");
  sc2::Generator gen(lm, tok);
  sc2::CpuContext ctx(2);
  const auto prefix = fim.at("prefix").get<std::string>();
  const auto suffix = fim.at("suffix").get<std::string>();
  CHECK(sc2::fim_prompt(tok, prefix, suffix) == fim.at("prompt_ids").get<std::vector<std::int32_t>>());

  sc2::GenerationConfig config;
  config.max_new_tokens = read_json("bundled/greedy.json").at("max_new_tokens").get<std::int64_t>();
  const auto result = sc2::fill_in_the_middle(gen, ctx, tok, prefix, suffix, config);
  const auto expected = fim.at("generated").get<std::vector<std::int32_t>>();
  CHECK(result.ids == expected);
  CHECK(!result.text.empty());
  const std::vector<int> stops{*tok.special_token_id("<|endoftext|>"), *tok.special_token_id("<file_sep>")};
  CHECK(result.stop_reason == expected_stop(expected, stops));
  if (result.stop_reason == sc2::StopReason::eos)
    CHECK(std::find(stops.begin(), stops.end(), result.ids.back()) != stops.end());
  else
    CHECK(result.stop_reason == sc2::StopReason::max_new_tokens);
}
