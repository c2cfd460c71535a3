#pragma once
/// \file
/// One sequence and everything it needs: the simple way to run a model.
///
/// A `KvCache` holds a KV pool with pages for one sequence (bounded by the
/// window), that sequence, and a workspace for chunks of `max_chunk_tokens`.
/// `CausalLM::forward_last` and `forward_all` run any number of ids through
/// it, in chunks; the batched API (`Batch`, `KvPool`, `Workspace`, or the
/// `Engine` of generation/) runs many sequences at once.
///
///     sc2::KvCache cache = lm.make_cache();
///     std::span<const float> logits = lm.forward_last(ctx, prompt_ids, cache);   // (V)

#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/models/batch.hpp>
#include <sc2/models/kv_pool.hpp>
#include <sc2/models/workspace.hpp>

#include <cstdint>

namespace sc2 {

/// The state of one sequence: its pages, its place in them, and a workspace.
template <ComputeBackend Backend>
class KvCache {
public:
  using Context = typename Backend::Context;  ///< the execution context its calls take

  /// A cache over `pool` (made for one sequence) starting at `first_position`, with `workspace`.
  KvCache(KvPool<Backend> pool, Workspace<Backend> workspace, std::int64_t first_position = 0)
      : pool_(std::move(pool)), workspace_(std::move(workspace)), sequence_(pool_.add(first_position)) {}

  /// Tokens seen so far (from position 0): the position of the next token.
  std::int64_t length() const { return pool_.length(sequence_); }
  /// The most tokens the sequence may hold.
  std::int64_t max_context() const noexcept { return pool_.max_context(); }
  /// The position the sequence started at.
  std::int64_t first_position() const { return pool_.first_position(sequence_); }
  /// Bytes held by keys and values.
  std::size_t bytes() const noexcept { return pool_.bytes(); }
  /// The most tokens one forward call runs.
  std::int64_t max_chunk_tokens() const noexcept { return workspace_.options().max_tokens; }

  /// An `sc2::Error` unless `tokens` more tokens fit in the context.
  void check_room(std::int64_t tokens) const {
    SC2_CHECK(length() + tokens <= max_context(),
              "sequence of {} tokens would exceed the context limit of {} tokens ({} already in the cache)",
              length() + tokens, max_context(), length());
  }
  /// Moves the sequence `tokens` positions on without computing them: their
  /// keys and values are whatever the pages hold (for timing long contexts).
  void skip(Context& ctx, std::int64_t tokens) {
    check_room(tokens);
    while (tokens > 0) {
      const std::int64_t n = std::min(tokens, max_chunk_tokens());
      pool_.prepare(ctx, sequence_, n);
      pool_.advance(sequence_, n);
      tokens -= n;
    }
  }
  /// Forgets the sequence and starts an empty one at `first_position`; memory is kept.
  void clear(std::int64_t first_position = 0) {
    pool_.release(sequence_);
    sequence_ = pool_.add(first_position);
  }

  /// The pool.
  KvPool<Backend>& pool() noexcept { return pool_; }
  /// The sequence in the pool.
  SequenceId sequence() const noexcept { return sequence_; }
  /// The workspace.
  Workspace<Backend>& workspace() noexcept { return workspace_; }
  /// A batch to reuse for this sequence's chunks.
  Batch& batch() noexcept { return batch_; }

private:
  KvPool<Backend> pool_;
  Workspace<Backend> workspace_;
  SequenceId sequence_;
  Batch batch_;
};

}  // namespace sc2
