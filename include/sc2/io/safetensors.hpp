#pragma once
/// \file
/// Safetensors checkpoints: one file or a sharded index, memory-mapped.
///
/// File layout: an 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [b, e]}, ...,
/// "__metadata__": {"k": "v"}}`, then the data section; offsets are relative
/// to the data section. Everything is validated before any tensor is used:
/// the header length against the file size (and a 100 MB limit), the JSON,
/// dtype names, shapes, that each tensor's byte size equals its offsets, that
/// offsets lie inside the data section, are aligned to the element size and
/// do not overlap, and that no name appears twice. Every error names the file
/// and the tensor. Tensor bytes are spans into the mapping: nothing is copied.
///
///     auto ckpt = sc2::Safetensors::open("path/to/checkpoint");   // dir or file
///     const sc2::TensorInfo& t = ckpt.at("model.embed_tokens.weight");

#include <sc2/core/dtype.hpp>
#include <sc2/core/error.hpp>
#include <sc2/io/detail/json_depth.hpp>
#include <sc2/io/mapped_file.hpp>
#include <sc2/quant/blocks.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sc2 {

/// Largest header accepted, as in the reference implementation.
inline constexpr std::uint64_t kMaxSafetensorsHeader = 100'000'000;

/// One tensor of a checkpoint (a safetensors file, or a GGUF file under its
/// Hugging Face name).
struct TensorInfo {
  std::string name;                  ///< Hugging Face name, e.g. "model.norm.weight"
  std::string dtype_name;            ///< as written: "F32", "BF16", "I64", "Q4_K", ...
  std::optional<DType> dtype;        ///< set for the float types sc2 computes with
  std::optional<quant::Format> quant;  ///< set for the GGML block formats sc2 reads (then `dtype` is none)
  std::vector<std::int64_t> shape;   ///< extents, outermost first
  std::span<const std::byte> bytes;  ///< the data, inside the file mapping
  std::filesystem::path file;        ///< the file it lives in

  /// Number of elements.
  std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }
};

/// Writes `t`'s elements, widened to float (F32, BF16, F16) or dequantized as
/// `gguf.quants` does (GGML blocks, row by row), into `out` (t.numel() floats).
/// An `sc2::Error` naming the tensor for any other dtype.
inline void tensor_to_float(const TensorInfo& t, std::span<float> out) {
  SC2_CHECK(out.size() == static_cast<std::size_t>(t.numel()), "tensor '{}': {} floats for {} elements", t.name,
            out.size(), t.numel());
  const std::byte* src = t.bytes.data();
  if (t.quant) {
    const std::int64_t cols = t.shape.empty() ? 1 : t.shape.back();
    const std::size_t row_bytes = quant::row_bytes(*t.quant, cols);
    for (std::size_t r = 0; r * static_cast<std::size_t>(cols) < out.size(); ++r)
      quant::dequantize(*t.quant, src + r * row_bytes, out.data() + r * static_cast<std::size_t>(cols), cols);
    return;
  }
  SC2_CHECK(t.dtype.has_value(), "tensor '{}' in '{}' has dtype {}, which sc2 cannot read as numbers", t.name,
            t.file.string(), t.dtype_name);
  for (std::size_t i = 0; i < out.size(); ++i) {
    switch (*t.dtype) {
      case DType::f32: std::memcpy(&out[i], src + 4 * i, 4); break;
      case DType::bf16: { std::uint16_t b; std::memcpy(&b, src + 2 * i, 2); out[i] = bf16::from_bits(b).to_float(); break; }
      case DType::f16: { std::uint16_t b; std::memcpy(&b, src + 2 * i, 2); out[i] = f16::from_bits(b).to_float(); break; }
    }
  }
}

