// Fuzzes encode and decode of the bundled sc2-tiny tokenizer. The first byte
// picks what the rest is:
//   0, 1  text: valid UTF-8 must round-trip through encode and decode, also when
//         decoded as a stream; invalid UTF-8 must be refused with sc2::Error;
//   2     ids in range (16-bit values modulo the id limit), decoded whole and as a stream;
//   3     raw 32-bit ids, any value: decode gives valid UTF-8 or refuses with sc2::Error.

#include "fuzz_check.hpp"
#include "utf8_oracle.hpp"

#include <sc2/tokenizer/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace {

const sc2::Tokenizer& tokenizer() {
  static const sc2::Tokenizer tok =
      sc2::Tokenizer::from_file(std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny/tokenizer.json");
  return tok;
}

std::string decode_streamed(const sc2::Tokenizer& tok, const std::vector<std::int32_t>& ids, bool skip) {
  sc2::DecodeStream stream(tok, {.skip_special_tokens = skip});
  std::string text;
  for (std::int32_t id : ids) {
    const std::string piece = stream.step(id);
    SC2_FUZZ_CHECK(sc2::fuzz::is_valid_utf8(piece));
    text += piece;
  }
  return text + stream.flush();
}

void fuzz_text(const sc2::Tokenizer& tok, std::string_view text) {
  if (!sc2::fuzz::is_valid_utf8(text)) {
    bool refused = false;
    try {
      (void)tok.encode(text);
    } catch (const sc2::Error&) {
      refused = true;
    }
    SC2_FUZZ_CHECK(refused);
    return;
  }
  const std::vector<std::int32_t> ids = tok.encode(text);
  SC2_FUZZ_CHECK(text.empty() == ids.empty());
  SC2_FUZZ_CHECK(tok.decode(ids) == text);
  SC2_FUZZ_CHECK(decode_streamed(tok, ids, false) == text);
}

void fuzz_ids(const sc2::Tokenizer& tok, const std::vector<std::int32_t>& ids) {
  for (bool skip : {false, true}) {
    std::string whole;
    try {
      whole = tok.decode(ids, {.skip_special_tokens = skip});
    } catch (const sc2::Error&) {
      for (std::int32_t id : ids)
        if (!tok.id_to_token(id)) return;  // refused because of an id it does not have
      SC2_FUZZ_CHECK(false);
    }
    SC2_FUZZ_CHECK(sc2::fuzz::is_valid_utf8(whole));
    SC2_FUZZ_CHECK(decode_streamed(tok, ids, skip) == whole);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const sc2::Tokenizer& tok = tokenizer();
  const std::uint8_t mode = data[0] & 3;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::int32_t> ids;
  switch (mode) {
    case 0:
    case 1:
      fuzz_text(tok, rest);
      break;
    case 2:
      for (std::size_t i = 0; i + 2 <= rest.size(); i += 2) {
        std::uint16_t v;
        std::memcpy(&v, rest.data() + i, 2);
        ids.push_back(static_cast<std::int32_t>(v % tok.id_limit()));
      }
      fuzz_ids(tok, ids);
      break;
    default:
      for (std::size_t i = 0; i + 4 <= rest.size(); i += 4) {
        std::int32_t v;
        std::memcpy(&v, rest.data() + i, 4);
        ids.push_back(v);
      }
      fuzz_ids(tok, ids);
      break;
  }
  return 0;
}
