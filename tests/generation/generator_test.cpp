// The generator: greedy parity with transformers' generate, stop rules, streaming,
// reproducible sampling, fill-in-the-middle prompts.

#include "support.hpp"

#include <sc2/generation/fim.hpp>
#include <sc2/generation/generator.hpp>
#include <sc2/sc2.hpp>

#include <nlohmann/json.hpp>

namespace {

const sc2::Tokenizer& tiny_tokenizer() {
  static const sc2::Tokenizer tok =
      sc2::Tokenizer::from_file(std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny/tokenizer.json");
  return tok;
}

// A stand-in language model that "predicts" a fixed script of token ids, so the
// generator's stop rules and streaming can be tested on exact text. It has the
// batched interface the engine drives: a KV pool of one tiny layer counts the
// positions, and each row that asks for logits gets the next id of the script.
class ScriptedLM {
public:
  using Backend = sc2::cpu::Backend;
  using Context = sc2::CpuContext;
  using Pool = sc2::KvPool<Backend>;
  using Work = sc2::Workspace<Backend>;

  /// Stands in for the backbone: the KV shape of one layer, one head of one dimension.
  struct Backbone {
    sc2::KvShape kv_shape(std::int64_t max_context) const { return {1, 1, 1, std::nullopt, max_context > 0 ? max_context : 1000}; }
  };

  ScriptedLM(std::vector<std::int32_t> script, std::int64_t vocab) : script_(std::move(script)), vocab_(vocab) {
    config_.eos_token_ids = {0};
  }
  std::int64_t vocab_size() const { return vocab_; }
  const sc2::ModelConfig& config() const { return config_; }
  std::int64_t max_chunk_tokens() const { return 64; }
  Backbone backbone() const { return {}; }
  Pool make_kv_pool(const sc2::KvPoolOptions& options, std::int64_t max_context) const {
    return Pool(backbone().kv_shape(max_context), options);
  }
  Work make_workspace(const sc2::WorkspaceOptions& options, const Pool&) const { return Work({1, 1, 1, 1, 1, 1, 1}, options); }
  sc2::Matrix<const float, sc2::Host> forward(Context& ctx, Work&, Pool& pool, const sc2::Batch& batch) const {
    logits_.assign(static_cast<std::size_t>(batch.logit_rows() * vocab_), 0.0f);
    std::int64_t row = 0;
    for (const auto& chunk : batch.chunks()) {
      pool.prepare(ctx, chunk.sequence, static_cast<std::int64_t>(chunk.ids.size()));
      pool.advance(chunk.sequence, static_cast<std::int64_t>(chunk.ids.size()));
      if (chunk.logits == sc2::LogitRows::none) continue;
      const std::int32_t next = step_ < script_.size() ? script_[step_] : 0;
      ++step_;
      logits_[static_cast<std::size_t>(row++ * vocab_ + next)] = 10.0f;
    }
    return {logits_.data(), {row, vocab_}};
  }

private:
  std::vector<std::int32_t> script_;
  std::int64_t vocab_;
  mutable std::vector<float> logits_;
  mutable std::size_t step_ = 0;
  sc2::ModelConfig config_;
};

struct Run {
  sc2::GenerationResult result;
  std::string streamed;
  std::vector<std::string> pieces;
};

Run generate_scripted(const std::string& continuation, sc2::GenerationConfig config, std::vector<std::int32_t> extra = {},
                      std::vector<std::int32_t> prompt = {5, 6}) {
  const auto& tok = tiny_tokenizer();
  auto script = tok.encode(continuation);
  script.insert(script.end(), extra.begin(), extra.end());
  ScriptedLM lm(script, static_cast<std::int64_t>(tok.id_limit()));
  sc2::Generator<ScriptedLM> gen(lm, tok);
  sc2::CpuContext ctx(1);
  Run run;
  run.result = gen.generate(ctx, std::span<const std::int32_t>(prompt), config, [&](std::string_view piece) {
    run.streamed += piece;
    run.pieces.emplace_back(piece);
  });
  return run;
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

}  // namespace

TEST_CASE("greedy generation equals transformers' generate, also past the sliding window", "[generation][parity]") {
  const auto runs = nlohmann::json::parse(sc2::read_text_file(sc2::test::fixture("generation/greedy.json")));
  REQUIRE(runs.size() >= 4);
  for (const auto& r : runs) {
    const std::string model = r["model"];
    const auto prompt = r["prompt"].get<std::vector<std::int32_t>>();
    const auto expected = r["generated"].get<std::vector<std::int32_t>>();
    DYNAMIC_SECTION(model << " prompt of " << prompt.size()) {
      auto lm = sc2::Starcoder2ForCausalLM::load(sc2::test::fixture("models/" + model));
      sc2::Generator gen(lm, tiny_tokenizer());
      sc2::CpuContext ctx(2);
      sc2::GenerationConfig config;
      config.max_new_tokens = static_cast<std::int64_t>(expected.size());
      config.eos_token_ids = {-1};  // transformers ran with eos_token_id=None
      config.prefill_chunk = 7;
      const auto result = gen.generate(ctx, std::span<const std::int32_t>(prompt), config);
      CHECK(result.ids == expected);
      CHECK(result.stop_reason == sc2::StopReason::max_new_tokens);
      CHECK(expected.size() >= 32);
    }
  }
}

TEST_CASE("seeded sampling gives the same tokens with 1 and 2 threads", "[generation]") {
  auto lm = sc2::Starcoder2ForCausalLM::load(sc2::test::fixture("models/gqa1_tied_window8_f32"));
  sc2::Generator gen(lm, tiny_tokenizer());
  sc2::GenerationConfig config;
  config.max_new_tokens = 30;
  config.eos_token_ids = {-1};
  config.sampling.do_sample = true;
  config.sampling.temperature = 1.3f;
  config.sampling.seed = 77;
  const std::vector<std::int32_t> prompt{3, 1, 4, 1, 5, 9, 2, 6};
  sc2::CpuContext one(1), two(2);
  const auto a = gen.generate(one, std::span<const std::int32_t>(prompt), config);
  const auto b = gen.generate(two, std::span<const std::int32_t>(prompt), config);
  CHECK(a.ids == b.ids);
  config.sampling.seed = 78;
  CHECK(gen.generate(two, std::span<const std::int32_t>(prompt), config).ids != a.ids);
}

TEST_CASE("a stop string ends generation and the text stops before it", "[generation]") {
  sc2::GenerationConfig config;
  config.stop_strings = {"\ndef "};
  const auto run = generate_scripted("    return x\n\ndef other():\n    pass\n", config);
  CHECK(run.result.stop_reason == sc2::StopReason::stop_string);
  CHECK(run.result.text == "    return x\n");
  CHECK(run.streamed == run.result.text);  // the held-back "\n" of "\ndef " never leaked
}

TEST_CASE("EOS ends generation: the id is kept, the text is not", "[generation]") {
  sc2::GenerationConfig config;
  const auto run = generate_scripted("x = 1", config, {0, 42, 43});
  CHECK(run.result.stop_reason == sc2::StopReason::eos);
  CHECK(run.result.ids.back() == 0);
  CHECK(run.result.text == "x = 1");
  CHECK(run.streamed == "x = 1");
}

TEST_CASE("max_new_tokens and the context limit end generation", "[generation]") {
  sc2::GenerationConfig config;
  config.max_new_tokens = 3;
  auto run = generate_scripted("a b c d e f g h", config);
  CHECK(run.result.stop_reason == sc2::StopReason::max_new_tokens);
  CHECK(run.result.ids.size() == 3);
  CHECK(run.result.text == tiny_tokenizer().decode(run.result.ids));

  config.max_new_tokens = 100;
  config.max_context = 6;  // prompt of 2 + 4 generated
  run = generate_scripted("a b c d e f g h", config);
  CHECK(run.result.stop_reason == sc2::StopReason::context_limit);
  CHECK(run.result.ids.size() == 5);  // the 5th token is chosen from the logits of position 5, then the cache is full
}

TEST_CASE("streamed pieces are whole UTF-8 characters and add up to the text", "[generation]") {
  sc2::GenerationConfig config;
  config.max_new_tokens = 200;
  config.stop_strings = {"ZZZ"};
  const std::string text = "日本語のコード 🧑‍💻 naïve café ½ → ∑";
  const auto run = generate_scripted(text, config);
  CHECK(run.result.text == text);
  CHECK(run.streamed == text);
  for (const auto& piece : run.pieces) CHECK(valid_utf8(piece));
}

TEST_CASE("bad generation requests are refused with clear errors", "[generation]") {
  const auto& tok = tiny_tokenizer();
  ScriptedLM lm({}, static_cast<std::int64_t>(tok.id_limit()));
  sc2::Generator<ScriptedLM> gen(lm, tok);
  sc2::CpuContext ctx(1);
  sc2::GenerationConfig config;
  CHECK_THROWS_WITH(gen.generate(ctx, "", config), Catch::Contains("prompt is empty"));
  config.max_new_tokens = 0;
  CHECK_THROWS_WITH(gen.generate(ctx, "x", config), Catch::Contains("max_new_tokens must be positive"));
  config.max_new_tokens = 5;
  const std::vector<std::int32_t> bad{1, 999999};
  CHECK_THROWS_WITH(gen.generate(ctx, std::span<const std::int32_t>(bad), config),
                    Catch::Contains("prompt token id 999999 at position 1 is outside the vocabulary"));
  config.max_context = 2;
  const std::vector<std::int32_t> two{1, 2};
  CHECK_THROWS_WITH(gen.generate(ctx, std::span<const std::int32_t>(two), config), Catch::Contains("the context holds 2"));
  CHECK_THROWS_WITH(gen.generate(ctx, std::string_view("a\xff"), config), Catch::Contains("UTF-8"));
}

TEST_CASE("FIM and repository prompts place special tokens by id", "[generation][fim]") {
  const auto& tok = tiny_tokenizer();
  const auto t = sc2::FimTokens::from(tok);
  const auto ids = sc2::fim_prompt(tok, "def f(x):\n    ", "\n    return y\n");
  // The same ids as the reference tokenizer gives for the concatenated string.
  CHECK(ids == tok.encode("<fim_prefix>def f(x):\n    <fim_suffix>\n    return y\n<fim_middle>"));
  CHECK(ids.front() == t.prefix);
  CHECK(ids.back() == t.middle);
  // Text of a special token inside the code is matched as that token, as the reference tokenizer does.
  const auto literal = sc2::fim_prompt(tok, "s = '<fim_suffix>'", "");
  CHECK(literal == tok.encode("<fim_prefix>s = '<fim_suffix>'<fim_suffix><fim_middle>"));

  const auto repo = sc2::repository_prompt(tok, "octo/demo", {{"a.py", "x = 1\n"}, {"b.py", "import a\n"}});
  CHECK(repo == tok.encode("<repo_name>octo/demo<file_sep>a.py\nx = 1\n<file_sep>b.py\nimport a\n"));
}

TEST_CASE("fill_in_the_middle stops at <file_sep> and returns the middle alone", "[generation][fim]") {
  const auto& tok = tiny_tokenizer();
  const auto t = sc2::FimTokens::from(tok);
  auto script = tok.encode("value = compute()");
  script.push_back(t.file_separator);
  ScriptedLM lm(script, static_cast<std::int64_t>(tok.id_limit()));
  sc2::Generator<ScriptedLM> gen(lm, tok);
  sc2::CpuContext ctx(1);
  const auto result = sc2::fill_in_the_middle(gen, ctx, tok, "def f():\n    ", "\n    return value\n", {});
  CHECK(result.stop_reason == sc2::StopReason::eos);
  CHECK(result.text == "value = compute()");
}
