#pragma once
/// \file
/// The policies a StarCoder2 model is composed of.
///
/// A configuration names four policy types; the model calls their hooks and
/// knows nothing else about them:
///
///   Norm        `Weights<Space>`, `load(loader, prefix, cfg)`, `forward(ctx, out, in, w, cfg)`
///   Mlp         `Weights<Space>`, `load(...)`, `scratch_floats(cfg, T)`, `forward(ctx, out, in, w, scratch)`,
///               `hidden_act` (the config.json activation it implements)
///   Positional  `State`, `make(cfg)`, `apply(ctx, state, q, k, positions)`; optionally
///               `apply_and_append(ctx, state, q, k, v, layer, plan)`, which also writes the
///               keys and values into the KV pages (one fused pass where the backend has one)
///   Mask        `make(cfg)` (an `ops::AttentionMask`), `window(cfg)` (the latest positions a
///               query sees, which bounds the KV pages a sequence holds; none: all)
///
/// Weights are templated on the memory space of the backend the model runs
/// on, and `forward` takes views of the context's space, so one policy serves
/// the CPU and a GPU. A research variant writes its own policy with the same
/// hooks and names it in its config (with a `config_schema` when its
/// config.json is another family's); no library file changes. docs/variants.md
/// builds Mistral that way. A smaller example, a ReLU MLP:
///
///     struct ReluMlp : sc2::policy::GeluTanhMlp {
///       static constexpr std::string_view hidden_act = "relu";
///       template <sc2::ExecutionContext Ctx, class W, class Scratch>
///       static void forward(Ctx& ctx, auto out, auto in, const W& w, Scratch scratch) { ... }
///     };
///     struct MyConfig : sc2::ModelConfig { using Mlp = ReluMlp; };

#include <sc2/core/context.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/models/weights.hpp>
#include <sc2/ops/activation.hpp>
#include <sc2/ops/attention.hpp>
#include <sc2/ops/layer_norm.hpp>
#include <sc2/ops/linear.hpp>
#include <sc2/ops/rope.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sc2::policy {

/// LayerNorm with weight and bias (torch.nn.LayerNorm), eps = norm_epsilon.
struct LayerNorm {
  /// Weight and bias, both (D), in `Space`.
  template <class Space> using Weights = LayerNormWeights<Space>;

  /// Loads `prefix`.weight and `prefix`.bias, both (D).
  template <class Loader, class Cfg> static auto load(Loader& loader, const std::string& prefix, const Cfg& cfg) {
    return loader.layer_norm(prefix, cfg.hidden_size);
  }
  /// out (T, D) = LayerNorm(in (T, D)).
  template <ExecutionContext Ctx, class Cfg>
  static void forward(Ctx& ctx, Matrix<ActivationOf<Ctx>, SpaceOf<Ctx>> out,
                      Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> in, const Weights<SpaceOf<Ctx>>& w,
                      const Cfg& cfg) {
    ops::layer_norm(ctx, out, in, w.weight, w.bias, static_cast<float>(cfg.norm_epsilon));
  }
};

/// StarCoder2's MLP: c_proj(gelu_tanh(c_fc(x))), biases iff use_bias.
struct GeluTanhMlp {
  /// The config.json `hidden_act` this policy implements.
  static constexpr std::string_view hidden_act = "gelu_pytorch_tanh";

  /// c_fc (F, D) and c_proj (D, F), in `Space`.
  template <class Space> struct Weights {
    LinearWeights<Space> c_fc;    ///< (F, D) + (F)
    LinearWeights<Space> c_proj;  ///< (D, F) + (D)
  };

