// sc2-quantize: a Hugging Face StarCoder2 checkpoint directory to a GGUF file
// that llama.cpp and sc2 read, its matrices in one GGML format.
//
//   sc2-quantize starcoder2-3b starcoder2-3b-Q8_0.gguf --type q8_0
//   sc2-quantize starcoder2-3b starcoder2-3b-Q4_K_M.gguf --type q4_k_m
//
// Matrices (embedding, attention and MLP projections, an untied lm_head) are
// quantized with ggml's reference quantizer (sc2::quant::quantize, the bytes
// llama-quantize writes without an importance matrix). `q4_k_m` is
// llama-quantize's Q4_K_M mix (llama_tensor_get_type): Q4_K, but Q6_K for the
// output matrix (the embedding when tied) and for attn_v and ffn_down in the
// layers where llama.cpp's use_more_bits holds (the first and last eighth,
// and every third between). A K-quant matrix whose rows are not whole
// super-blocks of 256 becomes Q8_0 (llama.cpp takes Q5_0, a format sc2 does
// not have); one whose rows are not whole blocks of 32 stays F32. Norms and
// biases are F32.
// The metadata are llama.cpp's StarCoder2 keys, plus the sliding window
// (starcoder2.attention.sliding_window, which llama.cpp's converter leaves
// out), and the tokenizer.ggml.* keys of the directory's tokenizer.json.
#include <sc2/sc2.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct OutputType {
  const char* name;
  sc2::GgmlType type;
  std::uint32_t file_type;  // llama.cpp's general.file_type (llama_ftype)
};

constexpr OutputType kTypes[] = {{"f32", sc2::GgmlType::f32, 0},    {"f16", sc2::GgmlType::f16, 1},
                                 {"bf16", sc2::GgmlType::bf16, 32},  {"q8_0", sc2::GgmlType::q8_0, 7},
                                 {"q4_0", sc2::GgmlType::q4_0, 2},   {"q4_k", sc2::GgmlType::q4_k, 14},
                                 {"q5_k", sc2::GgmlType::q5_k, 16},  {"q6_k", sc2::GgmlType::q6_k, 18},
                                 {"q4_k_m", sc2::GgmlType::q4_k, 15}};

// GGML's name of a type ("Q6_K").
std::string_view type_name_of(sc2::GgmlType type) { return sc2::ggml_type_traits(static_cast<std::uint32_t>(type))->name; }

// llama.cpp's use_more_bits: the layers whose attn_v and ffn_down Q4_K_M keeps in Q6_K.
bool use_more_bits(int layer, int layers) {
  return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
}

// The type of matrix `name` (Hugging Face name) in the mix `out`, before the fallback for rows
// that are not whole blocks: Q4_K_M's rules, or the one type of every other --type.
sc2::GgmlType mix_type(const OutputType& out, const std::string& name, bool tied, int layers) {
  if (std::string_view(out.name) != "q4_k_m") return out.type;
  if (name == "lm_head.weight" || (tied && name == "model.embed_tokens.weight")) return sc2::GgmlType::q6_k;
  int layer = -1;
  if (std::sscanf(name.c_str(), "model.layers.%d.", &layer) == 1 &&
      (name.ends_with(".self_attn.v_proj.weight") || name.ends_with(".mlp.c_proj.weight")) && use_more_bits(layer, layers))
    return sc2::GgmlType::q6_k;
  return sc2::GgmlType::q4_k;
}

