#pragma once
/// \file
/// The paged key/value cache: a pool of fixed-size pages in a backend's
/// memory, and a page table per sequence.
///
///     keys, values: layers × (pages, Hkv, P, Dh)       in the backend's space
///     sequence s:   page_table[n] = the physical page of positions n·P .. n·P + P − 1
///
/// Every layer uses the same page ids, so one table serves a sequence's whole
/// stack. Pages are aligned to absolute positions. Keys are stored after RoPE.
///
/// - Memory is bounded by the window: with a sliding window W a query at
///   position i reads keys i − W + 1 .. i, so when a sequence is about to
///   write position s, every page wholly before s − W + 1 goes back to the
///   pool. A sequence holds at most ⌈(W − 1 + T)/P⌉ + 1 pages for chunks of T.
/// - Prefix sharing: `fork(source, n)` starts a sequence from the first n
///   positions of another: it shares (reference counts) the pages that hold
///   them; a shared page is copied before either sequence writes into it.
///   `share(source)` keeps every page a sequence holds as a snapshot of it.
/// - A fixed budget: the pool has the pages it was made with. `pages_needed`
///   says what a chunk would take; `prepare` throws an `sc2::Error` when the
///   pool cannot give it, and changes nothing then.
///
/// The bookkeeping (tables, reference counts, free list) lives on the host;
/// only keys and values live in the backend's memory.
///
///     sc2::KvPool<sc2::cpu::Backend> pool(shape, {.page_size = 32, .pages = 1024});
///     sc2::SequenceId s = pool.add();
///     pool.prepare(ctx, s, 12);   // room for 12 more tokens; the model's forward does this

#include <sc2/core/buffer.hpp>
#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/ops/batch_plan.hpp>
#include <sc2/ops/copy.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace sc2 {

/// A sequence's handle in a `KvPool`.
using SequenceId = std::int32_t;

/// The per-layer shape of the keys and values a pool holds.
struct KvShape {
  int layers = 0;                      ///< decoder layers
  int kv_heads = 0;                    ///< Hkv
  int head_dim = 0;                    ///< Dh
  std::optional<std::int64_t> window;  ///< W: a query sees this many latest positions; none: all
  std::int64_t max_context = 0;        ///< the most positions a sequence may reach
};

/// How big a pool is.
struct KvPoolOptions {
  std::int64_t page_size = 32;  ///< P: positions per page
  std::int64_t pages = 0;       ///< pages in the pool (> 0), or 0 to take them from `bytes`
  std::size_t bytes = 0;        ///< budget for keys and values in bytes, when `pages` is 0
};

/// Pages of keys and values for many sequences, in `Backend`'s memory; see the file comment.
template <ComputeBackend Backend>
class KvPool {
public:
  using Context = typename Backend::Context;    ///< the execution context its calls take
  using Space = typename Backend::Space;        ///< where its pages live
  using Element = typename Backend::KvElement;  ///< the element type of keys and values

