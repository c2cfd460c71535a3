#pragma once
/// \file
/// The key/value cache of one sequence: per layer, a ring of C slots.
///
/// Position p lives in slot p mod C. With a sliding window W the model needs
/// at most the last W − 1 past keys, so C = W and the memory is bounded by
/// the window whatever the context length; without a window C is the context
/// limit. Keys are stored after RoPE, as the reference caches them.
///
///     keys, values: layers × (Hkv, C, Dh) floats
///
/// Head-major, so that the keys (and values) one kv head attends over are one
/// contiguous run that the processor streams.
///
/// `length()` is the number of tokens the sequence has seen, which is the
/// absolute position of the next token.

#include <sc2/core/buffer.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/ops/attention.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <unistd.h>

namespace sc2 {

/// Per-layer rings of rotated keys and values for one sequence.
class KvCache {
public:
  /// An empty cache that holds nothing.
  KvCache() = default;

  /// A cache of `layers` rings of `capacity` slots of (kv_heads, head_dim), for
  /// sequences of at most `max_context` tokens.
  KvCache(int layers, std::int64_t capacity, int kv_heads, int head_dim, std::int64_t max_context)
      : layers_(layers), capacity_(capacity), kv_heads_(kv_heads), head_dim_(head_dim), max_context_(max_context) {
    SC2_CHECK(layers > 0 && capacity > 0 && kv_heads > 0 && head_dim > 0 && max_context > 0,
              "KvCache: layers {}, capacity {}, kv heads {}, head dim {}, context {} must all be positive", layers,
              capacity, kv_heads, head_dim, max_context);
    // The sizes come from config.json and the caller: refuse a product that
    // overflows or exceeds the machine's memory before allocating anything.
    std::size_t per_layer = 0, floats = 0;
    const bool overflow =
        __builtin_mul_overflow(static_cast<std::size_t>(capacity), static_cast<std::size_t>(row()), &per_layer) ||
        __builtin_mul_overflow(per_layer, static_cast<std::size_t>(layers), &floats) ||
        floats > physical_memory_bytes() / (2 * sizeof(float));
    SC2_CHECK(!overflow,
              "KvCache: {} layers × {} slots × {} kv heads × {} head dim need {:.4g} GiB for keys and values, more "
              "than this machine's {:.4g} GiB of memory; pass a smaller max_context to make_cache()",
              layers, capacity, kv_heads, head_dim,
              2.0 * sizeof(float) * static_cast<double>(capacity) * static_cast<double>(row()) * layers / (1 << 30),
              static_cast<double>(physical_memory_bytes()) / (1 << 30));
    keys_ = Buffer<float>(floats);
    values_ = Buffer<float>(floats);
  }

  /// Bytes of physical memory of this machine (the largest size_t when unknown).
  static std::size_t physical_memory_bytes() noexcept {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return SIZE_MAX;
    return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page);
  }

  /// Tokens seen so far: the position of the next token.
  std::int64_t length() const noexcept { return length_; }
  /// Number of layers.
  int layers() const noexcept { return layers_; }
  /// Slots per layer.
  std::int64_t capacity() const noexcept { return capacity_; }
  /// The most tokens a sequence may hold.
  std::int64_t max_context() const noexcept { return max_context_; }
  /// Bytes held by keys and values.
  std::size_t bytes() const noexcept { return (keys_.size() + values_.size()) * sizeof(float); }

  /// The ring of layer `layer`, as the attention op reads it.
  ops::KvRing ring(int layer) noexcept {
    const std::int64_t offset = layer * capacity_ * row();
    return {keys_.data() + offset, values_.data() + offset, capacity_, first_};
  }

  /// Stores the keys and values (T, Hkv·Dh) of the tokens at positions
  /// length() .. length()+T−1 into layer `layer`; only the last C fit.
  void store(int layer, ConstMatrixView keys, ConstMatrixView values) {
    const std::int64_t T = keys.extent(0);
    SC2_ASSERT(keys.extent(1) == row() && values.extent(1) == row() && values.extent(0) == T);
    const ops::KvRing r = ring(layer);
    for (std::int64_t t = std::max<std::int64_t>(0, T - capacity_); t < T; ++t) {
      const std::int64_t slot = (length_ + t) % capacity_;
      for (int g = 0; g < kv_heads_; ++g) {
        const std::int64_t at = (g * capacity_ + slot) * head_dim_;
        std::memcpy(r.keys + at, keys.row(t).data() + g * head_dim_, static_cast<std::size_t>(head_dim_) * sizeof(float));
        std::memcpy(r.values + at, values.row(t).data() + g * head_dim_,
                    static_cast<std::size_t>(head_dim_) * sizeof(float));
      }
    }
  }

  /// Checks that `tokens` more tokens fit in the context.
  void check_room(std::int64_t tokens) const {
    SC2_CHECK(length_ + tokens <= max_context_,
              "sequence of {} tokens would exceed the context limit of {} tokens ({} already in the cache)",
              length_ + tokens, max_context_, length_);
  }

  /// Records that `tokens` tokens were stored in every layer.
  void advance(std::int64_t tokens) noexcept { length_ += tokens; }
  /// Forgets the sequence; memory is kept for the next one.
  void clear() noexcept { length_ = first_ = 0; }

  /// Starts an empty cache's sequence at absolute position `position` instead of
  /// 0, as a left-padded row of a batch does: its tokens keep the positions of
  /// the padded row, and no key exists before `position`.
  void start_at(std::int64_t position) {
    SC2_CHECK(length_ == first_, "start_at needs an empty cache; this one holds {} tokens", length_ - first_);
    SC2_CHECK(position >= 0 && position <= max_context_, "start position {} is outside [0, {}]", position, max_context_);
    length_ = first_ = position;
  }
  /// The position the sequence started at (0 unless `start_at` moved it).
  std::int64_t first_position() const noexcept { return first_; }

private:
  /// Floats of one token's keys (or values): Hkv · Dh.
  std::int64_t row() const noexcept { return std::int64_t{kv_heads_} * head_dim_; }

  int layers_ = 0;
  std::int64_t capacity_ = 0;
  int kv_heads_ = 0;  // Hkv
  int head_dim_ = 0;  // Dh
  std::int64_t max_context_ = 0;
  std::int64_t length_ = 0;
  std::int64_t first_ = 0;
  Buffer<float> keys_;    // layers × (Hkv, C, Dh)
  Buffer<float> values_;  // layers × (Hkv, C, Dh)
};

}  // namespace sc2
