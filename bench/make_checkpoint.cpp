// sc2-make-checkpoint: writes a random-weight StarCoder2 checkpoint of a real shape
// (config.json + model.safetensors), so speed can be measured without downloading.
//
//   sc2-make-checkpoint --preset 3B --dtype bf16 --out /tmp/sc2-3b-bf16

#include <sc2/sc2.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace {

// The dimensions of one preset, as values.
struct Shape {
  int vocab, hidden, intermediate, layers, heads, kv_heads, head_dim;
  double rope_theta;
  bool tied;
};

template <class Preset> Shape shape_of(bool tied) {
  return {Preset::vocab_size, Preset::hidden_size, Preset::intermediate_size, Preset::num_hidden_layers,
          Preset::num_attention_heads, Preset::num_key_value_heads, Preset::head_dim, Preset::rope_theta, tied};
}

// A small, fast generator (splitmix64): weights need to be varied, not statistically perfect.
struct SplitMix {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-scale, scale).
  float uniform(float scale) { return scale * (static_cast<float>(next() >> 40) * 0x1.0p-23f - 1.0f); }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Writes a random-weight StarCoder2 checkpoint of the 3B, 7B or 15B shape"};
  std::string preset = "3B", dtype_name = "bf16", out;
  std::uint64_t seed = 1;
  app.add_option("--preset", preset, "3B, 7B or 15B")->check(CLI::IsMember({"3B", "7B", "15B"}));
  app.add_option("--dtype", dtype_name, "f32, bf16 or f16")->check(CLI::IsMember({"f32", "bf16", "f16"}));
  app.add_option("--out", out, "output directory")->required();
  app.add_option("--seed", seed, "random seed");
  CLI11_PARSE(app, argc, argv);

  try {
    const Shape s = preset == "3B"   ? shape_of<sc2::Config3B>(true)
                    : preset == "7B" ? shape_of<sc2::Config7B>(true)
                                     : shape_of<sc2::Config15B>(false);
    const std::string st_dtype = dtype_name == "f32" ? "F32" : dtype_name == "bf16" ? "BF16" : "F16";
    const std::int64_t D = s.hidden, F = s.intermediate, q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;

    std::vector<sc2::TensorSpec> specs{{"model.embed_tokens.weight", st_dtype, {s.vocab, D}}};
    for (int l = 0; l < s.layers; ++l) {
      const std::string p = fmt::format("model.layers.{}.", l);
      for (const char* norm : {"input_layernorm", "post_attention_layernorm"}) {
        specs.push_back({p + norm + ".weight", st_dtype, {D}});
        specs.push_back({p + norm + ".bias", st_dtype, {D}});
      }
      for (auto [name, rows, cols] : {std::tuple{"self_attn.q_proj", q, D}, std::tuple{"self_attn.k_proj", kv, D},
                                      std::tuple{"self_attn.v_proj", kv, D}, std::tuple{"self_attn.o_proj", D, q},
                                      std::tuple{"mlp.c_fc", F, D}, std::tuple{"mlp.c_proj", D, F}}) {
        specs.push_back({p + name + ".weight", st_dtype, {rows, cols}});
        specs.push_back({p + name + ".bias", st_dtype, {rows}});
      }
    }
    specs.push_back({"model.norm.weight", st_dtype, {D}});
    specs.push_back({"model.norm.bias", st_dtype, {D}});
    if (!s.tied) specs.push_back({"lm_head.weight", st_dtype, {s.vocab, D}});

    std::filesystem::create_directories(out);
    std::uint64_t total = 0;
    for (const auto& spec : specs) total += spec.bytes();
    fmt::print(stderr, "writing {} tensors, {:.2f} GB, to {}\n", specs.size(), static_cast<double>(total) / 1e9, out);
    SplitMix rng{seed};
    sc2::write_safetensors(std::filesystem::path(out) / "model.safetensors", specs,
                           [&](std::size_t i, std::span<std::byte> bytes) {
                             const bool norm_weight = specs[i].name.ends_with("layernorm.weight") ||
                                                      specs[i].name == "model.norm.weight";
                             const std::size_t n = bytes.size() / (st_dtype == "F32" ? 4 : 2);
                             for (std::size_t k = 0; k < n; ++k) {
                               const float v = norm_weight ? 1.0f + rng.uniform(0.1f) : rng.uniform(0.04f);
                               if (st_dtype == "F32") std::memcpy(bytes.data() + 4 * k, &v, 4);
                               else {
                                 const std::uint16_t b = st_dtype == "BF16" ? sc2::bf16::round(v).bits : sc2::f16::round(v).bits;
                                 std::memcpy(bytes.data() + 2 * k, &b, 2);
                               }
                             }
                           },
                           {{"format", "pt"}});
    nlohmann::ordered_json config = {
        {"architectures", {"Starcoder2ForCausalLM"}}, {"model_type", "starcoder2"},
        {"vocab_size", s.vocab}, {"hidden_size", s.hidden}, {"intermediate_size", s.intermediate},
        {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads}, {"num_key_value_heads", s.kv_heads},
        {"max_position_embeddings", 16384}, {"sliding_window", 4096}, {"rope_theta", s.rope_theta},
        {"norm_epsilon", 1e-5}, {"use_bias", true}, {"hidden_act", "gelu_pytorch_tanh"},
        {"tie_word_embeddings", s.tied}, {"bos_token_id", 0}, {"eos_token_id", 0},
        {"torch_dtype", dtype_name == "f32" ? "float32" : dtype_name == "bf16" ? "bfloat16" : "float16"}};
    std::ofstream(std::filesystem::path(out) / "config.json") << config.dump(2) << '\n';
    fmt::print(stderr, "done\n");
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
