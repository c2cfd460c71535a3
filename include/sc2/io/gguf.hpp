#pragma once
/// \file
/// GGUF files (llama.cpp's format, versions 2 and 3): one file or a split set,
/// memory-mapped and validated.
///
/// Layout, little-endian:
///
///     "GGUF"  u32 version  u64 tensor_count  u64 kv_count
///     kv_count × { string key, u32 type, value }              metadata
///     tensor_count × { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
///     padding to `general.alignment` (default 32)
///     data section; each tensor at its offset, a multiple of the alignment
///
/// where a string is a u64 length and that many bytes, and a value is a
/// scalar (u8 … f64, bool), a string, or an array (u32 element type, u64
/// count, elements). ne[0] is the innermost extent: a Hugging Face (rows,
/// cols) matrix is stored with ne = [cols, rows].
///
/// Everything is checked before a tensor is used: the magic and version,
/// counts and string lengths against the bytes left, value types, array
/// nesting, duplicate keys and names, the alignment, each tensor's dimensions
/// (1 to 4, positive, the innermost a whole number of blocks), its type, its
/// byte size (without overflow), that its offset is aligned and that it lies
/// inside the data section without overlapping another. Every error names the
/// file and the key or tensor. Tensor bytes are spans into the mapping.
///
///     auto gguf = sc2::Gguf::open("starcoder2-3b-Q8_0.gguf");    // or the first of a split set
///     std::uint64_t layers = gguf.unsigned_integer("starcoder2.block_count");
///     const sc2::GgufTensor& t = gguf.tensor("blk.0.attn_q.weight");

#include <sc2/core/error.hpp>
#include <sc2/io/mapped_file.hpp>

#include <fmt/ranges.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sc2 {

/// A tensor type of GGML (the ids GGUF files store).
enum class GgmlType : std::uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9, q2_k = 10, q3_k = 11, q4_k = 12,
  q5_k = 13, q6_k = 14, q8_k = 15, iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21,
  iq2_s = 22, iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30, tq1_0 = 34,
  tq2_0 = 35, mxfp4 = 39
};

/// Name, elements per block and bytes per block of a GGML type.
struct GgmlTypeTraits {
  GgmlType type = GgmlType::f32;  ///< the type
  std::string_view name = "F32";  ///< GGML's name ("Q4_K", ...)
  std::int64_t block = 1;         ///< elements per block
  std::size_t block_bytes = 4;    ///< bytes per block
};

/// The traits of the GGML type with id `id`, or none for an id this reader does not know.
inline std::optional<GgmlTypeTraits> ggml_type_traits(std::uint32_t id) noexcept {
  using T = GgmlType;
  static constexpr GgmlTypeTraits kTypes[] = {
      {T::f32, "F32", 1, 4},          {T::f16, "F16", 1, 2},         {T::q4_0, "Q4_0", 32, 18},
      {T::q4_1, "Q4_1", 32, 20},      {T::q5_0, "Q5_0", 32, 22},     {T::q5_1, "Q5_1", 32, 24},
      {T::q8_0, "Q8_0", 32, 34},      {T::q8_1, "Q8_1", 32, 40},     {T::q2_k, "Q2_K", 256, 84},
      {T::q3_k, "Q3_K", 256, 110},    {T::q4_k, "Q4_K", 256, 144},   {T::q5_k, "Q5_K", 256, 176},
      {T::q6_k, "Q6_K", 256, 210},    {T::q8_k, "Q8_K", 256, 292},   {T::iq2_xxs, "IQ2_XXS", 256, 66},
      {T::iq2_xs, "IQ2_XS", 256, 74}, {T::iq3_xxs, "IQ3_XXS", 256, 98}, {T::iq1_s, "IQ1_S", 256, 50},
      {T::iq4_nl, "IQ4_NL", 32, 18},  {T::iq3_s, "IQ3_S", 256, 110}, {T::iq2_s, "IQ2_S", 256, 82},
      {T::iq4_xs, "IQ4_XS", 256, 136}, {T::i8, "I8", 1, 1},          {T::i16, "I16", 1, 2},
      {T::i32, "I32", 1, 4},          {T::i64, "I64", 1, 8},         {T::f64, "F64", 1, 8},
      {T::iq1_m, "IQ1_M", 256, 56},   {T::bf16, "BF16", 1, 2},       {T::tq1_0, "TQ1_0", 256, 54},
      {T::tq2_0, "TQ2_0", 256, 66},   {T::mxfp4, "MXFP4", 32, 17}};
  for (const GgmlTypeTraits& t : kTypes)
    if (static_cast<std::uint32_t>(t.type) == id) return t;
  return std::nullopt;
}