namespace detail {

/// Element size of a safetensors dtype name, or 0 when the name is unknown.
inline std::size_t safetensors_element_size(std::string_view dtype) noexcept {
  static constexpr std::pair<std::string_view, std::size_t> kSizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2},  {"U16", 2},
      {"F16", 2},  {"BF16", 2}, {"I32", 4}, {"U32", 4},     {"F32", 4},     {"F64", 8}, {"I64", 8}, {"U64", 8}};
  for (auto [name, size] : kSizes)
    if (name == dtype) return size;
  return 0;
}

/// The float dtype sc2 computes with for a safetensors dtype name, if any.
inline std::optional<DType> compute_dtype(std::string_view dtype) noexcept {
  if (dtype == "F32") return DType::f32;
  if (dtype == "BF16") return DType::bf16;
  if (dtype == "F16") return DType::f16;
  return std::nullopt;
}

/// Reads a JSON value as a non-negative integer that fits in int64.
inline std::optional<std::uint64_t> json_unsigned(const nlohmann::json& v) noexcept {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
  return std::nullopt;
}

}  // namespace detail

/// One memory-mapped, validated safetensors file.
class SafetensorsFile {
public:
  /// Maps and validates `path`; an `sc2::Error` naming the file (and tensor) on any defect.
  static SafetensorsFile open(const std::filesystem::path& path) {
    SafetensorsFile f;
    f.file_ = std::make_unique<MappedFile>(path);
    f.parse();
    return f;
  }

