// A model variant built on sc2 without editing it: Mistral, whose decoder
// differs from StarCoder2's in three places and agrees in the rest.
//
//                    StarCoder2                       Mistral
//   norm             LayerNorm, weight and bias       RMSNorm, weight only
//   MLP              c_proj(gelu_tanh(c_fc(x)))       down_proj(silu(gate_proj(x)) · up_proj(x))
//   biases           on every linear (use_bias)       none
//   config.json      Starcoder2Config's fields        MistralConfig's (rms_norm_eps, its defaults)
//   same             grouped-query attention, RoPE (rotate_half over the whole head),
//                    a sliding window, untied or tied lm_head, tensor names model.layers.{i}.self_attn.*
//
// So the variant is two policies (RmsNorm, SwiGluMlp) and a config that names
// them and says how its config.json reads. The decoder stack sc2::Starcoder2
// and the head sc2::CausalLM take it as it is. See docs/variants.md.
//
//   custom_variant CHECKPOINT_DIR ID [ID ...]
//
// loads any transformers MistralForCausalLM checkpoint directory and prints
// the five most likely next token ids after the prompt, with their logits.
#include <sc2/sc2.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace mistral {

/// RMSNorm (transformers' MistralRMSNorm), on the CPU:
///
///     out[t, d] = in[t, d] / sqrt(mean_d in[t, d]² + eps) · weight[d]
///
/// in, out (T, D); weight (D). The mean is summed in double; torch sums in float.
struct RmsNorm {
  /// The scale (D), in `Space`: `prefix`.weight.
  template <class Space> struct Weights {
    sc2::Vector<const float, Space> weight;
  };

  /// Loads `prefix`.weight (D). The loader checks the shape and names a missing tensor.
  template <class Loader, class Cfg> static auto load(Loader& loader, const std::string& prefix, const Cfg& cfg) {
    return Weights<typename Loader::Space>{loader.vector(prefix + ".weight", cfg.hidden_size)};
  }

  /// out (T, D) = RMSNorm(in (T, D)), rows split over the context's threads.
  template <class Cfg>
  static void forward(sc2::CpuContext& ctx, sc2::MatrixView out, sc2::ConstMatrixView in, const Weights<sc2::Host>& w,
                      const Cfg& cfg) {
    const std::int64_t D = in.extent(1);
    const float eps = static_cast<float>(cfg.norm_epsilon);
    ctx.pool().parallel_for(in.extent(0), 1, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t t = first; t < last; ++t) {
        double sum_of_squares = 0.0;
        for (std::int64_t d = 0; d < D; ++d) sum_of_squares += static_cast<double>(in(t, d)) * in(t, d);
        const float scale = 1.0f / std::sqrt(static_cast<float>(sum_of_squares / static_cast<double>(D)) + eps);
        for (std::int64_t d = 0; d < D; ++d) out(t, d) = w.weight(d) * (in(t, d) * scale);
      }
    });
  }
};

/// The gated MLP (transformers' MistralMLP), on the CPU:
///
///     out = down_proj(silu(gate_proj(x)) · up_proj(x)),    silu(g) = g / (1 + e^-g)
///
/// x, out (T, D); gate_proj, up_proj (F, D); down_proj (D, F). The three
/// products are sc2's linear op, so they run on its SIMD kernels.
struct SwiGluMlp {
  /// The config.json `hidden_act` this policy computes; loading checks it.
  static constexpr std::string_view hidden_act = "silu";

  /// The three projections, in `Space`.
  template <class Space> struct Weights {
    sc2::LinearWeights<Space> gate_proj;  ///< (F, D)
    sc2::LinearWeights<Space> up_proj;    ///< (F, D)
    sc2::LinearWeights<Space> down_proj;  ///< (D, F)
  };

  /// Loads `prefix`.gate_proj, .up_proj and .down_proj (biases only if the config has them).
  template <class Loader, class Cfg> static auto load(Loader& loader, const std::string& prefix, const Cfg& cfg) {
    const std::int64_t D = cfg.hidden_size, F = cfg.intermediate_size;
    return Weights<typename Loader::Space>{loader.linear(prefix + ".gate_proj", F, D, cfg.mlp_bias),
                                           loader.linear(prefix + ".up_proj", F, D, cfg.mlp_bias),
                                           loader.linear(prefix + ".down_proj", D, F, cfg.mlp_bias)};
  }

