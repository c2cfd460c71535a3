// sc2-quantize: a checkpoint directory to GGUF. Its tensors are the bytes gguf-py writes for the same
// weights, its tokenizer keys give Hugging Face's ids, and sc2-generate runs the file it writes.

#include "support.hpp"

#include <sc2/sc2.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <span>
#include <string>
#include <vector>

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

TEST_CASE("sc2-quantize makes llama-quantize's Q8_0 and Q4_K_M of the bundled model, type and byte", "[examples][gguf][bundled]") {
  // tools/reference/make_quant_mix_fixture.py: llama.cpp's converter, then its llama-quantize.
  const auto dir = std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny";
  const auto fnv1a64 = [](std::span<const std::byte> bytes) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (const std::byte b : bytes) h = (h ^ static_cast<std::uint8_t>(b)) * 0x100000001b3ull;
    return fmt::format("{:016x}", h);
  };
  for (const char* type : {"q8_0", "q4_k_m"}) {
    DYNAMIC_SECTION(type) {
      const auto out = temp_gguf(std::string("sc2-tiny-") + type);
      const auto o = sc2::test::run_program(SC2_QUANTIZE, dir.string() + " " + out.string() + " --type " + type);
      INFO(o.err);
      REQUIRE(o.status == 0);
      const auto want = nlohmann::json::parse(sc2::read_text_file(sc2::test::fixture(std::string("quant/sc2-tiny-") + type + ".json")));
      const sc2::Gguf got = sc2::Gguf::open(out);
      REQUIRE(got.tensors().size() == want["tensors"].size());
      int q6_k = 0;
      for (const auto& [name, w] : want["tensors"].items()) {
        INFO(name);
        const sc2::GgufTensor& g = got.tensor(name);
        CHECK(g.type.name == w["type"].get<std::string>());
        CHECK(g.shape == w["shape"].get<std::vector<std::int64_t>>());
        CHECK(fnv1a64(g.bytes) == w["fnv1a64"].get<std::string>());
        q6_k += g.type.name == "Q6_K";
      }
      CHECK(q6_k == (std::string(type) == "q4_k_m" ? 5 : 0));  // the tied embedding, attn_v and ffn_down of 2 layers
      std::filesystem::remove(out);
    }
  }
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

TEST_CASE("the bundled model's held-out loss at each GGML format", "[examples][gguf][bundled][quantize-loss]") {
  const auto fixture = nlohmann::json::parse(sc2::read_text_file(sc2::test::fixture("bundled/heldout.json")));
  const auto loss = [&](const std::filesystem::path& model, sc2::cpu::Isa isa = sc2::cpu::default_isa()) {
    sc2::CpuContext ctx(2);
    ctx.set_isa(isa);
    const auto lm = sc2::Starcoder2ForCausalLM::load(ctx, model);
    const std::int64_t V = lm.vocab_size();
    double total = 0.0;
    std::int64_t positions = 0;
    for (const auto& block : fixture.at("blocks")) {
      const auto ids = block.get<std::vector<std::int32_t>>();
      const auto T = static_cast<std::int64_t>(ids.size());
      std::vector<float> logits(static_cast<std::size_t>(T * V));
      auto cache = lm.make_cache();  // each block on its own
      lm.forward_all(ctx, ids, cache, sc2::MatrixView(logits.data(), {T, V}));
      for (std::int64_t t = 0; t + 1 < T; ++t) {
        const float* row = logits.data() + t * V;
        const double top = *std::max_element(row, row + V);
        double sum = 0.0;
        for (std::int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - top);
        total += top + std::log(sum) - static_cast<double>(row[ids[static_cast<std::size_t>(t + 1)]]);
      }
      positions += T - 1;
    }
    return total / static_cast<double>(positions);
  };
  const auto dir = std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny";
  const double bf16 = loss(dir);
  std::printf("held-out loss over 16 blocks: bf16 %.6f\n", bf16);
  // Q8_0 has the target; the 4- and 5-bit bounds catch a broken format, not a rounding.
  const bool integer = sc2::cpu::isa_supported(sc2::cpu::Isa::avx512_vnni);
  for (const auto& [type, bound] : {std::pair{"q8_0", 0.005}, {"q6_k", 0.005}, {"q5_k", 0.02}, {"q4_k", 0.02},
                                    {"q4_k_m", 0.02}, {"q4_0", 0.02}}) {
    const auto out = temp_gguf(std::string("sc2-tiny-loss-") + type);
    const auto o = sc2::test::run_program(SC2_QUANTIZE, dir.string() + " " + out.string() + " --type " + type);
    REQUIRE(o.status == 0);
    const double l = loss(out);
    std::printf("held-out loss over 16 blocks: %s %.6f (%+.4f%% vs bf16)\n", type, l, 100.0 * (l - bf16) / bf16);
    INFO(type << ": " << l << " against bf16 " << bf16);
    CHECK(std::abs(l - bf16) <= bound * bf16);
    if (integer) {  // the opt-in integer path: int8 activations add their own rounding
      const double li = loss(out, sc2::cpu::Isa::avx512_vnni);
      std::printf("held-out loss over 16 blocks: %s on avx512vnni %.6f (%+.4f%% vs bf16)\n", type, li,
                  100.0 * (li - bf16) / bf16);
      CHECK(std::abs(li - bf16) <= (bound + 0.005) * bf16);
    }
    std::filesystem::remove(out);
  }
}
#endif
