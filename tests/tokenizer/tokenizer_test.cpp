// Tests of sc2::Tokenizer against ids made by Hugging Face `tokenizers`
// (tests/fixtures/tokenizer/reference.json, from tools/reference/make_tokenizer_fixtures.py).

#include <sc2/tokenizer/tokenizer.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

using nlohmann::json;

std::filesystem::path fixtures_dir() { return std::filesystem::path(SC2_FIXTURES_DIR) / "tokenizer"; }
std::filesystem::path source_dir() { return std::filesystem::path(SC2_SOURCE_DIR); }

std::string read_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  REQUIRE(file.good());
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

const json& reference() {
  static const json data = json::parse(read_file(fixtures_dir() / "reference.json"));
  return data;
}

/// The tokenizer.json of one fixture configuration (a file, or inline JSON, with its merge patch applied).
json configuration_json(const json& config) {
  json document = config.contains("json") ? config["json"]
                                          : json::parse(read_file(source_dir() / config["file"].get<std::string>()));
  if (!config["patch"].is_null()) document.merge_patch(config["patch"]);
  return document;
}

sc2::Tokenizer load_configuration(const json& config) {
  return sc2::Tokenizer::from_json(configuration_json(config).dump(), config["name"].get<std::string>());
}

const json& configuration(std::string_view name) {
  for (const json& config : reference()["tokenizers"])
    if (config["name"] == name) return config;
  FAIL("no fixture configuration " << name);
  throw;
}

const sc2::Tokenizer& sc2_tiny() {
  static const sc2::Tokenizer tok = sc2::Tokenizer::from_file(source_dir() / "models/sc2-tiny/tokenizer.json");
  return tok;
}

std::string text_of(std::size_t index) { return reference()["texts"][index]["text"].get<std::string>(); }

bool valid_utf8(std::string_view s) { return sc2::detail::find_invalid_utf8(s) == std::string_view::npos; }

}  // namespace

TEST_CASE("encode gives the ids of Hugging Face tokenizers for every text and configuration", "[tokenizer]") {
  const json& texts = reference()["texts"];
  REQUIRE(texts.size() > 300);
  std::size_t compared = 0;
  for (const json& config : reference()["tokenizers"]) {
    const std::string name = config["name"];
    INFO("tokenizer: " << name);
    const sc2::Tokenizer tok = load_configuration(config);
    CHECK(tok.vocab_size() == config["vocab_size"].get<std::size_t>());
    for (const auto& [index, expected] : config["ids"].items()) {
      const std::size_t i = std::stoul(index);
      INFO("text " << i << ": " << texts[i]["name"].get<std::string>());
      CHECK(tok.encode(texts[i]["text"].get<std::string>()) == expected.get<std::vector<std::int32_t>>());
      ++compared;
    }
  }
  CHECK(compared > 3000);
}

TEST_CASE("decode matches Hugging Face tokenizers, with and without skip_special_tokens", "[tokenizer]") {
  for (const json& config : reference()["tokenizers"]) {
    INFO("tokenizer: " << config["name"].get<std::string>());
    const sc2::Tokenizer tok = load_configuration(config);
    for (const auto& [index, ids_json] : config["ids"].items()) {
      const auto ids = ids_json.get<std::vector<std::int32_t>>();
      const std::string text = text_of(std::stoul(index));
      const std::string plain = config["decoded"].contains(index) ? config["decoded"][index].get<std::string>() : text;
      const std::string skipped = config["decoded_skip_special"].contains(index)
                                      ? config["decoded_skip_special"][index].get<std::string>()
                                      : plain;
      INFO("text " << index);
      CHECK(tok.decode(ids) == plain);
      CHECK(tok.decode(ids, {.skip_special_tokens = true}) == skipped);
    }
  }
}

