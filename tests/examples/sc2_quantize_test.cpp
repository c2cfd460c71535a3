// sc2-quantize: a checkpoint directory to GGUF. Its tensors are the bytes gguf-py writes for the same
// weights, its tokenizer keys give Hugging Face's ids, and sc2-generate runs the file it writes.

#include "support.hpp"

#include <sc2/sc2.hpp>

#include <cstring>

#include <unistd.h>

#if defined(SC2_QUANTIZE) && defined(SC2_GENERATE)
namespace {

std::filesystem::path temp_gguf(const std::string& stem) {
  return std::filesystem::temp_directory_path() / (stem + "-" + std::to_string(::getpid()) + ".gguf");
}

}  // namespace

TEST_CASE("sc2-quantize writes the tensors and keys gguf-py writes for the same weights", "[examples][gguf]") {
  const auto out = temp_gguf("sc2-quantize-q8_0");
  const auto o = sc2::test::run_program(SC2_QUANTIZE, sc2::test::fixture("models/gqa1_tied_window8_f32").string() + " " +
                                                          out.string() + " --type q8_0");
  INFO(o.err);
  REQUIRE(o.status == 0);
  // tools/reference/make_gguf_fixtures.py: gguf-py's tensor names and keys, gguf.quants.quantize's bytes.
  const sc2::Gguf got = sc2::Gguf::open(out);
  const sc2::Gguf want = sc2::Gguf::open(sc2::test::fixture("gguf/starcoder2-tied-window8-Q8_0.gguf"));
  REQUIRE(got.tensors().size() == want.tensors().size());
  for (const sc2::GgufTensor* w : want.tensors()) {
    INFO(w->name);
    const sc2::GgufTensor& g = got.tensor(w->name);
    CHECK(g.type.type == w->type.type);
    CHECK(g.shape == w->shape);
    CHECK((g.bytes.size() == w->bytes.size() && std::memcmp(g.bytes.data(), w->bytes.data(), g.bytes.size()) == 0));
  }
  for (const char* key : {"starcoder2.context_length", "starcoder2.embedding_length", "starcoder2.feed_forward_length",
                          "starcoder2.block_count", "starcoder2.attention.head_count",
                          "starcoder2.attention.head_count_kv", "starcoder2.attention.sliding_window"})
    CHECK(got.unsigned_integer(key) == want.unsigned_integer(key));
  CHECK(got.optional_number("starcoder2.rope.freq_base") == want.optional_number("starcoder2.rope.freq_base"));
  CHECK(got.optional_string("general.architecture") == "starcoder2");
  std::filesystem::remove(out);

  const auto bad = sc2::test::run_program(SC2_QUANTIZE, sc2::test::fixture("models/gqa1_tied_window8_f32").string() +
                                                            " " + out.string() + " --type q3_k");
  CHECK(bad.status != 0);
  CHECK(bad.err.find("unknown --type 'q3_k'") != std::string::npos);
}

TEST_CASE("the bundled model through sc2-quantize: its GGUF tokenizer and sc2-generate on it", "[examples][gguf][bundled]") {
  const auto dir = std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny";
  const auto out = temp_gguf("sc2-tiny-q4_k");
  const auto o = sc2::test::run_program(SC2_QUANTIZE, dir.string() + " " + out.string() + " --type q4_k");
  INFO(o.err);
  REQUIRE(o.status == 0);

  const sc2::Tokenizer json = sc2::Tokenizer::from_file(dir / "tokenizer.json");
  const sc2::Tokenizer gguf = sc2::load_tokenizer(out);
  for (const char* text : {"def add(a, b):\n    return a + b\n", "<fim_prefix>x = 12345<fim_suffix>\n<fim_middle>",
                           "import os\n\n\nclass Ünïcode:  # 🙂\n\tpass\n"}) {
    CHECK(gguf.encode(text) == json.encode(text));
  }

  const auto g = sc2::test::run_program(SC2_GENERATE, "--model " + out.string() +
                                                           " --prompt 'def add(a, b):\\n' --max-new-tokens 16 --threads 2 --quiet");
  INFO(g.err);
  REQUIRE(g.status == 0);
  const auto lm = sc2::Starcoder2ForCausalLM::load(out);
  sc2::Generator generator(lm, gguf);
  sc2::CpuContext ctx(2);
  sc2::GenerationConfig config;
  config.max_new_tokens = 16;
  CHECK(g.out == "def add(a, b):\n" + generator.generate(ctx, "def add(a, b):\n", config).text + "\n");
  std::filesystem::remove(out);
}
#endif