  /// A pool of `options.pages` pages (or as many as `options.bytes` holds) of `shape`.
  KvPool(const KvShape& shape, const KvPoolOptions& options) : shape_(shape), P_(options.page_size) {
    SC2_CHECK(shape.layers > 0 && shape.kv_heads > 0 && shape.head_dim > 0 && shape.max_context > 0,
              "KvPool: layers {}, kv heads {}, head dim {} and context {} must be positive", shape.layers,
              shape.kv_heads, shape.head_dim, shape.max_context);
    SC2_CHECK(!shape.window || *shape.window > 0, "KvPool: the window must be positive, got {}", shape.window.value_or(0));
    SC2_CHECK(P_ > 0 && P_ <= (1 << 16), "KvPool: page size {} is outside 1..65536", P_);
    // The sizes come from config.json and the caller: check every product, and
    // refuse what this machine cannot hold before allocating anything (a device
    // backend checks its own memory when it allocates).
    std::size_t per_page = 0;  // bytes of keys and values of one page, all layers
    const bool page_overflows =
        __builtin_mul_overflow(static_cast<std::size_t>(shape.layers), static_cast<std::size_t>(P_), &per_page) ||
        __builtin_mul_overflow(per_page, static_cast<std::size_t>(shape.kv_heads), &per_page) ||
        __builtin_mul_overflow(per_page, static_cast<std::size_t>(shape.head_dim), &per_page) ||
        __builtin_mul_overflow(per_page, 2 * sizeof(Element), &per_page);
    SC2_CHECK(!page_overflows, "KvPool: a page of {} layers × {} positions × {} kv heads × {} head dim overflows",
              shape.layers, P_, shape.kv_heads, shape.head_dim);
    std::int64_t pages = options.pages;
    if (pages <= 0) {
      SC2_CHECK(options.bytes >= per_page,
                "KvPool: a budget of {} bytes holds no page of {} bytes ({} layers × {} positions × {} kv heads × {} "
                "head dim, keys and values)",
                options.bytes, per_page, shape.layers, P_, shape.kv_heads, shape.head_dim);
      pages = static_cast<std::int64_t>(options.bytes / per_page);
    }
    SC2_CHECK(pages <= (std::int64_t{1} << 30), "KvPool: {} pages is more than sc2 addresses", pages);
    std::size_t total = 0;
    SC2_CHECK(!__builtin_mul_overflow(static_cast<std::size_t>(pages), per_page, &total),
              "KvPool: {} pages of {} bytes overflow the address space", pages, per_page);
    if constexpr (HostSpace<Space>)
      SC2_CHECK(total <= physical_memory_bytes(),
                "KvPool: {} pages of {} bytes need {:.4g} GiB for keys and values, more than this machine's {:.4g} "
                "GiB of memory; use fewer pages or a shorter context",
                pages, per_page, static_cast<double>(total) / (1 << 30),
                static_cast<double>(physical_memory_bytes()) / (1 << 30));
    const std::size_t elements = total / 2 / sizeof(Element);  // of keys, and of values
    pages_ = pages;
    keys_ = Buffer<Element, Space>(elements);
    values_ = Buffer<Element, Space>(elements);
    references_.assign(static_cast<std::size_t>(pages), 0);
    free_.reserve(static_cast<std::size_t>(pages));
    for (std::int64_t p = pages - 1; p >= 0; --p) free_.push_back(static_cast<std::int32_t>(p));
  }

  /// Bytes of keys and values in one page, all layers.
  std::size_t page_bytes() const noexcept {
    return 2 * static_cast<std::size_t>(shape_.layers) * static_cast<std::size_t>(P_) *
           static_cast<std::size_t>(shape_.kv_heads) * static_cast<std::size_t>(shape_.head_dim) * sizeof(Element);
  }
  /// Pages a sequence holds at most while it advances in chunks of `chunk`
  /// tokens (the window bounds it; without a window, the context does).
  std::int64_t pages_per_sequence(std::int64_t chunk) const noexcept { return pages_per_sequence(shape_, P_, chunk); }
  /// Pages a sequence of `shape` holds at most in pages of `page_size` while it
  /// advances in chunks of `chunk` tokens.
  static std::int64_t pages_per_sequence(const KvShape& shape, std::int64_t page_size, std::int64_t chunk) noexcept {
    const std::int64_t span = shape.window ? std::min(*shape.window - 1 + chunk, shape.max_context) : shape.max_context;
    return (span + page_size - 1) / page_size + 1;
  }

  /// The shape of the keys and values.
  const KvShape& shape() const noexcept { return shape_; }
  /// P: positions per page.
  std::int64_t page_size() const noexcept { return P_; }
  /// Pages in the pool.
  std::int64_t pages() const noexcept { return pages_; }
  /// Pages no sequence holds.
  std::int64_t free_pages() const noexcept { return static_cast<std::int64_t>(free_.size()); }
  /// Bytes of keys and values.
  std::size_t bytes() const noexcept { return (keys_.size() + values_.size()) * sizeof(Element); }

