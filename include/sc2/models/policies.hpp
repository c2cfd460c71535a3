#pragma once
/// \file
/// The policies a StarCoder2 model is composed of.
///
/// A configuration names four policy types; the model calls their hooks and
/// knows nothing else about them:
///
///   Norm        `Weights`, `load(loader, prefix, cfg)`, `forward(ctx, out, in, w, cfg)`
///   Mlp         `Weights`, `load(...)`, `scratch_floats(cfg, T)`, `forward(ctx, out, in, w, scratch)`,
///               `hidden_act` (the config.json activation it implements)
///   Positional  `State`, `make(cfg)`, `apply(ctx, state, q, k, positions)`
///   Mask        `make(cfg)` (an `ops::AttentionMask`), `cache_capacity(cfg, max_context)`
///
/// A research variant writes its own policy with the same hooks and names it
/// in its config; no library file changes. For example, a ReLU MLP:
///
///     struct ReluMlp : sc2::policy::GeluTanhMlp {
///       static constexpr std::string_view hidden_act = "relu";
///       template <class Ctx> static void forward(Ctx& ctx, sc2::MatrixView out, sc2::ConstMatrixView in,
///                                                const Weights& w, std::span<float> scratch) { ... }
///     };
///     struct MyConfig : sc2::ModelConfig { using Mlp = ReluMlp; };

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
  using Weights = LayerNormWeights;

  /// Loads `prefix`.weight and `prefix`.bias, both (D).
  template <class Cfg> static Weights load(WeightLoader& loader, const std::string& prefix, const Cfg& cfg) {
    return loader.layer_norm(prefix, cfg.hidden_size);
  }
  /// out (T, D) = LayerNorm(in (T, D)).
  template <class Ctx, class Cfg>
  static void forward(Ctx& ctx, MatrixView out, ConstMatrixView in, const Weights& w, const Cfg& cfg) {
    ops::layer_norm(ctx, out, in, w.weight, w.bias, static_cast<float>(cfg.norm_epsilon));
  }
};

/// StarCoder2's MLP: c_proj(gelu_tanh(c_fc(x))), biases iff use_bias.
struct GeluTanhMlp {
  /// The config.json `hidden_act` this policy implements.
  static constexpr std::string_view hidden_act = "gelu_pytorch_tanh";

  /// c_fc (F, D) and c_proj (D, F).
  struct Weights {
    LinearWeights c_fc;    ///< (F, D) + (F)
    LinearWeights c_proj;  ///< (D, F) + (D)
  };

  /// Loads `prefix`.c_fc and `prefix`.c_proj.
  template <class Cfg> static Weights load(WeightLoader& loader, const std::string& prefix, const Cfg& cfg) {
    return {loader.linear(prefix + ".c_fc", cfg.intermediate_size, cfg.hidden_size, cfg.use_bias),
            loader.linear(prefix + ".c_proj", cfg.hidden_size, cfg.intermediate_size, cfg.use_bias)};
  }
  /// Scratch floats `forward` needs for T tokens: the (T, F) hidden activation.
  template <class Cfg> static std::int64_t scratch_floats(const Cfg& cfg, std::int64_t tokens) {
    return tokens * cfg.intermediate_size;
  }
  /// out (T, D) = c_proj(gelu_tanh(c_fc(in (T, D)))).
  template <class Ctx>
  static void forward(Ctx& ctx, MatrixView out, ConstMatrixView in, const Weights& w, std::span<float> scratch) {
    MatrixView hidden(scratch.data(), {in.extent(0), w.c_fc.weight.rows});  // (T, F)
    ops::linear(ctx, hidden, in, w.c_fc.weight, w.c_fc.bias);
    ops::gelu_tanh(ctx, hidden);
    ops::linear(ctx, out, hidden, w.c_proj.weight, w.c_proj.bias);
  }
};

/// Rotary embedding of the whole head (rotate_half), as transformers'
/// StarCoder2 applies it: its rotary embedding uses head_dim and ignores
/// `partial_rotary_factor`.
struct RotaryEmbedding {
  using State = ops::RotaryTable;

  /// The inverse frequencies for rope_theta over the full head_dim.
  template <class Cfg> static State make(const Cfg& cfg) { return State(cfg.rope_theta, cfg.head_dim); }
  /// Rotates q (T, H, Dh) and k (T, Hkv, Dh) by their absolute positions.
  template <class Ctx>
  static void apply(Ctx& ctx, const State& state, TensorView<float, 3> q, TensorView<float, 3> k,
                    std::span<const std::int64_t> positions) {
    ops::rope(ctx, q, positions, state);
    ops::rope(ctx, k, positions, state);
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
  template <class Cfg> static ops::SlidingWindowMask make(const Cfg& cfg) {
    if (cfg.sliding_window) return {static_cast<std::int64_t>(*cfg.sliding_window)};
    return {std::nullopt};
  }
  /// KV-cache slots: the window, or the whole context when there is none.
  template <class Cfg> static std::int64_t cache_capacity(const Cfg& cfg, std::int64_t max_context) {
    return cfg.sliding_window ? std::min<std::int64_t>(*cfg.sliding_window, max_context) : max_context;
  }
};

}  // namespace sc2::policy
