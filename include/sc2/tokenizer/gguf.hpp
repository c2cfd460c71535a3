#pragma once
/// \file
/// A tokenizer from a GGUF file's `tokenizer.ggml.*` keys, as llama.cpp's
/// converter writes them for byte-level BPE models (StarCoder2's included).
///
///     tokenizer.ggml.model        "gpt2"                       byte-level BPE
///     tokenizer.ggml.pre          "starcoder" | "gpt-2" | "default"
///     tokenizer.ggml.tokens       V strings, by id             the vocabulary
///     tokenizer.ggml.token_type   V ints (optional)            3 control, 4 user-defined: added tokens
///     tokenizer.ggml.merges       "a b" strings, in rank order
///
/// The keys become the tokenizer.json they came from: the vocabulary and
/// merges as a BPE model, control tokens as special added tokens and
/// user-defined ones as plain added tokens, and the pre-tokenizer the name
/// stands for ("starcoder": each digit on its own, then ByteLevel with
/// GPT-2's split; "gpt-2"/"default": ByteLevel alone). So the ids are those
/// of Hugging Face `tokenizers` on the original tokenizer.json.
///
///     const sc2::Gguf g = sc2::Gguf::open("starcoder2-3b-Q8_0.gguf");
///     const sc2::Tokenizer tok = sc2::tokenizer_from_gguf(g);

#include <sc2/core/error.hpp>
#include <sc2/io/gguf.hpp>
#include <sc2/io/gguf_writer.hpp>
#include <sc2/tokenizer/tokenizer.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sc2 {

/// The tokenizer.json text `g`'s tokenizer keys stand for; an `sc2::Error`
/// naming the key when one is missing, of another kind, or not supported.
inline std::string tokenizer_json_from_gguf(const Gguf& g) {
  const auto model = g.optional_string("tokenizer.ggml.model");
  SC2_CHECK(model.has_value(), "'{}' has no tokenizer (no tokenizer.ggml.model)", g.describe());
  SC2_CHECK(*model == "gpt2", "'{}': tokenizer.ggml.model '{}' is not supported (sc2 reads byte-level BPE: 'gpt2')",
            g.describe(), *model);
  const std::string_view pre = g.optional_string("tokenizer.ggml.pre").value_or("default");
  nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                               {"use_regex", true}};
  nlohmann::json pre_tokenizer;
  if (pre == "starcoder") {
    pre_tokenizer = {{"type", "Sequence"},
                     {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level}}};
  } else {
    SC2_CHECK(pre == "gpt-2" || pre == "default",
              "'{}': tokenizer.ggml.pre '{}' is not supported (sc2 reads 'starcoder', 'gpt-2' and 'default')",
              g.describe(), pre);
    pre_tokenizer = byte_level;
  }

  const auto tokens = g.strings("tokenizer.ggml.tokens");
  std::vector<std::int64_t> types;
  if (g.find("tokenizer.ggml.token_type")) {
    types = g.integers("tokenizer.ggml.token_type");
    SC2_CHECK(types.size() == tokens.size(), "'{}': tokenizer.ggml.token_type has {} entries for {} tokens",
              g.describe(), types.size(), tokens.size());
  }
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  for (std::size_t id = 0; id < tokens.size(); ++id) {
    const std::string token(tokens[id]);
    SC2_CHECK(!vocab.contains(token), "'{}': token '{}' appears twice in tokenizer.ggml.tokens (ids {} and {})",
              g.describe(), token, vocab[token].get<std::size_t>(), id);
    vocab[token] = id;
    const std::int64_t type = types.empty() ? 1 : types[id];
    if (type == 3 || type == 4)  // control, user-defined
      added.push_back({{"id", id}, {"content", token}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", type == 4}, {"special", type == 3}});
  }
  nlohmann::json merges = nlohmann::json::array();
  if (g.find("tokenizer.ggml.merges"))
    for (const std::string_view m : g.strings("tokenizer.ggml.merges")) merges.push_back(std::string(m));

  const nlohmann::json json = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre_tokenizer},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", merges}}}};
  return json.dump();
}

/// The tokenizer of a GGUF file (see the file comment).
inline Tokenizer tokenizer_from_gguf(const Gguf& g) {
  return Tokenizer::from_json(tokenizer_json_from_gguf(g), g.describe());
}

/// Adds the `tokenizer.ggml.*` keys of a byte-level BPE tokenizer.json
/// (`json`, named `source` in errors) to `w`, as llama.cpp's converter writes
/// them: the tokens by id ("[PADn]", unused, for ids the file lacks), their
/// types (special added tokens control, other added tokens user-defined), the
/// merges, and the pre-tokenizer's name ("starcoder" for StarCoder2's
/// Digits-then-ByteLevel, "gpt-2" for ByteLevel alone).
inline void add_tokenizer_to_gguf(GgufWriter& w, std::string_view json, const std::string& source) {
  (void)Tokenizer::from_json(json, source);  // only what sc2 reads, checked as it is at load
  const nlohmann::json t = nlohmann::json::parse(json);
  const nlohmann::json& model = t.at("model");
  const nlohmann::json& pre = t.at("pre_tokenizer");
  std::string pre_name;
  if (pre.is_object() && pre.value("type", "") == "ByteLevel") {
    pre_name = "gpt-2";
  } else if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.at("pretokenizers").size() == 2 &&
             pre["pretokenizers"][0].value("type", "") == "Digits" &&
             pre["pretokenizers"][0].value("individual_digits", false) &&
             pre["pretokenizers"][1].value("type", "") == "ByteLevel") {
    pre_name = "starcoder";
  }
  SC2_CHECK(!pre_name.empty(), "{}: its pre_tokenizer has no GGUF name (sc2 writes StarCoder2's and GPT-2's)", source);
  std::map<std::int64_t, std::pair<std::string, std::int32_t>> by_id;  // id -> token, type
  for (const auto& [token, id] : model.at("vocab").items()) by_id[id.get<std::int64_t>()] = {token, 1};
  if (t.contains("added_tokens") && t["added_tokens"].is_array())
    for (const auto& a : t["added_tokens"])
      by_id[a.at("id").get<std::int64_t>()] = {a.at("content").get<std::string>(), a.value("special", false) ? 3 : 4};
  const std::int64_t count = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
  std::vector<std::string> tokens(static_cast<std::size_t>(count));
  std::vector<std::int32_t> types(static_cast<std::size_t>(count), 5);  // unused
  for (std::int64_t i = 0; i < count; ++i) tokens[static_cast<std::size_t>(i)] = fmt::format("[PAD{}]", i);
  for (const auto& [id, entry] : by_id) {
    tokens[static_cast<std::size_t>(id)] = entry.first;
    types[static_cast<std::size_t>(id)] = entry.second;
  }
  std::vector<std::string> merges;
  for (const auto& m : model.at("merges"))
    merges.push_back(m.is_string() ? m.get<std::string>() : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", pre_name);
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_i32s("tokenizer.ggml.token_type", types);
  w.add_strings("tokenizer.ggml.merges", merges);
}

/// The tokenizer of a checkpoint: `path`/tokenizer.json for a Hugging Face
/// directory, the file's own keys for a path ending in ".gguf".
inline Tokenizer load_tokenizer(const std::filesystem::path& path) {
  if (path.extension() == ".gguf") return tokenizer_from_gguf(Gguf::open(path));
  return Tokenizer::from_file(path / "tokenizer.json");
}

}  // namespace sc2