/// The type of a GGUF metadata value.
enum class GgufValueType : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9, u64 = 10,
  i64 = 11, f64 = 12
};

/// One metadata value: a scalar, a string, or an array of either.
struct GgufValue {
  GgufValueType type = GgufValueType::u8;          ///< its type
  GgufValueType element = GgufValueType::u8;       ///< arrays: the element type
  std::uint64_t count = 0;                         ///< arrays: the number of elements
  std::span<const std::byte> raw;                  ///< scalars and numeric arrays: the bytes, in the mapping
  std::string_view text;                           ///< strings: the text, in the mapping
  std::vector<std::string_view> strings;           ///< arrays of strings: the texts, in the mapping
};

/// One tensor of a GGUF file.
struct GgufTensor {
  std::string name;                  ///< GGUF name, e.g. "blk.0.attn_q.weight"
  GgmlTypeTraits type;               ///< its GGML type
  std::vector<std::int64_t> shape;   ///< extents, outermost first (ne reversed)
  std::span<const std::byte> bytes;  ///< the data, inside the file mapping
  std::filesystem::path file;        ///< the file it lives in

  /// Number of elements.
  std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }
};

/// Most dimensions of a GGML tensor.
inline constexpr std::uint32_t kGgufMaxDims = 4;
/// Deepest nesting of arrays accepted in GGUF metadata.
inline constexpr int kGgufMaxArrayDepth = 4;

/// One memory-mapped, validated GGUF file.
class GgufFile {
public:
  /// Maps and validates `path`; an `sc2::Error` naming the file (and key or tensor) on any defect.
  static GgufFile open(const std::filesystem::path& path) {
    GgufFile f;
    f.file_ = std::make_unique<MappedFile>(path);
    f.parse();
    return f;
  }

