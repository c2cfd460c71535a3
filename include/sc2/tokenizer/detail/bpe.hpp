#pragma once
/// \file
/// BPE merging of one pre-token, as Hugging Face `tokenizers` does it.
///
/// The reference (`models/bpe/word.rs`) keeps a min-heap of candidate merges
/// ordered by (rank, position) and skips entries whose pair has changed since
/// they were pushed. A pair can only change by growing, which changes its
/// merged token, so those skips are exact: the algorithm always applies, among
/// the adjacent pairs present, the one of lowest rank, leftmost on ties. Here
/// short words (most pre-tokens) do exactly that with a rank array rescanned
/// per merge, O(n^2) with a tiny constant; long words (runs of white space,
/// minified code) use the heap, O(n log n).
///
/// Also here: the merge table (pair of ids -> rank and merged id) and the
/// per-call cache of pre-token -> ids, both open-addressing hash tables.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sc2::detail {

/// A merge: its priority (its line in `merges`, lower first) and the id it produces.
struct MergeRule {
  std::uint32_t rank;
  std::int32_t merged_id;
};

/// Pair of token ids -> merge rule.
class MergeTable {
public:
  /// Sizes the table for `count` rules.
  void reserve(std::size_t count) {
    std::size_t capacity = 16;
    while (capacity < count * 2) capacity *= 2;
    slots_.assign(capacity, Slot{kEmpty, {}});
    mask_ = capacity - 1;
    size_ = 0;
  }

  /// Adds or replaces the rule of (left, right): a later duplicate line wins, as in the reference.
  void insert_or_assign(std::int32_t left, std::int32_t right, MergeRule rule) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    const std::uint64_t key = key_of(left, right);
    for (std::size_t i = index_of(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) {
        slots_[i].rule = rule;
        return;
      }
      if (slots_[i].key == kEmpty) {
        slots_[i] = {key, rule};
        ++size_;
        return;
      }
    }
  }

  /// The rule merging (left, right), or nullptr.
  const MergeRule* find(std::int32_t left, std::int32_t right) const noexcept {
    if (slots_.empty()) return nullptr;
    const std::uint64_t key = key_of(left, right);
    for (std::size_t i = index_of(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].rule;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

  /// Number of rules.
  std::size_t size() const noexcept { return size_; }

private:
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
  struct Slot {
    std::uint64_t key;
    MergeRule rule;
  };
  static std::uint64_t key_of(std::int32_t left, std::int32_t right) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }
  std::size_t index_of(std::uint64_t key) const noexcept {
    std::uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return static_cast<std::size_t>(h ^ (h >> 29)) & mask_;
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<std::size_t>(8, old.size()));
    for (const Slot& s : old)
      if (s.key != kEmpty)
        insert_or_assign(static_cast<std::int32_t>(s.key >> 32), static_cast<std::int32_t>(s.key & 0xFFFFFFFFu),
                         s.rule);
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

/// Merges `symbols` in place by the BPE rules; returns the new count.
inline std::size_t bpe_merge(std::int32_t* symbols, std::size_t count, const MergeTable& merges) {
  constexpr std::uint32_t kNoMerge = std::numeric_limits<std::uint32_t>::max();
  if (count < 2) return count;
  if (count <= 64) {
    // ranks[k] is the rank of pair (k, k + 1).
    std::uint32_t ranks[64];
    std::int32_t merged[64];
    auto rank_pair = [&](std::size_t k) {
      const MergeRule* rule = merges.find(symbols[k], symbols[k + 1]);
      ranks[k] = rule ? rule->rank : kNoMerge;
      merged[k] = rule ? rule->merged_id : -1;
    };
    for (std::size_t k = 0; k + 1 < count; ++k) rank_pair(k);
    while (count > 1) {
      std::size_t best = 0;
      for (std::size_t k = 1; k + 1 < count; ++k)
        if (ranks[k] < ranks[best]) best = k;
      if (ranks[best] == kNoMerge) break;
      symbols[best] = merged[best];
      const std::size_t tail = count - best - 2;  // symbols after the pair's right side
      std::memmove(symbols + best + 1, symbols + best + 2, tail * sizeof(std::int32_t));
      std::memmove(ranks + best + 1, ranks + best + 2, (tail > 0 ? tail - 1 : 0) * sizeof(std::uint32_t));
      std::memmove(merged + best + 1, merged + best + 2, (tail > 0 ? tail - 1 : 0) * sizeof(std::int32_t));
      --count;
      if (best > 0) rank_pair(best - 1);
      if (best + 1 < count) rank_pair(best);
    }
    return count;
  }

  // Linked list over the symbols and a min-heap of (rank, position) candidates.
  struct Candidate {
    std::uint32_t rank;
    std::uint32_t position;
    bool operator>(const Candidate& o) const noexcept { return rank != o.rank ? rank > o.rank : position > o.position; }
  };
  std::vector<std::int32_t> next(count), prev(count);
  std::vector<bool> alive(count, true);
  for (std::size_t k = 0; k < count; ++k) {
    next[k] = k + 1 < count ? static_cast<std::int32_t>(k + 1) : -1;
    prev[k] = static_cast<std::int32_t>(k) - 1;
  }
  std::vector<Candidate> storage;
  storage.reserve(count);
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap(std::greater<>{}, std::move(storage));
  for (std::size_t k = 0; k + 1 < count; ++k)
    if (const MergeRule* rule = merges.find(symbols[k], symbols[k + 1]))
      heap.push({rule->rank, static_cast<std::uint32_t>(k)});
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    const std::size_t left = top.position;
    if (!alive[left] || next[left] < 0) continue;
    const auto right = static_cast<std::size_t>(next[left]);
    const MergeRule* rule = merges.find(symbols[left], symbols[right]);
    if (rule == nullptr || rule->rank != top.rank) continue;  // stale: the pair has changed
    symbols[left] = rule->merged_id;
    alive[right] = false;
    next[left] = next[right];
    if (next[right] >= 0) prev[static_cast<std::size_t>(next[right])] = static_cast<std::int32_t>(left);
    if (prev[left] >= 0) {
      const auto before = static_cast<std::size_t>(prev[left]);
      if (const MergeRule* r = merges.find(symbols[before], symbols[left]))
        heap.push({r->rank, static_cast<std::uint32_t>(before)});
    }
    if (next[left] >= 0) {
      if (const MergeRule* r = merges.find(symbols[left], symbols[static_cast<std::size_t>(next[left])]))
        heap.push({r->rank, static_cast<std::uint32_t>(left)});
    }
  }
  std::size_t out = 0;
  for (std::size_t k = 0; k < count; ++k)
    if (alive[k]) symbols[out++] = symbols[k];
  return out;
}