TEST_CASE("sc2-tiny round-trips every reference text losslessly", "[tokenizer]") {
  const sc2::Tokenizer& tok = sc2_tiny();
  for (const json& entry : reference()["texts"]) {
    const std::string text = entry["text"];
    INFO(entry["name"].get<std::string>());
    CHECK(tok.decode(tok.encode(text)) == text);
  }
}

TEST_CASE("random valid UTF-8 strings round-trip", "[tokenizer]") {
  const sc2::Tokenizer& tok = sc2_tiny();
  std::mt19937 rng(20240601);
  // Code points from every kind of range, surrogates excluded.
  const std::vector<std::pair<char32_t, char32_t>> ranges = {
      {0x20, 0x7E},       {0x00, 0x1F},        {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFF},
      {0x10000, 0x1FFFF}, {0x20000, 0x10FFFF}, {' ', ' '},    {'0', '9'},      {0x2000, 0x200F}};
  std::uniform_int_distribution<std::size_t> pick_range(0, ranges.size() - 1);
  std::uniform_int_distribution<int> pick_length(0, 80);
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const int length = pick_length(rng);
    for (int k = 0; k < length; ++k) {
      const auto [low, high] = ranges[pick_range(rng)];
      const auto cp = std::uniform_int_distribution<std::uint32_t>(low, high)(rng);
      sc2::detail::append_utf8(text, static_cast<char32_t>(cp));
    }
    REQUIRE(valid_utf8(text));
    const std::vector<std::int32_t> ids = tok.encode(text);
    INFO("round " << round);
    REQUIRE(tok.decode(ids) == text);
    CHECK(std::all_of(ids.begin(), ids.end(), [&](std::int32_t id) { return id >= 0 && id < 8192; }));
  }
}

TEST_CASE("DecodeStream equals whole decode for every split of the id sequence", "[tokenizer]") {
  for (const char* name : {"sc2-tiny", "gpt2-style", "tiny byte_fallback"}) {
    const json& config = configuration(name);
    const sc2::Tokenizer tok = load_configuration(config);
    for (const bool skip : {false, true}) {
      for (const auto& [index, ids_json] : config["ids"].items()) {
        const auto ids = ids_json.get<std::vector<std::int32_t>>();
        INFO(name << " text " << index << " skip_special_tokens " << skip);
        const sc2::DecodeOptions options{.skip_special_tokens = skip};
        const std::string whole = tok.decode(ids, options);
        sc2::DecodeStream stream(tok, options);
        std::string streamed;
        bool all_valid = true;
        bool prefixes_agree = true;
        const bool every_prefix = ids.size() <= 400;
        for (std::size_t k = 0; k < ids.size(); ++k) {
          const std::string piece = stream.step(ids[k]);
          all_valid = all_valid && valid_utf8(piece);
          streamed += piece;
          if (every_prefix) {
            // Cut after k + 1 ids: what came out plus a flush is the decode of that prefix.
            sc2::DecodeStream cut = stream;
            const std::vector<std::int32_t> prefix(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k) + 1);
            prefixes_agree = prefixes_agree && streamed + cut.flush() == tok.decode(prefix, options);
          }
        }
        CHECK(all_valid);
        CHECK(prefixes_agree);
        CHECK(whole.starts_with(streamed));
        streamed += stream.flush();
        CHECK(streamed == whole);
        CHECK(stream.pending_bytes() == 0);
      }
    }
  }
}

