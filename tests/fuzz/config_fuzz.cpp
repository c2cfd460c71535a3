// Fuzzes config.json parsing: any bytes as config.json text. A config that
// parses must satisfy what the model relies on, and comparing it with a preset
// must only ever report mismatches.

#include "fuzz_check.hpp"

#include <sc2/models/config.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const sc2::ModelConfig c = sc2::ModelConfig::from_json(text, "fuzz/config.json");
    SC2_FUZZ_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0 && c.num_hidden_layers > 0);
    SC2_FUZZ_CHECK(c.num_attention_heads > 0 && c.num_key_value_heads > 0);
    SC2_FUZZ_CHECK(c.num_attention_heads % c.num_key_value_heads == 0);
    SC2_FUZZ_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0);
    SC2_FUZZ_CHECK(c.max_position_embeddings > 0 && (!c.sliding_window || *c.sliding_window > 0));
    SC2_FUZZ_CHECK(c.rope_theta > 0.0 && c.norm_epsilon > 0.0);
    SC2_FUZZ_CHECK(c.partial_rotary_factor > 0.0 && c.partial_rotary_factor <= 1.0);
    SC2_FUZZ_CHECK(c.num_labels >= 0 && c.num_labels <= sc2::ModelConfig::kMaxLabels);
    SC2_FUZZ_CHECK(c.id2label.size() == static_cast<std::size_t>(c.num_labels));
    for (int id : c.eos_token_ids) SC2_FUZZ_CHECK(id >= 0);
    sc2::check_config_matches(sc2::Config3B{}, c, "fuzz/config.json");
  } catch (const sc2::Error&) {
    // A clear refusal is the expected outcome for most inputs.
  }
  return 0;
}
