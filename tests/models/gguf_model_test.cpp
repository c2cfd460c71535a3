// StarCoder2 from GGUF files: the same logits as the Hugging Face checkpoint of the same weights
// (tools/reference/make_gguf_fixtures.py names the tensors and keys with gguf-py's own StarCoder2 map).

#include "support.hpp"

#include <sc2/sc2.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

// Every row's logits of `ids` through a model loaded from `path`, on `isa`.
std::vector<float> all_logits(const std::filesystem::path& path, const std::vector<std::int32_t>& ids,
                              sc2::cpu::Isa isa = sc2::cpu::default_isa()) {
  sc2::CpuContext ctx(2);
  ctx.set_isa(isa);
  const auto lm = sc2::Starcoder2ForCausalLM::load(ctx, path);
  auto cache = lm.make_cache();
  std::vector<float> out(ids.size() * static_cast<std::size_t>(lm.vocab_size()));
  lm.forward_all(ctx, ids, cache, sc2::Matrix<float, sc2::Host>(out.data(), {static_cast<std::int64_t>(ids.size()), lm.vocab_size()}));
  return out;
}

std::vector<std::int32_t> prompt(const char* fixture) {
  const auto reference = sc2::SafetensorsFile::open(sc2::test::fixture(fixture) / "reference.safetensors");
  return sc2::test::read_reference(reference, "input_ids").ints;
}

}  // namespace

TEST_CASE("a StarCoder2 GGUF file reads its hyperparameters, names and window", "[gguf][models]") {
  const auto ckpt = sc2::Checkpoint::open(sc2::test::fixture("gguf/starcoder2-tied-window8-F32.gguf"));
  const auto want = sc2::Checkpoint::open(sc2::test::fixture("models/gqa1_tied_window8_f32")).config;
  const sc2::ModelConfig& c = ckpt.config;
  CHECK(c.vocab_size == want.vocab_size);
  CHECK(c.hidden_size == want.hidden_size);
  CHECK(c.intermediate_size == want.intermediate_size);
  CHECK(c.num_hidden_layers == want.num_hidden_layers);
  CHECK(c.num_attention_heads == want.num_attention_heads);
  CHECK(c.num_key_value_heads == want.num_key_value_heads);
  CHECK(c.head_dim == want.head_dim);
  CHECK(c.sliding_window == 8);
  CHECK(static_cast<float>(c.rope_theta) == static_cast<float>(want.rope_theta));
  CHECK(c.use_bias);
  CHECK(c.tie_word_embeddings);
  CHECK(c.bos_token_id == want.bos_token_id);
  CHECK(ckpt.tensors.find("model.layers.1.mlp.c_proj.bias") != nullptr);
  CHECK(sc2::starcoder2_name_from_gguf("blk.12.attn_output.weight") == "model.layers.12.self_attn.o_proj.weight");
  CHECK(sc2::starcoder2_name_from_gguf("blk.x.attn_q.weight") == "blk.x.attn_q.weight");

  // No window key (llama.cpp's converter writes none): StarCoder2's 4096, or what the caller says.
  const auto untied = sc2::Checkpoint::open(sc2::test::fixture("gguf/starcoder2-untied-nobias-F32.gguf"));
  CHECK(untied.config.sliding_window == 4096);
  CHECK(!untied.config.use_bias);
  CHECK(!untied.config.tie_word_embeddings);
  const auto none = sc2::Checkpoint::open(sc2::test::fixture("gguf/starcoder2-untied-nobias-F32.gguf"), {},
                                          {.default_sliding_window = std::nullopt});
  CHECK(!none.config.sliding_window);
}