TEST_CASE("DecodeStream holds back the bytes of an unfinished character", "[tokenizer]") {
  const sc2::Tokenizer& tok = sc2_tiny();
  // U+4E2D is E4 B8 AD: three single-byte tokens, byte-level characters 'ä', '¸', 'Ń'.
  const std::vector<std::int32_t> ids = {tok.token_to_id("a").value(), tok.token_to_id("\u00e4").value(),
                                         tok.token_to_id("\u00b8").value(), tok.token_to_id("\u0143").value()};
  sc2::DecodeStream stream(tok);
  CHECK(stream.step(ids[0]) == "a");
  CHECK(stream.step(ids[1]).empty());
  CHECK(stream.pending_bytes() == 1);
  CHECK(stream.step(ids[2]).empty());
  CHECK(stream.pending_bytes() == 2);
  CHECK(stream.step(ids[3]) == "\u4e2d");
  CHECK(stream.flush().empty());
  // An unfinished character at the end becomes one U+FFFD, as in the reference's decode.
  CHECK(stream.step(ids[1]).empty());
  CHECK(stream.flush() == "\ufffd");
  CHECK(tok.decode(std::vector<std::int32_t>{ids[1], ids[2]}) == "\ufffd");
  // A lead byte followed by a non-continuation byte: the lead byte alone is replaced.
  CHECK(tok.decode(std::vector<std::int32_t>{ids[1], ids[0]}) == "\ufffda");
}

TEST_CASE("lossy UTF-8 conversion replaces maximal subparts like Rust and Python", "[tokenizer]") {
  // Expected strings from Python's bytes.decode("utf-8", "replace"), which follows the same rule.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\xe4\xb8", "\ufffd"},
      {"a\xf0\x9f\x98", "a\ufffd"},
      {"\xc0\xaf", "\ufffd\ufffd"},
      {"\xed\xa0\x80x", "\ufffd\ufffd\ufffdx"},
      {"\xf4\x90\x80\x80", "\ufffd\ufffd\ufffd\ufffd"},
      {"\xe2\x82\xf0\x9f\x98\x80", "\ufffd\U0001f600"},
      {"\xff\xfe", "\ufffd\ufffd"},
      {"ok \xce\xbb", "ok \u03bb"},
  };
  for (const auto& [bytes, expected] : cases) {
    std::string out;
    CHECK(sc2::detail::append_utf8_lossy(out, bytes, true) == bytes.size());
    CHECK(out == expected);
  }
  std::string out;
  CHECK(sc2::detail::append_utf8_lossy(out, "ab\xf0\x9f", false) == 2);
  CHECK(out == "ab");
}

TEST_CASE("the ByteLevel regex and Digits split like the reference pre-tokenizer", "[tokenizer]") {
  // Expected pieces from tokenizers' ByteLevel(add_prefix_space=False).pre_tokenize_str (raw bytes shown).
  auto split = [](std::string_view text, bool digits) {
    std::vector<std::string> pieces;
    const auto& classes = sc2::detail::char_classes();
    auto regex = [&](std::string_view part) {
      sc2::detail::split_byte_level_regex(part, classes, [&](std::string_view p) { pieces.emplace_back(p); });
    };
    if (digits)
      sc2::detail::split_digits(text, true, classes, regex);
    else
      regex(text);
    return pieces;
  };
  using V = std::vector<std::string>;
  CHECK(split("Hello  world\t\tx \n\ny  ", false) ==
        V{"Hello", " ", " world", "\t", "\t", "x", " \n", "\n", "y", "  "});
  CHECK(split("I'm 's 'S x'sy '' 'll", false) ==
        V{"I", "'m", " '", "s", " '", "S", " x", "'s", "y", " ''", " '", "ll"});
  CHECK(split("a\u00a0\u00a0b  \u3000c", false) == V{"a", "\u00a0", "\u00a0", "b", "  ", "\u3000", "c"});
  CHECK(split("x=12+345", false) == V{"x", "=", "12", "+", "345"});
  CHECK(split("x=12+345", true) == V{"x", "=", "1", "2", "+", "3", "4", "5"});
  CHECK(split(" \u0663\u0664 \u00b2", false) == V{" \u0663\u0664", " \u00b2"});
  CHECK(split(" \u0663\u0664 \u00b2", true) == V{" ", "\u0663", "\u0664", " ", "\u00b2"});
}