  /// The format version (2 or 3).
  std::uint32_t version() const noexcept { return version_; }
  /// The metadata, by key.
  const std::map<std::string, GgufValue, std::less<>>& metadata() const noexcept { return metadata_; }
  /// The value of `key`, or null.
  const GgufValue* find(std::string_view key) const noexcept {
    auto it = metadata_.find(key);
    return it == metadata_.end() ? nullptr : &it->second;
  }
  /// All tensors, in the order of their offsets.
  const std::vector<GgufTensor>& tensors() const noexcept { return tensors_; }
  /// The tensor named `name`, or null.
  const GgufTensor* find_tensor(std::string_view name) const noexcept {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  /// The alignment of the data section and its tensors.
  std::uint64_t alignment() const noexcept { return alignment_; }
  /// The file's path.
  const std::filesystem::path& path() const noexcept { return file_->path(); }
  /// The whole mapped file.
  std::span<const std::byte> bytes() const noexcept { return file_->bytes(); }

private:
  // Reads the file front to back; every read checks the bytes left first.
  class Cursor {
  public:
    Cursor(std::span<const std::byte> bytes, const std::string& file) : bytes_(bytes), file_(file) {}
    std::size_t offset() const noexcept { return at_; }
    std::size_t left() const noexcept { return bytes_.size() - at_; }
    std::span<const std::byte> take(std::uint64_t n, std::string_view what) {
      SC2_CHECK(n <= left(), "'{}': {} needs {} bytes at offset {}, but the file has {} left", file_, what, n, at_,
                left());
      const auto out = bytes_.subspan(at_, static_cast<std::size_t>(n));
      at_ += static_cast<std::size_t>(n);
      return out;
    }
    template <class T> T scalar(std::string_view what) {
      T v;
      std::memcpy(&v, take(sizeof(T), what).data(), sizeof(T));
      return v;
    }
    std::string_view string(std::string_view what) {
      const auto n = scalar<std::uint64_t>(what);
      const auto s = take(n, what);
      return {reinterpret_cast<const char*>(s.data()), s.size()};
    }

  private:
    std::span<const std::byte> bytes_;
    const std::string& file_;
    std::size_t at_ = 0;
  };

  static std::size_t scalar_size(GgufValueType t) noexcept {
    switch (t) {
      case GgufValueType::u8: case GgufValueType::i8: case GgufValueType::boolean: return 1;
      case GgufValueType::u16: case GgufValueType::i16: return 2;
      case GgufValueType::u32: case GgufValueType::i32: case GgufValueType::f32: return 4;
      case GgufValueType::u64: case GgufValueType::i64: case GgufValueType::f64: return 8;
      case GgufValueType::string: case GgufValueType::array: return 0;
    }
    return 0;
  }

  GgufValueType value_type(Cursor& in, const std::string& key) {
    const auto t = in.scalar<std::uint32_t>("a value type");
    SC2_CHECK(t <= 12, "'{}': key '{}' has unknown value type {}", path().string(), key, t);
    return static_cast<GgufValueType>(t);
  }

  GgufValue value(Cursor& in, GgufValueType type, const std::string& key, int depth) {
    GgufValue v;
    v.type = type;
    if (type == GgufValueType::string) {
      v.text = in.string(fmt::format("the string of key '{}'", key));
    } else if (type == GgufValueType::array) {
      SC2_CHECK(depth < kGgufMaxArrayDepth, "'{}': key '{}' nests arrays deeper than {} levels", path().string(), key,
                kGgufMaxArrayDepth);
      v.element = value_type(in, key);
      v.count = in.scalar<std::uint64_t>("an array length");
      if (v.element == GgufValueType::string) {
        // Each string takes at least its 8-byte length: bound the count before reserving.
        SC2_CHECK(v.count <= in.left() / 8, "'{}': key '{}' holds {} strings, more than the {} bytes left could",
                  path().string(), key, v.count, in.left());
        v.strings.reserve(static_cast<std::size_t>(v.count));
        for (std::uint64_t i = 0; i < v.count; ++i)
          v.strings.push_back(in.string(fmt::format("string {} of key '{}'", i, key)));
      } else if (v.element == GgufValueType::array) {
        SC2_CHECK(v.count <= in.left() / 12, "'{}': key '{}' holds {} arrays, more than the {} bytes left could",
                  path().string(), key, v.count, in.left());
        for (std::uint64_t i = 0; i < v.count; ++i) (void)value(in, GgufValueType::array, key, depth + 1);
      } else {
        const std::size_t size = scalar_size(v.element);
        SC2_CHECK(v.count <= in.left() / size, "'{}': key '{}' holds {} elements of {} bytes, more than the {} left",
                  path().string(), key, v.count, size, in.left());
        v.raw = in.take(v.count * size, key);
      }
    } else {
      v.raw = in.take(scalar_size(type), key);
    }
    return v;
  }

  void parse() {
    const std::string file = path().string();
    Cursor in(bytes(), file);
    SC2_CHECK(bytes().size() >= 24, "'{}' is not a GGUF file: {} bytes, too short for the 24-byte header", file,
              bytes().size());
    const auto magic = in.take(4, "the magic");
    SC2_CHECK(std::memcmp(magic.data(), "GGUF", 4) == 0, "'{}' is not a GGUF file: it does not start with \"GGUF\"",
              file);
    version_ = in.scalar<std::uint32_t>("the version");
    SC2_CHECK(version_ == 2 || version_ == 3, "'{}': GGUF version {} is not supported (2 and 3 are)", file,
              version_);
    const auto tensor_count = in.scalar<std::uint64_t>("the tensor count");
    const auto kv_count = in.scalar<std::uint64_t>("the metadata count");
    // A key-value pair takes at least 8 + 4 + 1 bytes, a tensor description 8 + 4 + 8 + 4 + 8.
    SC2_CHECK(kv_count <= in.left() / 13, "'{}': {} metadata entries cannot fit in the {} bytes left", file,
              kv_count, in.left());
    for (std::uint64_t i = 0; i < kv_count; ++i) {
      const std::string key(in.string("a metadata key"));
      const GgufValueType type = value_type(in, key);
      GgufValue v = value(in, type, key, 0);
      SC2_CHECK(metadata_.emplace(key, std::move(v)).second, "'{}': key '{}' appears twice", file, key);
    }
    if (const GgufValue* a = find("general.alignment")) {
      SC2_CHECK(a->type == GgufValueType::u32, "'{}': general.alignment must be a u32", file);
      std::uint32_t align;
      std::memcpy(&align, a->raw.data(), 4);
      SC2_CHECK(align != 0 && (align & (align - 1)) == 0, "'{}': general.alignment {} is not a power of two", file,
                align);
      alignment_ = align;
    }

    SC2_CHECK(tensor_count <= in.left() / 32, "'{}': {} tensors cannot fit in the {} bytes left", file,
              tensor_count, in.left());
    struct Pending {
      GgufTensor tensor;
      std::uint64_t offset, size;
    };
    std::vector<Pending> pending;
    pending.reserve(static_cast<std::size_t>(tensor_count));
    for (std::uint64_t i = 0; i < tensor_count; ++i) {
      Pending p;
      p.tensor.name = std::string(in.string("a tensor name"));
      const std::string& name = p.tensor.name;
      const auto n_dims = in.scalar<std::uint32_t>("a tensor's dimension count");
      SC2_CHECK(n_dims >= 1 && n_dims <= kGgufMaxDims, "'{}': tensor '{}' has {} dimensions (1 to {} allowed)", file,
                name, n_dims, kGgufMaxDims);
      std::vector<std::uint64_t> ne(n_dims);
      for (auto& e : ne) e = in.scalar<std::uint64_t>("a tensor's extent");
      const auto type_id = in.scalar<std::uint32_t>("a tensor's type");
      const auto traits = ggml_type_traits(type_id);
      SC2_CHECK(traits.has_value(), "'{}': tensor '{}' has unknown GGML type {}", file, name, type_id);
      p.tensor.type = *traits;
      p.offset = in.scalar<std::uint64_t>("a tensor's offset");
      // Extents positive and their product bounded by what the file could hold: no overflow below.
      const std::uint64_t most = static_cast<std::uint64_t>(bytes().size()) * static_cast<std::uint64_t>(traits->block);
      std::uint64_t count = 1;
      for (const std::uint64_t e : ne) {
        SC2_CHECK(e >= 1 && count <= most / e, "'{}': tensor '{}' of extents [{}] holds more elements than the file could",
                  file, name, fmt::join(ne, ", "));
        count *= e;
      }
      SC2_CHECK(ne[0] % static_cast<std::uint64_t>(traits->block) == 0,
                "'{}': tensor '{}' of type {} has rows of {} elements, not a whole number of {}-element blocks", file,
                name, traits->name, ne[0], traits->block);
      p.size = count / static_cast<std::uint64_t>(traits->block) * traits->block_bytes;
      SC2_CHECK(p.offset % alignment_ == 0, "'{}': tensor '{}' starts at offset {}, not a multiple of the alignment {}",
                file, name, p.offset, alignment_);
      for (auto it = ne.rbegin(); it != ne.rend(); ++it) p.tensor.shape.push_back(static_cast<std::int64_t>(*it));
      p.tensor.file = path();
      pending.push_back(std::move(p));
    }
    const std::uint64_t data_start = (in.offset() + alignment_ - 1) / alignment_ * alignment_;
    SC2_CHECK(data_start <= bytes().size(), "'{}': the data section would start at {}, past the end of the {}-byte file",
              file, data_start, bytes().size());
    const std::uint64_t data_size = bytes().size() - data_start;
    std::sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) { return a.offset < b.offset; });
    std::uint64_t previous_end = 0;
    std::string previous_name;
    for (Pending& p : pending) {
      SC2_CHECK(p.offset <= data_size && p.size <= data_size - p.offset,
                "'{}': tensor '{}' ({} bytes at offset {}) ends past the data section's {} bytes", file,
                p.tensor.name, p.size, p.offset, data_size);
      SC2_CHECK(previous_name.empty() || previous_end <= p.offset,
                "'{}': tensors '{}' and '{}' overlap in the data section", file, previous_name, p.tensor.name);
      previous_end = p.offset + p.size;
      previous_name = p.tensor.name;
      p.tensor.bytes = bytes().subspan(static_cast<std::size_t>(data_start + p.offset), static_cast<std::size_t>(p.size));
      SC2_CHECK(index_.emplace(p.tensor.name, tensors_.size()).second, "'{}': tensor '{}' appears twice", file,
                p.tensor.name);
      tensors_.push_back(std::move(p.tensor));
    }
  }

  std::unique_ptr<MappedFile> file_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

