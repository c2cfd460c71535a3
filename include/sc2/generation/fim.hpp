#pragma once
/// \file
/// Fill-in-the-middle and repository-context prompts, in StarCoder2's formats.
///
///     FIM (prefix-suffix-middle):  <fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>
///                                  the model writes the middle, then <|endoftext|> or <file_sep>
///     repository context:          <repo_name>{name}<file_sep>{path}\n{code}<file_sep>{path}\n{code}...
///
/// Special tokens are inserted by id (read from the tokenizer, never hard-coded)
/// and the text between them is encoded on its own. This gives the ids the
/// reference tokenizer gives for the concatenated string, whose special tokens
/// split the text the same way; like the reference, text of a special token
/// inside the code (say "<file_sep>" in a string literal) is read as that token.

#include <sc2/core/error.hpp>
#include <sc2/generation/generator.hpp>
#include <sc2/tokenizer/tokenizer.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sc2 {

/// The special-token ids the FIM and repository formats use.
struct FimTokens {
  std::int32_t prefix = -1;        ///< `<fim_prefix>`
  std::int32_t suffix = -1;        ///< `<fim_suffix>`
  std::int32_t middle = -1;        ///< `<fim_middle>`
  std::int32_t file_separator = -1;  ///< `<file_sep>`
  std::int32_t repo_name = -1;     ///< `<repo_name>`
  std::int32_t end_of_text = -1;   ///< `<|endoftext|>`

  /// Reads the ids from `tokenizer`; an `sc2::Error` names any that is missing.
  static FimTokens from(const Tokenizer& tokenizer) {
    auto id = [&](std::string_view name) {
      const auto found = tokenizer.special_token_id(name);
      SC2_CHECK(found.has_value(), "{} has no '{}' token, needed for fill-in-the-middle", tokenizer.source(), name);
      return *found;
    };
    return {id("<fim_prefix>"), id("<fim_suffix>"), id("<fim_middle>"),
            id("<file_sep>"),   id("<repo_name>"),  id("<|endoftext|>")};
  }
};

/// `<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>` as ids.
inline std::vector<std::int32_t> fim_prompt(const Tokenizer& tokenizer, std::string_view prefix,
                                            std::string_view suffix) {
  const FimTokens t = FimTokens::from(tokenizer);
  std::vector<std::int32_t> ids{t.prefix};
  for (auto id : tokenizer.encode(prefix)) ids.push_back(id);
  ids.push_back(t.suffix);
  for (auto id : tokenizer.encode(suffix)) ids.push_back(id);
  ids.push_back(t.middle);
  return ids;
}

/// One file of a repository-context prompt.
struct RepoFile {
  std::string path;  ///< path inside the repository
  std::string code;  ///< its contents
};

/// `<repo_name>{name}<file_sep>{path}\n{code}...` as ids; the last file's code is
/// where generation continues (leave it partial to complete it).
inline std::vector<std::int32_t> repository_prompt(const Tokenizer& tokenizer, std::string_view repo_name,
                                                   const std::vector<RepoFile>& files) {
  const FimTokens t = FimTokens::from(tokenizer);
  std::vector<std::int32_t> ids{t.repo_name};
  for (auto id : tokenizer.encode(repo_name)) ids.push_back(id);
  for (const auto& file : files) {
    ids.push_back(t.file_separator);
    for (auto id : tokenizer.encode(file.path + "\n" + file.code)) ids.push_back(id);
  }
  return ids;
}

/// A request that fills the hole between `prefix` and `suffix`: generation stops at
/// `<file_sep>` or `<|endoftext|>` (besides the config's own stop rules; `model_eos` are the
/// model's end ids when the config names none) and the text is the middle alone.
inline Request fim_request(const Tokenizer& tokenizer, std::string_view prefix, std::string_view suffix,
                           GenerationConfig config, const std::vector<std::int32_t>& model_eos) {
  const FimTokens t = FimTokens::from(tokenizer);
  if (config.eos_token_ids.empty()) config.eos_token_ids = model_eos;
  for (std::int32_t stop : {t.end_of_text, t.file_separator})
    if (std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), stop) == config.eos_token_ids.end())
      config.eos_token_ids.push_back(stop);
  Request request;
  request.prompt = fim_prompt(tokenizer, prefix, suffix);
  request.config = std::move(config);
  return request;
}

/// Fills the hole between `prefix` and `suffix` (see `fim_request`).
template <class LM>
GenerationResult fill_in_the_middle(Generator<LM>& generator, typename LM::Context& ctx, const Tokenizer& tokenizer,
                                    std::string_view prefix, std::string_view suffix, GenerationConfig config,
                                    const StreamCallback& on_text = {}) {
  const std::vector<int>& eos = generator.model().config().eos_token_ids;
  const Request request =
      fim_request(tokenizer, prefix, suffix, std::move(config), std::vector<std::int32_t>(eos.begin(), eos.end()));
  return generator.generate(ctx, std::span<const std::int32_t>(request.prompt), request.config, on_text);
}

}  // namespace sc2