TEST_CASE("BPE of long words equals the plain lowest-rank-leftmost merge loop", "[tokenizer]") {
  // Reference loop written from the definition, over the sc2-tiny merges.
  const json document = json::parse(read_file(source_dir() / "models/sc2-tiny/tokenizer.json"));
  std::map<std::string, std::int32_t> vocab = document["model"]["vocab"].get<std::map<std::string, std::int32_t>>();
  std::map<std::pair<std::int32_t, std::int32_t>, std::pair<std::size_t, std::int32_t>> merges;
  const json& merge_lines = document["model"]["merges"];
  for (std::size_t rank = 0; rank < merge_lines.size(); ++rank) {
    const std::string line = merge_lines[rank];
    const std::size_t space = line.find(' ');
    const std::string a = line.substr(0, space), b = line.substr(space + 1);
    merges[{vocab.at(a), vocab.at(b)}] = {rank, vocab.at(a + b)};
  }
  auto naive = [&](std::vector<std::int32_t> symbols) {
    for (;;) {
      std::size_t best = symbols.size();
      std::size_t best_rank = std::numeric_limits<std::size_t>::max();
      for (std::size_t k = 0; k + 1 < symbols.size(); ++k) {
        auto it = merges.find({symbols[k], symbols[k + 1]});
        if (it != merges.end() && it->second.first < best_rank) best = k, best_rank = it->second.first;
      }
      if (best == symbols.size()) return symbols;
      symbols[best] = merges.at({symbols[best], symbols[best + 1]}).second;
      symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    }
  };
  json config = configuration("sc2-tiny ByteLevel prefix space without regex");
  config["patch"]["pre_tokenizer"]["add_prefix_space"] = false;
  const sc2::Tokenizer whole_words = load_configuration(config);
  std::mt19937 rng(7);
  const std::string alphabet = "    \t\n\nee_tti(self)=,.0123456789abcdefghijklmnopqrstuvwxyzABC";
  for (int round = 0; round < 200; ++round) {
    std::string text;
    const int length = std::uniform_int_distribution<int>(1, 300)(rng);
    for (int k = 0; k < length; ++k)
      text += alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
    std::vector<std::int32_t> bytes;
    for (unsigned char c : text) {
      std::string byte_level;
      sc2::detail::append_utf8(byte_level, sc2::detail::kByteAlphabet.byte_to_char[c]);
      bytes.push_back(whole_words.token_to_id(byte_level).value());
    }
    INFO(text);
    CHECK(whole_words.encode(text) == naive(bytes));
  }
}