  /// All tensors, in the order of their offsets.
  const std::vector<TensorInfo>& tensors() const noexcept { return tensors_; }
  /// The tensor named `name`, or null.
  const TensorInfo* find(std::string_view name) const noexcept {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  /// The `__metadata__` string map.
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  /// The file's path.
  const std::filesystem::path& path() const noexcept { return file_->path(); }
  /// The whole mapped file.
  std::span<const std::byte> bytes() const noexcept { return file_->bytes(); }
  /// The file size in bytes.
  std::size_t file_size() const noexcept { return file_->size(); }

private:
  void parse() {
    const std::string file = path().string();
    const auto bytes = file_->bytes();
    SC2_CHECK(bytes.size() >= 8, "'{}' is not a safetensors file: {} bytes, too short for the 8-byte header length",
              file, bytes.size());
    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<std::uint8_t>(bytes[static_cast<std::size_t>(i)]);
    SC2_CHECK(header_len <= kMaxSafetensorsHeader, "'{}': header length {} exceeds the {} byte limit", file,
              header_len, kMaxSafetensorsHeader);
    SC2_CHECK(header_len <= bytes.size() - 8, "'{}': header length {} exceeds the {} bytes that follow it", file,
              header_len, bytes.size() - 8);
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, header_len);
    const auto data = bytes.subspan(8 + header_len);
    // Deep nesting would overflow the stack when an error message prints a value.
    SC2_CHECK(!detail::json_nested_deeper_than(text), "'{}': the header nests JSON deeper than {} levels", file,
              detail::kMaxJsonDepth);

    // Parse, noting any key that appears twice at the top level.
    std::string duplicate;
    std::set<std::string> seen;
    auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (event == nlohmann::json::parse_event_t::key && depth == 1 && duplicate.empty()) {
        auto name = parsed.get<std::string>();
        if (!seen.insert(name).second) duplicate = std::move(name);
      }
      return true;
    };
    nlohmann::json header = nlohmann::json::parse(text, callback, /*allow_exceptions=*/false);
    SC2_CHECK(!header.is_discarded(), "'{}': the header is not valid JSON", file);
    SC2_CHECK(header.is_object(), "'{}': the header is JSON but not an object", file);
    SC2_CHECK(duplicate.empty(), "'{}': tensor '{}' appears twice in the header", file, duplicate);

    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        SC2_CHECK(entry.is_object(), "'{}': __metadata__ is not an object", file);
        for (const auto& [key, value] : entry.items()) {
          SC2_CHECK(value.is_string(), "'{}': __metadata__ value '{}' is not a string", file, key);
          metadata_[key] = value.get<std::string>();
        }
        continue;
      }
      tensors_.push_back(parse_tensor(file, name, entry, data));
    }
    std::sort(tensors_.begin(), tensors_.end(),
              [](const TensorInfo& a, const TensorInfo& b) { return a.bytes.data() < b.bytes.data(); });
    const TensorInfo* previous = nullptr;
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const TensorInfo& t = tensors_[i];
      if (t.bytes.empty()) continue;
      if (previous)
        SC2_CHECK(t.bytes.data() >= previous->bytes.data() + previous->bytes.size(),
                  "'{}': tensors '{}' and '{}' overlap in the data section", file, previous->name, t.name);
      previous = &t;
    }
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  static TensorInfo parse_tensor(const std::string& file, const std::string& name, const nlohmann::json& entry,
                                 std::span<const std::byte> data) {
    SC2_CHECK(entry.is_object(), "'{}': entry of tensor '{}' is not an object", file, name);
    SC2_CHECK(entry.contains("dtype") && entry["dtype"].is_string(), "'{}': tensor '{}' has no dtype string", file,
              name);
    TensorInfo t;
    t.name = name;
    t.file = file;
    t.dtype_name = entry["dtype"].get<std::string>();
    const std::size_t element = detail::safetensors_element_size(t.dtype_name);
    SC2_CHECK(element != 0, "'{}': tensor '{}' has unknown dtype '{}'", file, name, t.dtype_name);
    t.dtype = detail::compute_dtype(t.dtype_name);

    SC2_CHECK(entry.contains("shape") && entry["shape"].is_array(), "'{}': tensor '{}' has no shape array", file,
              name);
    std::uint64_t count = 1;
    for (const auto& e : entry["shape"]) {
      const auto extent = detail::json_unsigned(e);
      SC2_CHECK(extent && *extent <= static_cast<std::uint64_t>(INT64_MAX),
                "'{}': tensor '{}' has a shape entry that is not a non-negative integer: {}", file, name, e.dump());
      t.shape.push_back(static_cast<std::int64_t>(*extent));
      SC2_CHECK(*extent == 0 || count <= data.size() / *extent,
                "'{}': tensor '{}' of shape {} needs more bytes than the data section's {}", file, name,
                entry["shape"].dump(), data.size());
      count *= *extent;
    }
    SC2_CHECK(count <= data.size() / element, "'{}': tensor '{}' of shape {} needs more bytes than the data section's {}",
              file, name, entry["shape"].dump(), data.size());
    const std::uint64_t expected = count * element;

    const auto& offsets = entry.contains("data_offsets") ? entry["data_offsets"] : nlohmann::json();
    SC2_CHECK(offsets.is_array() && offsets.size() == 2, "'{}': tensor '{}' needs data_offsets [begin, end]", file,
              name);
    const auto begin = detail::json_unsigned(offsets[0]), end = detail::json_unsigned(offsets[1]);
    SC2_CHECK(begin && end && *begin <= *end, "'{}': tensor '{}' has invalid data_offsets {}", file, name,
              offsets.dump());
    SC2_CHECK(*end <= data.size(), "'{}': tensor '{}' ends at byte {}, past the data section's {} bytes", file, name,
              *end, data.size());
    SC2_CHECK(*end - *begin == expected,
              "'{}': tensor '{}' of shape {} and dtype {} needs {} bytes but its offsets span {}", file, name,
              entry["shape"].dump(), t.dtype_name, expected, *end - *begin);
    SC2_CHECK(*begin % element == 0, "'{}': tensor '{}' starts at offset {}, not a multiple of its {}-byte elements",
              file, name, *begin, element);
    t.bytes = data.subspan(*begin, *end - *begin);
    return t;
  }

  std::unique_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

