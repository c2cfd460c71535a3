#pragma once
/// \file
/// The tensors of a checkpoint by Hugging Face name, whichever files hold
/// them: safetensors files (one, or sharded), or GGUF files (one, or split)
/// whose names a mapping turns into Hugging Face ones.
///
///     auto index = sc2::TensorIndex::of(sc2::Safetensors::open("starcoder2-3b"));
///     const sc2::TensorInfo& t = index.at("model.norm.weight");

#include <sc2/core/error.hpp>
#include <sc2/io/gguf.hpp>
#include <sc2/io/safetensors.hpp>
#include <sc2/quant/blocks.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sc2 {

/// Tensors by Hugging Face name; keeps the files they live in mapped.
class TensorIndex {
public:
  /// The tensors of `files`, which the index keeps.
  static TensorIndex of(Safetensors files) {
    TensorIndex x;
    auto owner = std::make_shared<const Safetensors>(std::move(files));
    for (const std::string& name : owner->names()) x.index_.emplace(name, owner->find(name));
    for (const SafetensorsFile& f : owner->files()) x.spans_.push_back(f.bytes());
    x.describe_ = owner->describe();
    x.owner_ = owner;
    return x;
  }

  /// The tensors of `gguf`, which the index keeps, each under the name
  /// `rename(gguf_name)` gives it. F32, F16 and BF16 tensors get their dtype,
  /// Q8_0, Q4_0, Q4_K, Q5_K and Q6_K their block format; others neither.
  template <class Rename> static TensorIndex of(Gguf gguf, Rename&& rename) {
    TensorIndex x;
    auto owner = std::make_shared<const Gguf>(std::move(gguf));
    for (const GgufTensor* t : owner->tensors()) {
      TensorInfo info;
      info.name = rename(t->name);
      info.dtype_name = std::string(t->type.name);
      info.shape = t->shape;
      info.bytes = t->bytes;
      info.file = t->file;
      switch (t->type.type) {
        case GgmlType::f32: info.dtype = DType::f32; break;
        case GgmlType::f16: info.dtype = DType::f16; break;
        case GgmlType::bf16: info.dtype = DType::bf16; break;
        case GgmlType::q8_0: info.quant = quant::Format::q8_0; break;
        case GgmlType::q4_0: info.quant = quant::Format::q4_0; break;
        case GgmlType::q4_k: info.quant = quant::Format::q4_k; break;
        case GgmlType::q5_k: info.quant = quant::Format::q5_k; break;
        case GgmlType::q6_k: info.quant = quant::Format::q6_k; break;
        default: break;
      }
      const TensorInfo& kept = x.owned_.emplace_back(std::move(info));
      SC2_CHECK(x.index_.emplace(kept.name, &kept).second, "'{}': two tensors are both named '{}' (from '{}')",
                owner->describe(), kept.name, t->name);
    }
    for (const GgufFile& f : owner->files()) x.spans_.push_back(f.bytes());
    x.describe_ = fmt::format("'{}'", owner->describe());
    x.owner_ = owner;
    return x;
  }

  /// The tensor named `name`, or null.
  const TensorInfo* find(std::string_view name) const noexcept {
    auto it = index_.find(name);
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
    return out;
  }
  /// Total size of the files in bytes.
  std::size_t total_bytes() const noexcept {
    std::size_t n = 0;
    for (const auto& s : spans_) n += s.size();
    return n;
  }
  /// "'a.safetensors'", "the 3 shards in 'dir'" or "'model.gguf'", for messages.
  const std::string& describe() const noexcept { return describe_; }

private:
  std::shared_ptr<const void> owner_;               // the files, mapped
  std::deque<TensorInfo> owned_;                    // GGUF tensors under their new names
  std::map<std::string, const TensorInfo*, std::less<>> index_;
  std::vector<std::span<const std::byte>> spans_;   // every file's bytes
  std::string describe_;
};

}  // namespace sc2
