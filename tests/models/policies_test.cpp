// A model variant is a config that names another policy; no library file changes.

#include "support.hpp"

#include <sc2/sc2.hpp>

namespace {

// Rotates only head_dim · partial_rotary_factor dimensions, unlike transformers' StarCoder2.
struct PartialRotaryConfig : sc2::ModelConfig {
  using Positional = sc2::policy::PartialRotaryEmbedding;
};

// An MLP with ReLU in place of GELU, counting its calls.
struct ReluMlp : sc2::policy::GeluTanhMlp {
  static constexpr std::string_view hidden_act = "gelu_pytorch_tanh";  // reads the same checkpoints
  static inline int calls = 0;
  template <sc2::ExecutionContext Ctx>
  static void forward(Ctx& ctx, sc2::MatrixView out, sc2::ConstMatrixView in, const Weights<sc2::Host>& w,
                      sc2::Vector<float, sc2::Host> scratch) {
    ++calls;
    sc2::MatrixView hidden(scratch.data(), {in.extent(0), w.c_fc.weight.rows});
    sc2::ops::linear(ctx, hidden, in, w.c_fc.weight, w.c_fc.bias);
    for (std::int64_t t = 0; t < hidden.extent(0); ++t)
      for (float& v : hidden.row(t)) v = std::max(v, 0.0f);
    sc2::ops::linear(ctx, out, hidden, w.c_proj.weight, w.c_proj.bias);
  }
};
struct ReluConfig : sc2::ModelConfig {
  using Mlp = ReluMlp;
};

std::vector<float> last_logits(auto& lm, const std::vector<std::int32_t>& ids) {
  sc2::CpuContext ctx(1);
  sc2::KvCache cache = lm.make_cache();
  const auto logits = lm.forward_last(ctx, ids, cache);
  return {logits.begin(), logits.end()};
}

}  // namespace

TEST_CASE("swapping the positional policy rotates part of each head", "[policy]") {
  const auto dir = sc2::test::fixture("models/gqa8_partial_rotary_window8_f16");
  auto reference = sc2::Starcoder2ForCausalLM::load(dir);
  auto partial = sc2::CausalLM<sc2::Starcoder2<PartialRotaryConfig>>::load(dir);
  CHECK(partial.config().partial_rotary_factor == 0.5);
  const std::vector<std::int32_t> ids{3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26};
  const auto a = last_logits(reference, ids), b = last_logits(partial, ids);
  // Same weights, other positional encoding: the logits move, and stay finite.
  CHECK(sc2::test::max_abs_diff(a.data(), b.data(), a.size()) > 1e-2);
  for (float x : b) CHECK(std::isfinite(x));
}

TEST_CASE("swapping the MLP policy runs the researcher's MLP", "[policy]") {
  const auto dir = sc2::test::fixture("models/gqa1_tied_window8_f32");
  auto reference = sc2::Starcoder2ForCausalLM::load(dir);
  auto relu = sc2::CausalLM<sc2::Starcoder2<ReluConfig>>::load(dir);
  const std::vector<std::int32_t> ids{1, 2, 3, 4, 5};
  ReluMlp::calls = 0;
  const auto b = last_logits(relu, ids);
  CHECK(ReluMlp::calls == 2);  // once per layer for one chunk
  const auto a = last_logits(reference, ids);
  CHECK(sc2::test::max_abs_diff(a.data(), b.data(), a.size()) > 1e-2);
}