TEST_CASE("a StarCoder2 GGUF model computes the logits of the same weights in safetensors", "[gguf][models]") {
  struct Case {
    const char* gguf;
    const char* twin;      // the same weights as a Hugging Face directory
    const char* fixture;   // its prompt
  };
  const Case cases[] = {
      {"gguf/starcoder2-tied-window8-F32.gguf", "models/gqa1_tied_window8_f32", "models/gqa1_tied_window8_f32"},
      {"gguf/starcoder2-untied-nobias-F32.gguf", "models/gqa2_untied_nobias_nowindow_f32",
       "models/gqa2_untied_nobias_nowindow_f32"},
      // Quantized matrices against gguf.quants.dequantize's float weights.
      {"gguf/starcoder2-tied-window8-Q8_0.gguf", "gguf/starcoder2-tied-window8-Q8_0.dequantized",
       "models/gqa1_tied_window8_f32"},
      {"gguf/starcoder2-untied-nobias-Q4_0.gguf", "gguf/starcoder2-untied-nobias-Q4_0.dequantized",
       "models/gqa2_untied_nobias_nowindow_f32"},
  };
  // Every float path: blocks are decoded into exactly the floats of the twin's weights, and
  // multiplied in the same order (the opt-in integer path is checked below).
  for (const Case& c : cases) {
    for (const sc2::cpu::Isa isa : sc2::test::all_supported_isas()) {
      if (isa == sc2::cpu::Isa::avx512_vnni) continue;
      DYNAMIC_SECTION(c.gguf << " on " << sc2::cpu::isa_name(isa)) {
        const auto ids = prompt(c.fixture);
        const auto got = all_logits(sc2::test::fixture(c.gguf), ids, isa);
        const auto want = all_logits(sc2::test::fixture(c.twin), ids, isa);
        CHECK(sc2::test::max_abs_diff(got.data(), want.data(), got.size()) == 0.0);
      }
    }
  }
}

TEST_CASE("the opt-in integer path stays near the float logits of a GGUF model", "[gguf][models]") {
  if (!sc2::cpu::isa_supported(sc2::cpu::Isa::avx512_vnni))
    SC2_SKIP_TEST("this processor has no AVX-512 VNNI: the path runs only under emulation (sc2-avx512-emulated-tests)");
  // Int8 activations (per 32, as llama.cpp) move the logits by a small fraction of their scale.
  for (const char* gguf : {"gguf/starcoder2-tied-window8-Q8_0.gguf", "gguf/starcoder2-untied-nobias-Q4_0.gguf"}) {
    DYNAMIC_SECTION(gguf) {
      const auto ids = prompt("models/gqa1_tied_window8_f32");
      const auto exact = all_logits(sc2::test::fixture(gguf), ids);
      const auto integer = all_logits(sc2::test::fixture(gguf), ids, sc2::cpu::Isa::avx512_vnni);
      double scale = 0.0;
      for (const float v : exact) scale = std::max(scale, std::abs(static_cast<double>(v)));
      const double diff = sc2::test::max_abs_diff(integer.data(), exact.data(), exact.size());
      INFO("max |diff| " << diff << " of max |logit| " << scale);
      CHECK(diff > 0.0);  // the activations are rounded: not the float path's bits
      CHECK(diff < 0.02 * scale);
    }
  }
}

TEST_CASE("a GGUF file of another architecture or with a broken hyperparameter is refused", "[gguf][models]") {
  CHECK_THROWS_WITH(sc2::Checkpoint::open(sc2::test::fixture("gguf/assorted.gguf")),
                    Catch::Matchers::Contains("holds a 'test' model; sc2 reads StarCoder2 GGUF files"));
  CHECK_THROWS_WITH(sc2::Checkpoint::open(sc2::test::fixture("gguf/starcoder2-tied-window8-F32.gguf"),
                                          sc2::ConfigSchema{.model_type = "mistral"}),
                    Catch::Matchers::Contains("GGUF files are read for StarCoder2 only, not for 'mistral'"));
}

TEST_CASE("GGUF and Hugging Face tensor names map both ways", "[gguf][models]") {
  for (const char* hf : {"model.embed_tokens.weight", "model.norm.bias", "lm_head.weight", "model.layers.0.input_layernorm.weight",
                         "model.layers.17.self_attn.o_proj.bias", "model.layers.3.mlp.c_fc.weight",
                         "model.layers.3.mlp.c_proj.bias", "model.layers.9.post_attention_layernorm.bias"})
    CHECK(sc2::starcoder2_name_from_gguf(sc2::starcoder2_name_to_gguf(hf)) == hf);
  CHECK(sc2::starcoder2_name_to_gguf("model.layers.3.mlp.c_fc.weight") == "blk.3.ffn_up.weight");
  CHECK(sc2::starcoder2_name_to_gguf("model.layers.x.mlp.c_fc.weight") == "model.layers.x.mlp.c_fc.weight");
  CHECK(sc2::starcoder2_name_from_gguf("blk..attn_q.weight") == "blk..attn_q.weight");
}