// `values` (rows, cols) in `type`.
std::vector<std::byte> encode(const std::vector<float>& values, std::int64_t rows, std::int64_t cols, sc2::GgmlType type) {
  std::vector<std::byte> out;
  switch (type) {
    case sc2::GgmlType::f32:
      out.resize(values.size() * 4);
      std::memcpy(out.data(), values.data(), out.size());
      break;
    case sc2::GgmlType::f16:
    case sc2::GgmlType::bf16:
      out.resize(values.size() * 2);
      for (std::size_t i = 0; i < values.size(); ++i) {
        const std::uint16_t b = type == sc2::GgmlType::f16 ? sc2::f16::round(values[i]).bits : sc2::bf16::round(values[i]).bits;
        std::memcpy(out.data() + 2 * i, &b, 2);
      }
      break;
    default: {
      const auto format = sc2::quant::parse_format(sc2::ggml_type_traits(static_cast<std::uint32_t>(type))->name);
      const std::size_t row = sc2::quant::row_bytes(format, cols);
      out.resize(row * static_cast<std::size_t>(rows));
      for (std::int64_t r = 0; r < rows; ++r)
        sc2::quant::quantize(format, values.data() + r * cols, out.data() + static_cast<std::size_t>(r) * row, cols);
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Writes a StarCoder2 checkpoint directory as a GGUF file, its matrices quantized"};
  std::string input, output, type_name = "q8_0";
  app.add_option("input", input, "checkpoint directory (config.json, *.safetensors, tokenizer.json)")->required();
  app.add_option("output", output, "the GGUF file to write")->required();
  app.add_option("--type", type_name, "matrix format: q8_0, q4_0, q4_k, q5_k, q6_k, f16, bf16, f32, or the mix q4_k_m")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const OutputType* out_type = nullptr;
    for (const OutputType& t : kTypes)
      if (type_name == t.name) out_type = &t;
    SC2_CHECK(out_type != nullptr, "unknown --type '{}' (q8_0, q4_0, q4_k, q5_k, q6_k, f16, bf16, f32 or q4_k_m)",
              type_name);
    const std::filesystem::path dir(input);
    const sc2::Checkpoint ckpt = sc2::Checkpoint::open(dir);
    const sc2::ModelConfig& c = ckpt.config;

    sc2::GgufWriter w;
    w.add_string("general.architecture", "starcoder2");
    w.add_string("general.name", dir.filename().string());
    w.add_u32("general.file_type", out_type->file_type);
    w.add_u32("starcoder2.context_length", static_cast<std::uint32_t>(c.max_position_embeddings));
    w.add_u32("starcoder2.embedding_length", static_cast<std::uint32_t>(c.hidden_size));
    w.add_u32("starcoder2.feed_forward_length", static_cast<std::uint32_t>(c.intermediate_size));
    w.add_u32("starcoder2.block_count", static_cast<std::uint32_t>(c.num_hidden_layers));
    w.add_u32("starcoder2.attention.head_count", static_cast<std::uint32_t>(c.num_attention_heads));
    w.add_u32("starcoder2.attention.head_count_kv", static_cast<std::uint32_t>(c.num_key_value_heads));
    w.add_f32("starcoder2.rope.freq_base", static_cast<float>(c.rope_theta));
    w.add_f32("starcoder2.attention.layer_norm_epsilon", static_cast<float>(c.norm_epsilon));
    if (c.sliding_window) w.add_u32("starcoder2.attention.sliding_window", static_cast<std::uint32_t>(*c.sliding_window));
    if (std::filesystem::exists(dir / "tokenizer.json")) {
      sc2::add_tokenizer_to_gguf(w, sc2::read_text_file(dir / "tokenizer.json"), (dir / "tokenizer.json").string());
      if (c.bos_token_id) w.add_u32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(*c.bos_token_id));
      if (!c.eos_token_ids.empty()) w.add_u32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(c.eos_token_ids[0]));
    }

    std::map<std::string, int> counts;  // tensors per GGML type
    for (const std::string& name : ckpt.tensors.names()) {
      if (sc2::is_ignorable_tensor(name) || (c.tie_word_embeddings && name == "lm_head.weight")) continue;
      const sc2::TensorInfo& t = ckpt.tensors.at(name);
      SC2_CHECK(t.dtype.has_value(), "tensor '{}' has dtype {}; sc2-quantize reads F32, BF16 and F16", name, t.dtype_name);
      std::vector<float> values(static_cast<std::size_t>(t.numel()));
      sc2::tensor_to_float(t, values);
      sc2::GgmlType type = sc2::GgmlType::f32;
      if (t.shape.size() == 2) {
        const sc2::GgmlType wanted = mix_type(*out_type, name, c.tie_word_embeddings, static_cast<int>(c.num_hidden_layers));
        const auto block = [](sc2::GgmlType g) { return sc2::ggml_type_traits(static_cast<std::uint32_t>(g))->block; };
        type = wanted;
        if (t.shape[1] % block(type) != 0 && block(type) == sc2::quant::kSuperBlock) type = sc2::GgmlType::q8_0;
        if (t.shape[1] % block(type) != 0) type = sc2::GgmlType::f32;
        if (type != wanted)
          fmt::print(stderr, "sc2-quantize: {} has rows of {}, not whole {} blocks: kept as {}\n", name, t.shape[1],
                     type_name_of(wanted), type_name_of(type));
      }
      const std::int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1, cols = t.shape.back();
      const auto bytes = encode(values, rows, cols, type);
      w.add_tensor(sc2::starcoder2_name_to_gguf(name), type, t.shape, bytes);
      ++counts[std::string(type_name_of(type))];
    }
    w.write(output);
    std::string summary;
    for (const auto& [name, count] : counts) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", count, name);
    std::fprintf(stderr, "sc2-quantize: wrote %s (%s): %s tensors\n", output.c_str(), out_type->name, summary.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