TEST_CASE("special tokens and lookups come from the file", "[tokenizer]") {
  const sc2::Tokenizer& tok = sc2_tiny();
  const json document = json::parse(read_file(source_dir() / "models/sc2-tiny/tokenizer.json"));
  CHECK(tok.vocab_size() == 8192);
  CHECK(tok.id_limit() == 8192);
  // StarCoder2's list, in order.
  const std::vector<std::string> names = {"<|endoftext|>",
                                          "<fim_prefix>",
                                          "<fim_middle>",
                                          "<fim_suffix>",
                                          "<fim_pad>",
                                          "<repo_name>",
                                          "<file_sep>",
                                          "<issue_start>",
                                          "<issue_comment>",
                                          "<issue_closed>",
                                          "<jupyter_start>",
                                          "<jupyter_text>",
                                          "<jupyter_code>",
                                          "<jupyter_output>",
                                          "<jupyter_script>",
                                          "<empty_output>",
                                          "<code_to_intermediate>",
                                          "<intermediate_to_code>",
                                          "<pr>",
                                          "<pr_status>",
                                          "<pr_is_merged>",
                                          "<pr_base>",
                                          "<pr_file>",
                                          "<pr_base_code>",
                                          "<pr_diff>",
                                          "<pr_diff_hunk>",
                                          "<pr_comment>",
                                          "<pr_event_id>",
                                          "<pr_review>",
                                          "<pr_review_state>",
                                          "<pr_review_comment>",
                                          "<pr_in_reply_to_review_id>",
                                          "<pr_in_reply_to_comment_id>",
                                          "<pr_diff_hunk_comment_line>",
                                          "<NAME>",
                                          "<EMAIL>",
                                          "<KEY>",
                                          "<PASSWORD>"};
  REQUIRE(tok.added_tokens().size() == names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    const sc2::AddedToken& added = tok.added_tokens()[i];
    CHECK(added.content == names[i]);
    CHECK(added.id == static_cast<std::int32_t>(i));
    CHECK(added.special);
    CHECK_FALSE(added.normalized);
    CHECK(tok.special_token_id(names[i]) == static_cast<std::int32_t>(i));
    CHECK(tok.is_special(static_cast<std::int32_t>(i)));
    CHECK(tok.encode(names[i]) == std::vector<std::int32_t>{static_cast<std::int32_t>(i)});
  }
  CHECK_FALSE(tok.special_token_id("Ġreturn").has_value());
  CHECK_FALSE(tok.special_token_id("<fim_prefix").has_value());
  CHECK_FALSE(tok.is_special(tok.token_to_id("Ġreturn").value()));
  // Every vocabulary entry maps to its id and back.
  std::size_t mismatches = 0;
  for (const auto& [token, id] : document["model"]["vocab"].items()) {
    if (tok.token_to_id(token) != id.get<std::int32_t>() || tok.id_to_token(id.get<std::int32_t>()) != token)
      ++mismatches;
  }
  CHECK(mismatches == 0);
  CHECK_FALSE(tok.token_to_id("no such token").has_value());
  CHECK_FALSE(tok.id_to_token(8192).has_value());
  CHECK_FALSE(tok.id_to_token(-1).has_value());
  CHECK(tok.token_bytes(tok.token_to_id("Ġreturn").value()) == " return");
  CHECK(tok.token_bytes(0) == "<|endoftext|>");
  CHECK(tok.decode(std::vector<std::int32_t>{1, tok.token_to_id("Ġreturn").value(), 0},
                   {.skip_special_tokens = true}) == " return");
  CHECK_THROWS_WITH(tok.decode(std::vector<std::int32_t>{8192}),
                    Catch::Contains("token id 8192") && Catch::Contains("not in the vocabulary"));
  CHECK_THROWS_WITH(tok.token_bytes(-3), Catch::Contains("token id -3"));
}

TEST_CASE("added token flags follow the reference", "[tokenizer]") {
  const sc2::Tokenizer tok = load_configuration(configuration("gpt2-style"));
  const auto id = [&](std::string_view t) { return tok.token_to_id(t).value(); };
  // "he" is both a vocabulary entry and an added token: it keeps the vocabulary id.
  const auto added = tok.added_tokens();
  const auto he = std::find_if(added.begin(), added.end(), [](const sc2::AddedToken& t) { return t.content == "he"; });
  REQUIRE(he != added.end());
  CHECK(he->id < 1024);
  CHECK(tok.id_to_token(he->id) == "he");
  const auto the =
      std::find_if(added.begin(), added.end(), [](const sc2::AddedToken& t) { return t.content == "the"; });
  REQUIRE(the != added.end());
  CHECK(the->single_word);
  CHECK(the->normalized);
  CHECK(the->id >= 1024);
  CHECK(tok.special_token_id("<mask>") == id("<mask>"));
  CHECK_FALSE(tok.special_token_id("[RS]").has_value());
  // lstrip takes in the spaces before <mask>; rstrip the spaces after [RS].
  const std::vector<std::int32_t> mask = tok.encode("a   <mask>");
  CHECK(mask.back() == id("<mask>"));
  CHECK(tok.decode(mask) == " a<mask>");
  CHECK(tok.decode(tok.encode("[RS]   b")) == "[RS] b");
  // single_word: "word" inside "swords" stays text.
  const std::vector<std::int32_t> inside = tok.encode("swords");
  CHECK(std::count(inside.begin(), inside.end(), id("word")) == 0);
  const std::vector<std::int32_t> alone = tok.encode("a word.");
  CHECK(std::count(alone.begin(), alone.end(), id("word")) == 1);
}

