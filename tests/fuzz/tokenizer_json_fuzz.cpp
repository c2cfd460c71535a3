// Fuzzes tokenizer.json loading: any bytes as tokenizer.json text. A tokenizer
// that loads must encode and decode without failing on its own ids, and stream
// decoding must equal whole decoding.

#include "fuzz_check.hpp"
#include "utf8_oracle.hpp"

#include <sc2/tokenizer/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace {

void exercise(const sc2::Tokenizer& tok, std::string_view text) {
  std::vector<std::int32_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const sc2::Error&) {
    return;  // e.g. an unk_token missing from the vocabulary, refused when a byte needs it
  }
  for (std::int32_t id : ids) SC2_FUZZ_CHECK(tok.id_to_token(id).has_value());
  for (bool skip : {false, true}) {
    const std::string whole = tok.decode(ids, {.skip_special_tokens = skip});
    SC2_FUZZ_CHECK(sc2::fuzz::is_valid_utf8(whole));
    sc2::DecodeStream stream(tok, {.skip_special_tokens = skip});
    std::string streamed;
    for (std::int32_t id : ids) streamed += stream.step(id);
    streamed += stream.flush();
    SC2_FUZZ_CHECK(streamed == whole);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const sc2::Tokenizer tok = sc2::Tokenizer::from_json(text, "fuzz/tokenizer.json");
    // Ids index a table: it never outgrows the file that declares them.
    SC2_FUZZ_CHECK(tok.id_limit() <= size);
    for (std::size_t id = 0; id < tok.id_limit(); ++id) {
      const auto token = tok.id_to_token(static_cast<std::int32_t>(id));
      if (!token) continue;
      SC2_FUZZ_CHECK(tok.token_to_id(*token).has_value());
      (void)tok.token_bytes(static_cast<std::int32_t>(id));
    }
    for (std::string_view sample : {"def f(x):\n    return x + 1\n", "a1b22c333  \t\n\n x", "日本語 naïve 🧑‍💻 ½",
                                    "<eos><|endoftext|>ab ba", ""})
      exercise(tok, sample);
    if (sc2::fuzz::is_valid_utf8(text)) exercise(tok, text);
  } catch (const sc2::Error&) {
    // A clear refusal is the expected outcome for most inputs.
  }
  return 0;
}
