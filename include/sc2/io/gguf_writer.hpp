#pragma once
/// \file
/// Writes GGUF files (version 3) that llama.cpp and `sc2::Gguf` read: metadata
/// of the common value types, then tensors, each at an offset aligned to 32
/// bytes (see gguf.hpp for the layout).
///
///     sc2::GgufWriter w;
///     w.add_string("general.architecture", "starcoder2");
///     w.add_u32("starcoder2.block_count", 30);
///     w.add_tensor("token_embd.weight", sc2::GgmlType::q8_0, {V, D}, bytes);
///     w.write("model.gguf");

#include <sc2/core/error.hpp>
#include <sc2/io/gguf.hpp>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sc2 {

/// Builds a GGUF file in memory order: metadata first, then tensors.
class GgufWriter {
public:
  /// The alignment of the data section and of every tensor in it.
  static constexpr std::uint64_t kAlignment = 32;

  /// A u32 value.
  void add_u32(std::string_view key, std::uint32_t v) { scalar(key, GgufValueType::u32, v); }
  /// An i32 value.
  void add_i32(std::string_view key, std::int32_t v) { scalar(key, GgufValueType::i32, v); }
  /// An f32 value.
  void add_f32(std::string_view key, float v) { scalar(key, GgufValueType::f32, v); }
  /// A bool value.
  void add_bool(std::string_view key, bool v) { scalar(key, GgufValueType::boolean, static_cast<std::uint8_t>(v)); }
  /// A string value.
  void add_string(std::string_view key, std::string_view v) {
    begin(key, GgufValueType::string);
    put_string(kv_, v);
  }
  /// An array of strings.
  void add_strings(std::string_view key, std::span<const std::string> values) {
    begin(key, GgufValueType::array);
    put(kv_, static_cast<std::uint32_t>(GgufValueType::string));
    put(kv_, static_cast<std::uint64_t>(values.size()));
    for (const std::string& v : values) put_string(kv_, v);
  }
  /// An array of i32.
  void add_i32s(std::string_view key, std::span<const std::int32_t> values) {
    begin(key, GgufValueType::array);
    put(kv_, static_cast<std::uint32_t>(GgufValueType::i32));
    put(kv_, static_cast<std::uint64_t>(values.size()));
    for (const std::int32_t v : values) put(kv_, v);
  }

  /// A tensor of `type` and `shape` (outermost first, as Hugging Face writes
  /// it); `bytes` must hold exactly its blocks and is copied.
  void add_tensor(std::string_view name, GgmlType type, std::vector<std::int64_t> shape,
                  std::span<const std::byte> bytes) {
    const auto traits = ggml_type_traits(static_cast<std::uint32_t>(type));
    SC2_CHECK(traits.has_value() && !shape.empty() && shape.size() <= kGgufMaxDims,
              "GgufWriter: tensor '{}' has an unknown type or {} dimensions", name, shape.size());
    std::uint64_t count = 1;
    for (const std::int64_t e : shape) count *= static_cast<std::uint64_t>(e);
    SC2_CHECK(shape.back() % traits->block == 0 &&
                  bytes.size() == count / static_cast<std::uint64_t>(traits->block) * traits->block_bytes,
              "GgufWriter: tensor '{}' of type {} needs whole blocks, got {} bytes", name, traits->name,
              bytes.size());
    data_.resize((data_.size() + kAlignment - 1) / kAlignment * kAlignment, '\0');
    put_string(infos_, name);
    put(infos_, static_cast<std::uint32_t>(shape.size()));
    for (auto it = shape.rbegin(); it != shape.rend(); ++it) put(infos_, static_cast<std::uint64_t>(*it));
    put(infos_, static_cast<std::uint32_t>(type));
    put(infos_, static_cast<std::uint64_t>(data_.size()));
    data_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    ++tensors_;
  }

  /// Writes the file; an `sc2::Error` naming it if it cannot.
  void write(const std::filesystem::path& path) const {
    std::string head = "GGUF";
    put(head, std::uint32_t{3});
    put(head, tensors_);
    put(head, kvs_);
    head += kv_;
    head += infos_;
    head.resize((head.size() + kAlignment - 1) / kAlignment * kAlignment, '\0');
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    SC2_CHECK(out.good(), "cannot write '{}': {}", path.string(), std::strerror(errno));
    out.write(head.data(), static_cast<std::streamsize>(head.size()));
    out.write(data_.data(), static_cast<std::streamsize>(data_.size()));
    SC2_CHECK(out.good(), "writing '{}' failed: {}", path.string(), std::strerror(errno));
  }

private:
  template <class T> static void put(std::string& s, T v) { s.append(reinterpret_cast<const char*>(&v), sizeof v); }
  static void put_string(std::string& s, std::string_view v) {
    put(s, static_cast<std::uint64_t>(v.size()));
    s.append(v);
  }
  void begin(std::string_view key, GgufValueType type) {
    put_string(kv_, key);
    put(kv_, static_cast<std::uint32_t>(type));
    ++kvs_;
  }
  template <class T> void scalar(std::string_view key, GgufValueType type, T v) {
    begin(key, type);
    put(kv_, v);
  }

  std::string kv_, infos_, data_;
  std::uint64_t kvs_ = 0, tensors_ = 0;
};

}  // namespace sc2
