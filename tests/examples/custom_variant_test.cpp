// The variant example (examples/custom_variant.cpp, a Mistral written as a config and two
// policies) against transformers' MistralForCausalLM on tiny checkpoints.

#include "support.hpp"

#include <sc2/backends/cpu.hpp>
#include <sc2/io/safetensors.hpp>

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <sstream>

#ifdef SC2_CUSTOM_VARIANT
TEST_CASE("custom_variant matches transformers' Mistral at every prompt length on every float path",
          "[examples][variant]") {
  // Windows shorter than the prompt (6, 5) and none; GQA, MQA with head_dim apart from
  // hidden / heads, MHA; one config.json that leaves MistralConfig's defaults out.
  const char* cases[] = {"mistral_gqa2_window6", "mistral_mqa_headdim32_nowindow", "mistral_mha_window5_defaults"};
  for (const sc2::cpu::Isa isa : sc2::test::supported_isas()) {
    for (const char* name : cases) {
      DYNAMIC_SECTION(sc2::cpu::isa_name(isa) << " " << name) {
        const auto dir = sc2::test::fixture(std::string("variants/") + name);
        const auto reference = sc2::SafetensorsFile::open(dir / "reference.safetensors");
        const auto ids = sc2::test::read_reference(reference, "input_ids").ints;
        const auto logits = sc2::test::read_reference(reference, "logits");  // (T, V) of transformers, float32
        const std::size_t V = static_cast<std::size_t>(logits.shape[1]);
        double worst = 0.0;
        // The logits after a prefix of t + 1 tokens are row t of one forward over the whole prompt.
        for (std::size_t t = 0; t < ids.size(); ++t) {
          const float* row = logits.values.data() + t * V;
          std::vector<int> order(V);
          std::iota(order.begin(), order.end(), 0);
          std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                            [&](int a, int b) { return row[a] > row[b]; });
          std::string arguments = dir.string();
          for (std::size_t i = 0; i <= t; ++i) arguments.append(" ").append(std::to_string(ids[i]));
          const auto o = sc2::test::run_program("SC2_CPU_ISA=" + std::string(sc2::cpu::isa_name(isa)) + " " +
                                                    SC2_CUSTOM_VARIANT,
                                                arguments);
          INFO("prefix of " << t + 1 << " tokens\n" << o.out << o.err);
          REQUIRE(o.status == 0);
          std::istringstream lines(o.out);
          for (int i = 0; i < 5; ++i) {
            int id = -1;
            double value = 0.0;
            REQUIRE(lines >> id >> value);
            CHECK(id == order[static_cast<std::size_t>(i)]);
            CHECK(std::abs(value - row[order[static_cast<std::size_t>(i)]]) <= 1e-4);
            worst = std::max(worst, std::abs(value - row[order[static_cast<std::size_t>(i)]]));
          }
        }
        std::printf("custom_variant %s %s: %zu prompt lengths, max |logit - transformers| %.2e\n",
                    sc2::cpu::isa_name(isa).data(), name, ids.size(), worst);
      }
    }
  }
}

TEST_CASE("custom_variant names what is wrong with a StarCoder2 checkpoint", "[examples][variant]") {
  // A StarCoder2 config.json is not a Mistral one: the schema's model_type says so.
  const auto o = sc2::test::run_program(SC2_CUSTOM_VARIANT,
                                        sc2::test::fixture("models/gqa1_tied_window8_f32").string() + " 1 2 3");
  CHECK(o.status != 0);
  CHECK(o.err.find("model_type is 'starcoder2', expected 'mistral'") != std::string::npos);
}
#endif
