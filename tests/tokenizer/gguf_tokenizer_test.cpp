// The tokenizer of a GGUF file (tokenizer.ggml.* keys written as llama.cpp's converter writes them, by
// tools/reference/make_gguf_fixtures.py) gives Hugging Face's ids for the tokenizer.json it came from.

#include "support.hpp"

#include <sc2/tokenizer/gguf.hpp>

#include <nlohmann/json.hpp>

TEST_CASE("a GGUF tokenizer gives the ids Hugging Face gives for its tokenizer.json", "[tokenizer][gguf]") {
  const sc2::Gguf g = sc2::Gguf::open(sc2::test::fixture("gguf/tokenizer-sc2-tiny.gguf"));
  const sc2::Tokenizer tok = sc2::tokenizer_from_gguf(g);
  const sc2::Tokenizer json = sc2::Tokenizer::from_file(std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny/tokenizer.json");
  CHECK(tok.vocab_size() == json.vocab_size());
  CHECK(tok.special_token_id("<fim_prefix>") == json.special_token_id("<fim_prefix>"));
  CHECK(tok.special_token_id("<|endoftext|>") == json.special_token_id("<|endoftext|>"));

  // Hugging Face's ids for every text of the tokenizer fixtures (tools/reference/make_tokenizer_fixtures.py).
  const auto reference = nlohmann::json::parse(sc2::read_text_file(sc2::test::fixture("tokenizer/reference.json")));
  const nlohmann::json* config = nullptr;
  for (const auto& c : reference.at("tokenizers"))
    if (c.at("name") == "sc2-tiny") config = &c;
  REQUIRE(config != nullptr);
  std::size_t texts = 0;
  for (const auto& [index, want] : config->at("ids").items()) {
    const std::string text = reference.at("texts").at(std::stoul(index)).at("text").get<std::string>();
    INFO("text " << index);
    const auto ids = tok.encode(text);
    CHECK(std::vector<std::int64_t>(ids.begin(), ids.end()) == want.get<std::vector<std::int64_t>>());
    CHECK(tok.decode(ids) == json.decode(ids));
    ++texts;
  }
  CHECK(texts > 300);
}

TEST_CASE("a GGUF tokenizer of a kind sc2 does not read is refused by name", "[tokenizer][gguf]") {
  CHECK_THROWS_WITH(sc2::tokenizer_from_gguf(sc2::Gguf::open(sc2::test::fixture("gguf/assorted.gguf"))),
                    Catch::Matchers::Contains("has no tokenizer (no tokenizer.ggml.model)"));
}