/// A 64-bit hash of a short byte string.
inline std::uint64_t hash_bytes(std::string_view bytes) noexcept {
  const char* p = bytes.data();
  std::size_t n = bytes.size();
  std::uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
  while (n >= 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    std::uint64_t v = 0;
    std::memcpy(&v, p, n);
    h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
  }
  h *= 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 32);
}

/// Pre-token bytes -> the ids BPE gave them. Lives for one `encode` call.
class WordCache {
public:
  WordCache() : slots_(1024), mask_(1023) {}

  /// The cached ids of `word` (of hash `hash`), or an empty span with `found` false.
  std::span<const std::int32_t> find(std::string_view word, std::uint64_t hash, bool& found) const noexcept {
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id_count == kEmpty) break;
      if (s.hash == hash && s.key_length == word.size() &&
          std::memcmp(keys_.data() + s.key_offset, word.data(), word.size()) == 0) {
        found = true;
        return {ids_.data() + s.id_offset, s.id_count};
      }
    }
    found = false;
    return {};
  }

  /// Remembers the ids of `word`.
  void insert(std::string_view word, std::uint64_t hash, std::span<const std::int32_t> ids) {
    if ((used_ + 1) * 2 > slots_.size()) grow();
    Slot slot{hash, static_cast<std::uint32_t>(keys_.size()), static_cast<std::uint32_t>(word.size()),
              static_cast<std::uint32_t>(ids_.size()), static_cast<std::uint32_t>(ids.size())};
    keys_.append(word);
    ids_.insert(ids_.end(), ids.begin(), ids.end());
    place(slot);
    ++used_;
  }

private:
  static constexpr std::uint32_t kEmpty = std::numeric_limits<std::uint32_t>::max();
  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t key_offset = 0;
    std::uint32_t key_length = 0;
    std::uint32_t id_offset = 0;
    std::uint32_t id_count = kEmpty;
  };
  void place(const Slot& slot) {
    std::size_t i = slot.hash & mask_;
    while (slots_[i].id_count != kEmpty) i = (i + 1) & mask_;
    slots_[i] = slot;
  }
  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    mask_ = slots_.size() - 1;
    for (const Slot& s : old)
      if (s.id_count != kEmpty) place(s);
  }

  std::vector<Slot> slots_;
  std::size_t mask_;
  std::size_t used_ = 0;
  std::string keys_;
  std::vector<std::int32_t> ids_;
};

}  // namespace sc2::detail