/// All the safetensors files of one checkpoint, found by tensor name.
class Safetensors {
public:
  /// Opens a checkpoint: a `.safetensors` file, or a directory holding
  /// `model.safetensors.index.json` (sharded) or `model.safetensors`.
  static Safetensors open(const std::filesystem::path& path) {
    Safetensors s;
    namespace fs = std::filesystem;
    SC2_CHECK(fs::exists(path), "checkpoint '{}' does not exist", path.string());
    if (!fs::is_directory(path)) {
      s.add_file(path);
      return s;
    }
    const fs::path index = path / "model.safetensors.index.json";
    if (fs::exists(index)) {
      s.open_index(index);
      return s;
    }
    const fs::path single = path / "model.safetensors";
    SC2_CHECK(fs::exists(single), "'{}' holds neither model.safetensors nor model.safetensors.index.json",
              path.string());
    s.add_file(single);
    return s;
  }

  /// The tensor named `name`, or null.
  const TensorInfo* find(std::string_view name) const noexcept {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : it->second;
  }
  /// The tensor named `name`; an `sc2::Error` naming it and the files if absent.
  const TensorInfo& at(std::string_view name) const {
    const TensorInfo* t = find(name);
    SC2_CHECK(t != nullptr, "tensor '{}' is missing from {}", name, describe());
    return *t;
  }
  /// Every tensor name, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, info] : index_) out.push_back(name);
    std::sort(out.begin(), out.end());
    return out;
  }
  /// The opened files.
  const std::vector<SafetensorsFile>& files() const noexcept { return files_; }
  /// Total size of the files in bytes.
  std::size_t total_bytes() const noexcept {
    std::size_t n = 0;
    for (const auto& f : files_) n += f.file_size();
    return n;
  }
  /// Reads every page of every file once, so the first forward pass does not
  /// wait on the disk; `progress(bytes_done, bytes_total)` is called as it goes.
  template <class Progress> void prefetch(Progress&& progress) const {
    constexpr std::size_t kPage = 4096, kStep = std::size_t{64} << 20;
    const std::size_t total = total_bytes();
    std::size_t done = 0;
    volatile unsigned char sink = 0;
    for (const auto& f : files_) {
      const auto bytes = f.bytes();
      for (std::size_t begin = 0; begin < bytes.size(); begin += kStep) {
        const std::size_t end = std::min(bytes.size(), begin + kStep);
        unsigned char acc = 0;
        for (std::size_t i = begin; i < end; i += kPage) acc ^= static_cast<unsigned char>(bytes[i]);
        sink = sink ^ acc;
        done += end - begin;
        progress(done, total);
      }
    }
    (void)sink;
  }

  /// "'a.safetensors'" or "the 3 shards of 'dir'", for messages.
  std::string describe() const {
    if (files_.size() == 1) return fmt::format("'{}'", files_[0].path().string());
    return fmt::format("the {} shards in '{}'", files_.size(),
                       files_.empty() ? std::string() : files_[0].path().parent_path().string());
  }