  /// The pages of layer `layer`, as the attention kernels read them.
  ops::KvLayer<Element, Space> layer(int layer) noexcept {
    const std::int64_t offset = static_cast<std::int64_t>(layer) * pages_ * page_elements();
    return {keys_.data() + offset, values_.data() + offset, pages_, P_, shape_.kv_heads, shape_.head_dim};
  }

  /// A new, empty sequence whose first token will be at `first_position` (a
  /// left-padded row starts past 0: no key exists before its first position).
  SequenceId add(std::int64_t first_position = 0) {
    SC2_CHECK(first_position >= 0 && first_position <= shape_.max_context, "KvPool: start position {} is outside [0, {}]",
              first_position, shape_.max_context);
    const SequenceId id = new_slot();
    Sequence& s = sequences_[static_cast<std::size_t>(id)];
    s.first = s.length = first_position;
    // Room for the table of a whole context (bounded), so that a sequence's
    // steps allocate nothing as it grows.
    s.table.reserve(static_cast<std::size_t>(std::min<std::int64_t>(shape_.max_context / P_ + 1, 1 << 16)));
    return id;
  }

  /// A new sequence holding the first `tokens` positions of `source` (from its
  /// first position on): it shares the pages that hold them, so only the rest
  /// of its prompt needs computing. An `sc2::Error` if `source` no longer holds
  /// a page the new sequence needs (its window moved past it).
  SequenceId fork(SequenceId source, std::int64_t tokens) {
    const Sequence& src = at(source);
    SC2_CHECK(tokens >= src.first && tokens <= src.length, "KvPool: cannot share {} positions of a sequence of {}..{}",
              tokens, src.first, src.length);
    const std::int64_t lo = std::max(src.first, lowest_needed(tokens));
    for (std::int64_t n = lo / P_; n * P_ < tokens; ++n)
      SC2_CHECK(n < static_cast<std::int64_t>(src.table.size()) && src.table[static_cast<std::size_t>(n)] >= 0,
                "KvPool: the sequence no longer holds positions {}..{} (its window moved on); compute them again",
                n * P_, std::min(tokens, (n + 1) * P_) - 1);
    const SequenceId id = new_slot();
    Sequence& s = sequences_[static_cast<std::size_t>(id)];
    const Sequence& from = sequences_[static_cast<std::size_t>(source)];  // new_slot may have moved it
    s.first = from.first;
    s.length = tokens;
    s.table.assign(static_cast<std::size_t>((tokens + P_ - 1) / P_), -1);
    for (std::int64_t n = lo / P_; n * P_ < tokens; ++n) {
      const std::int32_t page = from.table[static_cast<std::size_t>(n)];
      s.table[static_cast<std::size_t>(n)] = page;
      ++references_[static_cast<std::size_t>(page)];
    }
    return id;
  }

  /// A new sequence that shares every page `source` holds now, with its length:
  /// a snapshot that keeps those keys and values while `source` moves on (a
  /// shared page is copied before either writes into it). Later `fork`s of the
  /// snapshot can start from any of its positions whose window it holds.
  SequenceId share(SequenceId source) {
    SC2_CHECK(contains(source), "KvPool: no sequence {}", source);
    const SequenceId id = new_slot();
    Sequence& s = sequences_[static_cast<std::size_t>(id)];
    const Sequence& from = sequences_[static_cast<std::size_t>(source)];  // new_slot may have moved it
    s.first = from.first;
    s.length = from.length;
    s.table = from.table;
    for (const std::int32_t page : s.table)
      if (page >= 0) ++references_[static_cast<std::size_t>(page)];
    return id;
  }

  /// Gives every page of `id` back (shared ones when their last holder lets go).
  void release(SequenceId id) {
    Sequence& s = at(id);
    for (std::int32_t& page : s.table)
      if (page >= 0) unref(std::exchange(page, -1));
    s = Sequence{};
    free_slots_.push_back(id);
  }