  /// Scratch floats `forward` needs for T tokens: gate and up, (T, F) each.
  template <class Cfg> static std::int64_t scratch_floats(const Cfg& cfg, std::int64_t tokens) {
    return 2 * tokens * cfg.intermediate_size;
  }

  /// out (T, D) = down_proj(silu(gate_proj(in)) · up_proj(in)).
  static void forward(sc2::CpuContext& ctx, sc2::MatrixView out, sc2::ConstMatrixView in, const Weights<sc2::Host>& w,
                      sc2::Vector<float, sc2::Host> scratch) {
    const std::int64_t T = in.extent(0), F = w.gate_proj.weight.rows;
    const sc2::MatrixView gate(scratch.data(), {T, F}), up(scratch.data() + T * F, {T, F});
    sc2::ops::linear(ctx, gate, in, w.gate_proj.weight, w.gate_proj.bias);
    sc2::ops::linear(ctx, up, in, w.up_proj.weight, w.up_proj.bias);
    ctx.pool().parallel_for(T, 1, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t t = first; t < last; ++t)
        for (std::int64_t f = 0; f < F; ++f) {
          const float g = gate(t, f);
          gate(t, f) = g / (1.0f + std::exp(-g)) * up(t, f);
        }
    });
    sc2::ops::linear(ctx, out, gate, w.down_proj.weight, w.down_proj.bias);
  }
};

/// A Mistral checkpoint's configuration: config.json's values (sc2::ModelConfig),
/// the two policies above, and StarCoder2's rotary embedding and window mask.
struct Config : sc2::ModelConfig {
  using Norm = RmsNorm;
  using Mlp = SwiGluMlp;

  /// config.json as transformers' MistralConfig reads it: its model_type, the
  /// norm's eps under `rms_norm_eps`, no bias keys (never biases), and the
  /// default of every field a file leaves out. Every field is named: one left
  /// out keeps StarCoder2's value.
  static constexpr sc2::ConfigSchema config_schema{.model_type = "mistral",
                                                   .vocab_size = 32000,
                                                   .hidden_size = 4096,
                                                   .intermediate_size = 14336,
                                                   .num_hidden_layers = 32,
                                                   .num_attention_heads = 32,
                                                   .num_key_value_heads = 8,
                                                   .null_key_value_heads_is_attention_heads = true,
                                                   .max_position_embeddings = 4096 * 32,
                                                   .sliding_window = 4096,
                                                   .rope_theta = 10000.0,
                                                   .norm_epsilon_key = "rms_norm_eps",
                                                   .norm_epsilon = 1e-6,
                                                   .use_bias_key = "",
                                                   .use_bias = false,
                                                   .mlp_bias_key = "",
                                                   .mlp_bias = false,
                                                   .tie_word_embeddings = false,
                                                   .hidden_act = "silu",
                                                   .bos_token_id = 1,
                                                   .eos_token_id = 2};
};

/// The decoder stack and the language-model head of sc2, on the variant's config.
using ForCausalLM = sc2::CausalLM<sc2::Starcoder2<Config>>;

}  // namespace mistral

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CHECKPOINT_DIR ID [ID ...]\n", argv[0]);
    return 2;
  }
  try {
    const auto lm = mistral::ForCausalLM::load(argv[1]);
    std::vector<std::int32_t> ids;
    for (int i = 2; i < argc; ++i) ids.push_back(static_cast<std::int32_t>(std::stol(argv[i])));

    sc2::CpuContext ctx;                                                // one thread per core
    sc2::KvCache cache = lm.make_cache();                               // this sequence's keys and values
    const std::span<const float> logits = lm.forward_last(ctx, ids, cache);  // (V)

    for (const int id : sc2::top_ids(logits, 5)) std::printf("%d %.6f\n", id, logits[static_cast<std::size_t>(id)]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
