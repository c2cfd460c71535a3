#pragma once
/// \file
/// A ragged batch: chunks of several sequences that one forward call runs.
///
/// Each chunk is (sequence of a `KvPool`, token ids, which of its rows want
/// logits). Its tokens continue the sequence: they take the positions
/// pool.length(sequence) .. + T − 1. The forward pass packs every chunk's rows
/// into one (T, D) activation matrix, so every linear layer reads its weights
/// once for the whole batch, and computes logits only for the rows asked for,
/// in chunk order.
///
///     sc2::Batch batch;
///     batch.add(decoding, std::span(&next_id, 1));          // one decode row: its logits
///     batch.add(prefilling, prompt_part, sc2::LogitRows::none);  // a prefill chunk, more to come
///
/// A batch holds views of the ids: they must stay valid until the forward
/// call. Clearing keeps the capacity, so a loop that reuses one batch
/// allocates nothing in steady state.

#include <sc2/core/error.hpp>
#include <sc2/models/kv_pool.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace sc2 {

/// Which rows of a chunk want logits.
enum class LogitRows : std::uint8_t {
  none,  ///< none (a prefill chunk with more to come)
  last,  ///< the last row (the next token after the chunk)
  all,   ///< every row
};

/// One sequence's chunk in a batch.
struct BatchChunk {
  SequenceId sequence = -1;             ///< the sequence in the KV pool
  std::span<const std::int32_t> ids;    ///< its next tokens
  LogitRows logits = LogitRows::last;   ///< which rows want logits
};

/// Chunks of several sequences for one forward call; see the file comment.
class Batch {
public:
  /// An empty batch.
  Batch() = default;

  /// Appends a chunk of `ids` (at least one) for `sequence`.
  void add(SequenceId sequence, std::span<const std::int32_t> ids, LogitRows logits = LogitRows::last) {
    SC2_CHECK(!ids.empty(), "a batch chunk needs at least one token");
    chunks_.push_back({sequence, ids, logits});
    tokens_ += static_cast<std::int64_t>(ids.size());
    logit_rows_ += logits == LogitRows::all ? static_cast<std::int64_t>(ids.size()) : logits == LogitRows::last ? 1 : 0;
  }
  /// Forgets every chunk; keeps the memory.
  void clear() noexcept {
    chunks_.clear();
    tokens_ = logit_rows_ = 0;
  }
  /// Room for `chunks` chunks without allocating.
  void reserve(std::size_t chunks) { chunks_.reserve(chunks); }

  /// The chunks, in order.
  std::span<const BatchChunk> chunks() const noexcept { return chunks_; }
  /// T: rows of the packed batch.
  std::int64_t tokens() const noexcept { return tokens_; }
  /// Rows that want logits.
  std::int64_t logit_rows() const noexcept { return logit_rows_; }
  /// True when the batch has no chunk.
  bool empty() const noexcept { return chunks_.empty(); }

private:
  std::vector<BatchChunk> chunks_;
  std::int64_t tokens_ = 0;
  std::int64_t logit_rows_ = 0;
};

}  // namespace sc2