/// A GGUF model: one file, or every file of a split set (`name-00001-of-00003.gguf`,
/// as llama.cpp's gguf-split writes them), with typed access to the metadata.
class Gguf {
public:
  /// Opens `path`; when it is one file of a split set, opens all of them.
  static Gguf open(const std::filesystem::path& path) {
    Gguf g;
    g.files_.push_back(GgufFile::open(path));
    const std::uint64_t count = g.optional_unsigned("split.count").value_or(1);
    if (count > 1) {
      static const std::regex kSplitName(R"((.*)-(\d{5})-of-(\d{5})\.gguf)");
      std::smatch m;
      const std::string name = path.filename().string();
      SC2_CHECK(std::regex_match(name, m, kSplitName),
                "'{}' says it is one of {} split files, but its name is not <name>-NNNNN-of-NNNNN.gguf",
                path.string(), count);
      SC2_CHECK(std::stoull(m[3].str()) == count, "'{}': split.count is {} but the name says {}", path.string(),
                count, m[3].str());
      g.files_.clear();
      for (std::uint64_t i = 1; i <= count; ++i) {
        const auto part = path.parent_path() / fmt::format("{}-{:05}-of-{}.gguf", m[1].str(), i, m[3].str());
        SC2_CHECK(std::filesystem::exists(part), "'{}' is one of {} split files, but '{}' does not exist",
                  path.string(), count, part.string());
        g.files_.push_back(GgufFile::open(part));
      }
    }
    for (std::size_t f = 0; f < g.files_.size(); ++f)
      for (const GgufTensor& t : g.files_[f].tensors())
        SC2_CHECK(g.index_.emplace(t.name, &t).second, "tensor '{}' is in more than one file of '{}'", t.name,
                  path.string());
    return g;
  }