private:
  void add_file(const std::filesystem::path& path) {
    files_.push_back(SafetensorsFile::open(path));
    const SafetensorsFile& f = files_.back();
    for (const auto& t : f.tensors()) {
      auto [it, inserted] = index_.emplace(t.name, &t);
      SC2_CHECK(inserted, "tensor '{}' appears in both '{}' and '{}'", t.name, it->second->file.string(),
                t.file.string());
    }
  }

  void open_index(const std::filesystem::path& index_path) {
    const std::string file = index_path.string();
    const nlohmann::json index = nlohmann::json::parse(read_text_file(index_path), nullptr, false);
    SC2_CHECK(!index.is_discarded() && index.is_object(), "'{}' is not a JSON object", file);
    SC2_CHECK(index.contains("weight_map") && index["weight_map"].is_object(), "'{}' has no weight_map object", file);
    std::map<std::string, std::vector<std::string>> shards;  // shard file -> tensor names
    for (const auto& [name, shard] : index["weight_map"].items()) {
      SC2_CHECK(shard.is_string(), "'{}': weight_map entry '{}' is not a file name", file, name);
      const std::string shard_name = shard.get<std::string>();
      SC2_CHECK(!shard_name.empty() && shard_name.find('/') == std::string::npos && shard_name != ".." &&
                    shard_name != ".",
                "'{}': weight_map entry '{}' names '{}', which is not a file in the checkpoint directory", file, name,
                shard_name);
      shards[shard_name].push_back(name);
    }
    SC2_CHECK(!shards.empty(), "'{}': weight_map is empty", file);
    files_.reserve(shards.size());
    for (const auto& [shard, names] : shards) {
      const auto shard_path = index_path.parent_path() / shard;
      SC2_CHECK(std::filesystem::exists(shard_path), "'{}' names shard '{}', which does not exist", file,
                shard_path.string());
      add_file(shard_path);
      for (const auto& name : names) {
        const TensorInfo* t = find(name);
        SC2_CHECK(t != nullptr && t->file == shard_path, "'{}' places tensor '{}' in '{}', which does not hold it",
                  file, name, shard);
      }
    }
  }

  std::vector<SafetensorsFile> files_;
  std::unordered_map<std::string, const TensorInfo*> index_;
};

/// The name, dtype and shape of a tensor to write.
struct TensorSpec {
  std::string name;                 ///< tensor name
  std::string dtype;                ///< "F32", "BF16", "F16", ...
  std::vector<std::int64_t> shape;  ///< extents

  /// Bytes the tensor occupies.
  std::uint64_t bytes() const {
    std::uint64_t count = 1;
    for (auto e : shape) count *= static_cast<std::uint64_t>(e);
    const std::size_t element = detail::safetensors_element_size(dtype);
    SC2_CHECK(element != 0, "tensor '{}': unknown dtype '{}'", name, dtype);
    return count * element;
  }
};

/// Writes a safetensors file tensor by tensor: `fill(i, bytes)` writes the
/// raw little-endian bytes of `specs[i]` into `bytes`, so a multi-gigabyte
/// checkpoint never needs to be in memory at once. The header is padded to 8
/// bytes, so every tensor of a float type is aligned for in-place use.
template <class Fill>
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorSpec>& specs, Fill&& fill,
                       const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0, largest = 0;
  for (const auto& t : specs) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes()}}};
    offset += t.bytes();
    largest = std::max(largest, t.bytes());
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary);
  SC2_CHECK(out.good(), "cannot create '{}'", path.string());
  const std::uint64_t n = text.size();
  char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.write(length, 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  std::vector<std::byte> scratch(static_cast<std::size_t>(largest));
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const std::span<std::byte> bytes(scratch.data(), static_cast<std::size_t>(specs[i].bytes()));
    fill(i, bytes);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  SC2_CHECK(out.good(), "writing '{}' failed", path.string());
}

/// A tensor to write from memory: its spec and its raw little-endian bytes.
struct TensorToWrite {
  std::string name;                  ///< tensor name
  std::string dtype;                 ///< "F32", "BF16", "F16", ...
  std::vector<std::int64_t> shape;   ///< extents
  std::span<const std::byte> bytes;  ///< exactly numel × element size bytes
};

/// Writes a safetensors file from tensors in memory (header padded to 8 bytes, tensors in order).
inline void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) {
    specs.push_back({t.name, t.dtype, t.shape});
    SC2_CHECK(specs.back().bytes() == t.bytes.size(), "write_safetensors: tensor '{}' has {} bytes, its shape needs {}",
              t.name, t.bytes.size(), specs.back().bytes());
  }
  write_safetensors(
      path, specs,
      [&](std::size_t i, std::span<std::byte> out) { std::memcpy(out.data(), tensors[i].bytes.data(), out.size()); },
      metadata);
}

}  // namespace sc2