TEST_CASE("encode refuses text that is not valid UTF-8, giving the byte offset", "[tokenizer]") {
  const sc2::Tokenizer& tok = sc2_tiny();
  CHECK_THROWS_WITH(tok.encode("abc\xff"
                               "def"),
                    Catch::Contains("not valid UTF-8") && Catch::Contains("byte offset 3") && Catch::Contains("0xFF"));
  CHECK_THROWS_WITH(tok.encode("caf\xc3"), Catch::Contains("byte offset 3"));
  CHECK_THROWS_WITH(tok.encode("ok \xc0\xaf"), Catch::Contains("byte offset 3") && Catch::Contains("0xC0"));
  CHECK_THROWS_WITH(tok.encode("\xed\xa0\x80"), Catch::Contains("byte offset 0"));
  CHECK_THROWS_WITH(tok.encode("12345678\xf4\x90\x80\x80"), Catch::Contains("byte offset 8"));
  CHECK_THROWS_WITH(tok.encode(std::string("\xe4\xb8\xad\xe4\xb8", 5)), Catch::Contains("byte offset 3"));
  CHECK_NOTHROW(tok.encode(std::string("a\0b", 3)));
  CHECK(tok.encode("").empty());
}

namespace {

json minimal_tokenizer() {
  return json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [{"id": 3, "content": "<eos>", "single_word": false, "lstrip": false, "rstrip": false,
                      "normalized": false, "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
    "post_processor": null,
    "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
              "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
              "vocab": {"a": 0, "b": 1, "ab": 2, "<eos>": 3}, "merges": ["a b"]}
  })");
}

std::string patched(const json& patch) {
  json document = minimal_tokenizer();
  document.merge_patch(patch);
  return document.dump();
}

}  // namespace

TEST_CASE("a minimal tokenizer.json loads and both merge forms agree", "[tokenizer]") {
  const sc2::Tokenizer strings = sc2::Tokenizer::from_json(minimal_tokenizer().dump());
  const sc2::Tokenizer pairs =
      sc2::Tokenizer::from_json(patched({{"model", {{"merges", json::array({json::array({"a", "b"})})}}}}));
  for (const sc2::Tokenizer* tok : {&strings, &pairs}) {
    CHECK(tok->encode("abab<eos>ba") == std::vector<std::int32_t>{2, 2, 3, 1, 0});
    CHECK(tok->decode(std::vector<std::int32_t>{2, 3}) == "ab<eos>");
    CHECK(tok->vocab_size() == 4);
  }
  // Bytes that have no token are dropped, as in the reference (no unk_token).
  CHECK(strings.encode("a c b") == std::vector<std::int32_t>{0, 1});
}