  /// True when `id` names a live sequence.
  bool contains(SequenceId id) const noexcept {
    return id >= 0 && static_cast<std::size_t>(id) < sequences_.size() && sequences_[static_cast<std::size_t>(id)].live;
  }
  /// Positions the sequence has reached: the position of its next token.
  std::int64_t length(SequenceId id) const { return at(id).length; }
  /// The sequence's first position.
  std::int64_t first_position(SequenceId id) const { return at(id).first; }
  /// The most positions a sequence may reach.
  std::int64_t max_context() const noexcept { return shape_.max_context; }
  /// Pages the sequence holds now.
  std::int64_t held_pages(SequenceId id) const {
    const Sequence& s = at(id);
    return std::count_if(s.table.begin(), s.table.end(), [](std::int32_t p) { return p >= 0; });
  }

  /// Free pages `prepare(id, tokens)` would take, after the pages it gives back.
  std::int64_t pages_needed(SequenceId id, std::int64_t tokens) const {
    const Sequence& s = at(id);
    const std::int64_t released = behind_window(s, s.length);
    return new_pages(s, tokens) - released;
  }

  /// Makes room for `tokens` more positions of `id`: pages wholly behind the
  /// window go back, shared pages about to be written are copied, new pages
  /// are taken. An `sc2::Error`, with nothing changed, when the context limit
  /// or the pool's pages do not allow it.
  void prepare(Context& ctx, SequenceId id, std::int64_t tokens) {
    Sequence& s = at(id);
    SC2_CHECK(tokens > 0, "KvPool: prepare needs at least one token");
    SC2_CHECK(s.length + tokens <= shape_.max_context,
              "sequence of {} tokens would exceed the context limit of {} tokens ({} already in the cache)",
              s.length + tokens, shape_.max_context, s.length);
    const std::int64_t needed = new_pages(s, tokens), released = behind_window(s, s.length);
    SC2_CHECK(needed - released <= free_pages(),
              "KV pool exhausted: {} more tokens of a sequence need {} pages, {} of {} are free", tokens,
              needed - released, free_pages(), pages_);
    // Pages wholly before the first key the chunk's first token sees.
    const std::int64_t lo = lowest_needed(s.length);
    for (std::int64_t n = 0; (n + 1) * P_ <= lo && n < static_cast<std::int64_t>(s.table.size()); ++n)
      if (s.table[static_cast<std::size_t>(n)] >= 0) unref(std::exchange(s.table[static_cast<std::size_t>(n)], -1));
    const std::int64_t last = (s.length + tokens - 1) / P_;
    if (static_cast<std::int64_t>(s.table.size()) <= last) s.table.resize(static_cast<std::size_t>(last + 1), -1);
    for (std::int64_t n = s.length / P_; n <= last; ++n) {
      std::int32_t& page = s.table[static_cast<std::size_t>(n)];
      if (page < 0) {
        page = take();
      } else if (references_[static_cast<std::size_t>(page)] > 1) {
        const std::int32_t copy = take();
        copy_page(ctx, page, copy);
        unref(std::exchange(page, copy));
      }
    }
  }

  /// Records that `tokens` positions of `id` were written (after `prepare` and the forward pass).
  void advance(SequenceId id, std::int64_t tokens) {
    Sequence& s = at(id);
    SC2_CHECK(tokens >= 0 && (s.length + tokens + P_ - 1) / P_ <= static_cast<std::int64_t>(s.table.size()),
              "KvPool: advancing {} positions past the prepared pages", tokens);
    s.length += tokens;
  }

  /// The physical pages of logical pages first, first + 1, ..., first + count − 1
  /// of `id` (−1 for a page it no longer holds) written to `out`.
  void page_table(SequenceId id, std::int64_t first, std::int64_t count, std::int32_t* out) const {
    const Sequence& s = at(id);
    for (std::int64_t n = 0; n < count; ++n) {
      const std::int64_t logical = first + n;
      out[n] = logical < static_cast<std::int64_t>(s.table.size()) ? s.table[static_cast<std::size_t>(logical)] : -1;
    }
  }