  /// The files, the first holding the metadata.
  const std::vector<GgufFile>& files() const noexcept { return files_; }
  /// The metadata value of `key` (from the first file), or null.
  const GgufValue* find(std::string_view key) const noexcept { return files_.front().find(key); }
  /// The tensor named `name`, or null.
  const GgufTensor* find_tensor(std::string_view name) const noexcept {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : it->second;
  }
  /// The tensor named `name`; an `sc2::Error` naming the file when it is missing.
  const GgufTensor& tensor(std::string_view name) const {
    const GgufTensor* t = find_tensor(name);
    SC2_CHECK(t != nullptr, "tensor '{}' is missing from '{}'", name, describe());
    return *t;
  }
  /// Every tensor of every file.
  std::vector<const GgufTensor*> tensors() const {
    std::vector<const GgufTensor*> out;
    for (const GgufFile& f : files_)
      for (const GgufTensor& t : f.tensors()) out.push_back(&t);
    return out;
  }
  /// The first file's path, and how many files the set has.
  std::string describe() const {
    return files_.size() == 1 ? files_.front().path().string()
                              : fmt::format("{} (and {} more files)", files_.front().path().string(), files_.size() - 1);
  }

  /// An unsigned integer of any width (or a non-negative signed one), or none when the key is absent.
  std::optional<std::uint64_t> optional_unsigned(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    auto read = [&]<class T>(T) {
      T x;
      std::memcpy(&x, v->raw.data(), sizeof x);
      return x;
    };
    switch (v->type) {
      case GgufValueType::u8: return read(std::uint8_t{});
      case GgufValueType::u16: return read(std::uint16_t{});
      case GgufValueType::u32: return read(std::uint32_t{});
      case GgufValueType::u64: return read(std::uint64_t{});
      case GgufValueType::i8: case GgufValueType::i16: case GgufValueType::i32: case GgufValueType::i64: {
        const std::int64_t s = v->type == GgufValueType::i8    ? read(std::int8_t{})
                               : v->type == GgufValueType::i16 ? read(std::int16_t{})
                               : v->type == GgufValueType::i32 ? read(std::int32_t{})
                                                               : read(std::int64_t{});
        SC2_CHECK(s >= 0, "'{}': key '{}' is {}, expected a non-negative integer", describe(), key, s);
        return static_cast<std::uint64_t>(s);
      }
      default: SC2_FAIL("'{}': key '{}' is not an integer", describe(), key);
    }
  }
  /// An unsigned integer; an `sc2::Error` when the key is absent.
  std::uint64_t unsigned_integer(std::string_view key) const {
    const auto v = optional_unsigned(key);
    SC2_CHECK(v.has_value(), "'{}' has no key '{}'", describe(), key);
    return *v;
  }
  /// A number (f32, f64 or an integer), or none when the key is absent.
  std::optional<double> optional_number(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type == GgufValueType::f32) {
      float f;
      std::memcpy(&f, v->raw.data(), 4);
      return f;
    }
    if (v->type == GgufValueType::f64) {
      double d;
      std::memcpy(&d, v->raw.data(), 8);
      return d;
    }
    return static_cast<double>(unsigned_integer(key));
  }
  /// A string, or none when the key is absent.
  std::optional<std::string_view> optional_string(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    SC2_CHECK(v->type == GgufValueType::string, "'{}': key '{}' is not a string", describe(), key);
    return v->text;
  }
  /// An array of strings; an `sc2::Error` when the key is absent or holds something else.
  std::span<const std::string_view> strings(std::string_view key) const {
    const GgufValue* v = find(key);
    SC2_CHECK(v != nullptr, "'{}' has no key '{}'", describe(), key);
    SC2_CHECK(v->type == GgufValueType::array && v->element == GgufValueType::string,
              "'{}': key '{}' is not an array of strings", describe(), key);
    return v->strings;
  }
  /// An array of integers of any width, widened to int64; an `sc2::Error` when absent or not integers.
  std::vector<std::int64_t> integers(std::string_view key) const {
    const GgufValue* v = find(key);
    SC2_CHECK(v != nullptr, "'{}' has no key '{}'", describe(), key);
    SC2_CHECK(v->type == GgufValueType::array, "'{}': key '{}' is not an array", describe(), key);
    std::vector<std::int64_t> out(static_cast<std::size_t>(v->count));
    const std::byte* p = v->raw.data();
    for (std::size_t i = 0; i < out.size(); ++i) {
      auto read = [&]<class T>(T) {
        T x;
        std::memcpy(&x, p + i * sizeof(T), sizeof x);
        return static_cast<std::int64_t>(x);
      };
      switch (v->element) {
        case GgufValueType::u8: out[i] = read(std::uint8_t{}); break;
        case GgufValueType::i8: out[i] = read(std::int8_t{}); break;
        case GgufValueType::u16: out[i] = read(std::uint16_t{}); break;
        case GgufValueType::i16: out[i] = read(std::int16_t{}); break;
        case GgufValueType::u32: out[i] = read(std::uint32_t{}); break;
        case GgufValueType::i32: out[i] = read(std::int32_t{}); break;
        case GgufValueType::i64: out[i] = read(std::int64_t{}); break;
        case GgufValueType::u64: {
          std::uint64_t x;
          std::memcpy(&x, p + i * 8, 8);
          SC2_CHECK(x <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()),
                    "'{}': element {} of key '{}' is too large", describe(), i, key);
          out[i] = static_cast<std::int64_t>(x);
          break;
        }
        default: SC2_FAIL("'{}': key '{}' is not an array of integers", describe(), key);
      }
    }
    return out;
  }

private:
  std::vector<GgufFile> files_;
  std::map<std::string, const GgufTensor*, std::less<>> index_;
};

}  // namespace sc2