TEST_CASE("bad tokenizer.json files give errors that say what is wrong", "[tokenizer]") {
  using Catch::Contains;
  auto load = [](const std::string& text) { return sc2::Tokenizer::from_json(text, "bad.json"); };

  CHECK_THROWS_WITH(load("{\"model\": {"), Contains("bad.json") && Contains("malformed JSON"));
  CHECK_THROWS_WITH(load("[1, 2]"),
                    Contains("the top level") && Contains("expected an object") && Contains("found array"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"merges", {"a c"}}}}})),
                    Contains("model.merges[0]") && Contains("token 'c' is not in model.vocab"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"merges", {"b a"}}}}})),
                    Contains("model.merges[0]") && Contains("merged token 'ba' is not in model.vocab"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"merges", {"a b c"}}}}})),
                    Contains("model.merges[0]") && Contains("two tokens separated by one space"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"merges", json::array({json::array({"a", "b"}), "a b"})}}}})),
                    Contains("model.merges[1]") && Contains("pair of strings"));
  CHECK_THROWS_WITH(load(patched({{"normalizer", {{"type", "NFC"}}}})),
                    Contains("normalizer of type 'NFC' is not supported"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"type", "WordPiece"}}}})),
                    Contains("model of type 'WordPiece' is not supported"));
  CHECK_THROWS_WITH(load(patched({{"pre_tokenizer", {{"type", "Whitespace"}}}})),
                    Contains("pre_tokenizer of type 'Whitespace' is not supported"));
  CHECK_THROWS_WITH(
      load(patched({{"pre_tokenizer",
                     {{"type", "Sequence"},
                      {"pretokenizers", json::array({{{"type", "ByteLevel"}, {"add_prefix_space", false}},
                                                     {{"type", "Digits"}, {"individual_digits", true}}})}}}})),
      Contains("pre_tokenizer.pretokenizers[1]") && Contains("after ByteLevel"));
  CHECK_THROWS_WITH(load(patched({{"pre_tokenizer", nullptr}})), Contains("pre_tokenizer is null"));
  CHECK_THROWS_WITH(load(patched({{"decoder", {{"type", "WordPiece"}}}})),
                    Contains("decoder of type 'WordPiece' is not supported"));
  CHECK_THROWS_WITH(load(patched({{"decoder", nullptr}})), Contains("decoder is null"));
  CHECK_THROWS_WITH(load(patched({{"post_processor", {{"type", "TemplateProcessing"}}}})),
                    Contains("post_processor of type 'TemplateProcessing' is not supported"));
  CHECK_THROWS_WITH(load(patched({{"truncation", {{"max_length", 8}}}})), Contains("truncation is not supported"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"dropout", 0.1}}}})), Contains("model.dropout 0.1 is not supported"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"continuing_subword_prefix", "##"}}}})),
                    Contains("model.continuing_subword_prefix \"##\" is not supported"));
  CHECK_THROWS_WITH(load(patched({{"model", nullptr}})), Contains("missing field 'model'"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"vocab", nullptr}}}})), Contains("model: missing field 'vocab'"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"merges", nullptr}}}})), Contains("model: missing field 'merges'"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"vocab", {{"a", -1}}}}}})),
                    Contains("model.vocab[\"a\"]") && Contains("expected a token id"));
  CHECK_THROWS_WITH(load(patched({{"model", {{"vocab", {{"b", 0}}}}}})), Contains("id 0 is given to both"));
  CHECK_THROWS_WITH(load(patched({{"version", "2.0"}})), Contains("version") && Contains("\"2.0\""));
  json token_without_flag = minimal_tokenizer()["added_tokens"][0];
  token_without_flag.erase("lstrip");
  CHECK_THROWS_WITH(load(patched({{"added_tokens", json::array({token_without_flag})}})),
                    Contains("added_tokens[0]") && Contains("missing field 'lstrip'"));
  json moved_token = minimal_tokenizer()["added_tokens"][0];
  moved_token["id"] = 7;
  CHECK_THROWS_WITH(load(patched({{"added_tokens", json::array({moved_token})}})),
                    Contains("'<eos>' is listed with id 7") && Contains("gives it id 3"));
  CHECK_THROWS_WITH(sc2::Tokenizer::from_file(source_dir() / "no/such/tokenizer.json"),
                    Contains("no/such/tokenizer.json") && Contains("cannot open"));
  // An unk_token that is not in the vocabulary fails only when a byte needs it, as in the reference.
  const sc2::Tokenizer missing_unk = load(patched({{"model", {{"unk_token", "<unk>"}}}}));
  CHECK(missing_unk.encode("ab") == std::vector<std::int32_t>{2});
  CHECK_THROWS_WITH(missing_unk.encode("ac"), Contains("unk_token '<unk>' is not in model.vocab"));
}