  /// The lowest position a query at `position` may read: position − W + 1 (or 0).
  std::int64_t lowest_needed(std::int64_t position) const noexcept {
    return shape_.window ? std::max<std::int64_t>(0, position - *shape_.window + 1) : 0;
  }

private:
  struct Sequence {
    bool live = false;
    std::int64_t first = 0;           // first position
    std::int64_t length = 0;          // next position
    std::vector<std::int32_t> table;  // logical page -> physical page, -1 when not held
  };

  std::int64_t page_elements() const noexcept {
    return P_ * static_cast<std::int64_t>(shape_.kv_heads) * shape_.head_dim;
  }
  const Sequence& at(SequenceId id) const {
    SC2_CHECK(contains(id), "KvPool: no sequence {}", id);
    return sequences_[static_cast<std::size_t>(id)];
  }
  Sequence& at(SequenceId id) {
    SC2_CHECK(contains(id), "KvPool: no sequence {}", id);
    return sequences_[static_cast<std::size_t>(id)];
  }
  SequenceId new_slot() {
    SequenceId id;
    if (!free_slots_.empty()) {
      id = free_slots_.back();
      free_slots_.pop_back();
    } else {
      SC2_CHECK(sequences_.size() < (std::size_t{1} << 30), "KvPool: too many sequences");
      id = static_cast<SequenceId>(sequences_.size());
      sequences_.emplace_back();
    }
    sequences_[static_cast<std::size_t>(id)].live = true;
    return id;
  }
  // Pages `tokens` more positions take: missing ones, and shared ones to copy.
  std::int64_t new_pages(const Sequence& s, std::int64_t tokens) const {
    std::int64_t n_new = 0;
    for (std::int64_t n = s.length / P_; n <= (s.length + tokens - 1) / P_; ++n) {
      const std::int32_t page = n < static_cast<std::int64_t>(s.table.size()) ? s.table[static_cast<std::size_t>(n)] : -1;
      if (page < 0 || references_[static_cast<std::size_t>(page)] > 1) ++n_new;
    }
    return n_new;
  }
  // Pages that go back to the free list when the sequence writes from `position` on.
  std::int64_t behind_window(const Sequence& s, std::int64_t position) const {
    std::int64_t freed = 0;
    const std::int64_t lo = lowest_needed(position);
    for (std::int64_t n = 0; (n + 1) * P_ <= lo && n < static_cast<std::int64_t>(s.table.size()); ++n) {
      const std::int32_t page = s.table[static_cast<std::size_t>(n)];
      if (page >= 0 && references_[static_cast<std::size_t>(page)] == 1) ++freed;
    }
    return freed;
  }
  std::int32_t take() {
    SC2_ASSERT(!free_.empty());
    const std::int32_t page = free_.back();
    free_.pop_back();
    references_[static_cast<std::size_t>(page)] = 1;
    return page;
  }
  void unref(std::int32_t page) {
    if (--references_[static_cast<std::size_t>(page)] == 0) free_.push_back(page);
  }
  void copy_page(Context& ctx, std::int32_t from, std::int32_t to) {
    const std::int64_t n = page_elements();
    for (int l = 0; l < shape_.layers; ++l) {
      const ops::KvLayer<Element, Space> kv = layer(l);
      for (Element* base : {kv.keys, kv.values})
        ops::copy(ctx, TensorView<Element, 1, Space>(base + to * n, {n}),
                  TensorView<const Element, 1, Space>(base + from * n, {n}));
    }
  }

  KvShape shape_;
  std::int64_t P_ = 0;
  std::int64_t pages_ = 0;
  Buffer<Element, Space> keys_, values_;  // layers × (pages, Hkv, P, Dh)
  std::vector<std::int32_t> references_;  // holders of each page
  std::vector<std::int32_t> free_;        // free pages, taken from the back
  std::vector<Sequence> sequences_;
  std::vector<SequenceId> free_slots_;
};

}  // namespace sc2