  /// Loads `prefix`.c_fc and `prefix`.c_proj.
  template <class Loader, class Cfg> static auto load(Loader& loader, const std::string& prefix, const Cfg& cfg) {
    using Space = typename Loader::Space;
    return Weights<Space>{loader.linear(prefix + ".c_fc", cfg.intermediate_size, cfg.hidden_size, cfg.use_bias),
                          loader.linear(prefix + ".c_proj", cfg.hidden_size, cfg.intermediate_size, cfg.use_bias)};
  }
  /// Scratch elements `forward` needs for T tokens: the (T, F) hidden activation.
  template <class Cfg> static std::int64_t scratch_floats(const Cfg& cfg, std::int64_t tokens) {
    return tokens * cfg.intermediate_size;
  }
  /// out (T, D) = c_proj(gelu_tanh(c_fc(in (T, D)))); `scratch` holds scratch_floats(cfg, T) elements.
  template <ExecutionContext Ctx>
  static void forward(Ctx& ctx, Matrix<ActivationOf<Ctx>, SpaceOf<Ctx>> out,
                      Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> in, const Weights<SpaceOf<Ctx>>& w,
                      Vector<ActivationOf<Ctx>, SpaceOf<Ctx>> scratch) {
    const Matrix<ActivationOf<Ctx>, SpaceOf<Ctx>> hidden(scratch.data(), {in.extent(0), w.c_fc.weight.rows});  // (T, F)
    ops::linear(ctx, hidden, in, w.c_fc.weight, w.c_fc.bias);
    ops::gelu_tanh(ctx, hidden);
    ops::linear(ctx, out, hidden, w.c_proj.weight, w.c_proj.bias);
  }
};

/// Rotary embedding of the whole head (rotate_half), as transformers'
/// StarCoder2 applies it: its rotary embedding uses head_dim and ignores
/// `partial_rotary_factor`.
struct RotaryEmbedding {
  using State = ops::RotaryTable;  ///< the inverse frequencies

  /// The inverse frequencies for rope_theta over the full head_dim.
  template <class Cfg> static State make(const Cfg& cfg) { return State(cfg.rope_theta, cfg.head_dim); }
  /// Rotates q (T, H, Dh) and k (T, Hkv, Dh) by their absolute positions (T).
  template <ExecutionContext Ctx>
  static void apply(Ctx& ctx, const State& state, TensorView<ActivationOf<Ctx>, 3, SpaceOf<Ctx>> q,
                    TensorView<ActivationOf<Ctx>, 3, SpaceOf<Ctx>> k,
                    Vector<const std::int32_t, SpaceOf<Ctx>> positions) {
    ops::rope(ctx, q, positions, state);
    ops::rope(ctx, k, positions, state);
  }
  /// `apply`, then the rotated keys and the values v (T, Hkv·Dh) into the
  /// layer's pages, in one op (`ops::rope_kv_append`) that a backend may fuse.
  template <ExecutionContext Ctx, class Kv>
  static void apply_and_append(Ctx& ctx, const State& state, TensorView<ActivationOf<Ctx>, 3, SpaceOf<Ctx>> q,
                               TensorView<ActivationOf<Ctx>, 3, SpaceOf<Ctx>> k,
                               Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> v,
                               const ops::KvLayer<Kv, SpaceOf<Ctx>>& layer, const ops::BatchView<SpaceOf<Ctx>>& plan) {
    ops::rope_kv_append(ctx, layer, q, k, v, plan, state);
  }
};

/// Rotary embedding of the first head_dim · partial_rotary_factor dimensions
/// of each head; the others pass through (GPT-NeoX / Phi style). Not what
/// transformers does for StarCoder2; for variants that want it.
struct PartialRotaryEmbedding : RotaryEmbedding {
  /// The inverse frequencies over R = int(head_dim · partial_rotary_factor), rounded down to even.
  template <class Cfg> static State make(const Cfg& cfg) {
    const int rotary = static_cast<int>(cfg.head_dim * cfg.partial_rotary_factor) / 2 * 2;
    return State(cfg.rope_theta, rotary);
  }
};

/// Causal attention limited to the last `sliding_window` keys (none: plain causal).
struct SlidingWindow {
  /// The mask of REFERENCE: key j visible to query i iff 0 <= i − j < W.
  template <class Cfg> static ops::SlidingWindowMask make(const Cfg& cfg) { return {window(cfg)}; }
  /// W: how many latest positions a query sees; none when every earlier one is visible.
  template <class Cfg> static std::optional<std::int64_t> window(const Cfg& cfg) {
    if (cfg.sliding_window) return static_cast<std::int64_t>(*cfg.sliding_window);
    return std::nullopt;
  }
};

}  // namespace sc2::policy
