#pragma once
// Runs the attention ops over a KV pool for chosen chunks of chosen sequences,
// building the batch plan as the model does: for op tests that want to place
// rows, pages and chunk boundaries themselves. On a device backend the plan and
// the inputs are copied to the device and the output back, so a test compares
// backends on the same host arrays; pools of equal shape hand out the same
// pages in the same order on every backend.

#include <catch2/catch.hpp>
#include <sc2/backends/cpu.hpp>
#include <sc2/core/buffer.hpp>
#include <sc2/models/kv_pool.hpp>
#include <sc2/ops/attention.hpp>
#include <sc2/ops/batch_plan.hpp>
#include <sc2/ops/copy.hpp>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <vector>

namespace sc2::test {

/// A chunk: `count` rows of `sequence` from position `start`.
struct PagedChunk {
  SequenceId sequence = 0;
  std::int64_t start = 0;
  std::int64_t count = 0;
};

/// One layer's KV pool of `Backend` and the plan of each call.
template <class Backend = cpu::Backend>
class BasicPagedSequences {
public:
  using Context = typename Backend::Context;
  using Space = typename Backend::Space;

  /// A pool of `sequences` sequences' worth of pages of `page_size`, for chunks up to `chunk`.
  BasicPagedSequences(const KvShape& shape, std::int64_t page_size, std::int64_t sequences, std::int64_t chunk)
      : pool_(shape, {.page_size = page_size,
                      .pages = sequences * KvPool<Backend>::pages_per_sequence(shape, page_size, chunk)}) {}

  /// A new sequence.
  SequenceId add() { return pool_.add(); }
  /// The pool.
  KvPool<Backend>& pool() { return pool_; }

  /// Appends the keys and values k, v (rows, Hkv·Dh) of `chunks` (rows packed in
  /// order) to layer 0 and writes the attention of q (rows, H·Dh) into out.
  void run(Context& ctx, std::vector<PagedChunk> chunks, const ops::AttentionShape& shape,
           const ops::SlidingWindowMask& mask, const float* q, const float* k, const float* v, float* out) {
    const std::int64_t P = pool_.page_size();
    positions_.clear(), row_entry_.clear(), table_.clear(), entries_.clear();
    for (const auto& c : chunks) {
      REQUIRE(pool_.length(c.sequence) == c.start);
      pool_.prepare(ctx, c.sequence, c.count);
      const std::int64_t first = pool_.first_position(c.sequence);
      const std::int64_t lo = std::max(first, pool_.lowest_needed(c.start));
      const std::int64_t first_page = lo / P, pages = (c.start + c.count - 1) / P - first_page + 1;
      const std::size_t offset = table_.size();
      table_.resize(offset + static_cast<std::size_t>(pages));
      pool_.page_table(c.sequence, first_page, pages, table_.data() + offset);
      entries_.push_back({static_cast<std::int32_t>(positions_.size()), static_cast<std::int32_t>(c.count),
                          static_cast<std::int32_t>(c.start), static_cast<std::int32_t>(first),
                          static_cast<std::int32_t>(offset), static_cast<std::int32_t>(first_page),
                          static_cast<std::int32_t>(pages)});
      for (std::int64_t t = 0; t < c.count; ++t) {
        positions_.push_back(static_cast<std::int32_t>(c.start + t));
        row_entry_.push_back(static_cast<std::int32_t>(entries_.size() - 1));
      }
    }
    const auto T = static_cast<std::int64_t>(positions_.size());
    const std::int64_t width = std::int64_t{shape.kv_heads} * shape.head_dim, qw = std::int64_t{shape.heads} * shape.head_dim;
    const ops::BatchView<Host> plan{std::span<const std::int32_t>(positions_), std::span<const std::int32_t>(row_entry_),
                                    std::span<const ops::BatchEntry>(entries_), std::span<const std::int32_t>(table_), P};
    const auto layer = pool_.layer(0);
    if constexpr (HostSpace<Space>) {
      ops::kv_append(ctx, layer, ConstMatrixView(k, {T, width}), ConstMatrixView(v, {T, width}), plan);
      ops::attention(ctx, MatrixView(out, {T, qw}), ConstMatrixView(q, {T, qw}), layer, plan, shape, mask);
    } else {
      const auto up = [&](const auto& host) {
        using E = std::remove_const_t<typename std::remove_reference_t<decltype(host)>::element_type>;
        Buffer<E, Space> b(static_cast<std::size_t>(host.size()));
        ops::copy(ctx, b.view(), host);
        return b;
      };
      const auto positions = up(plan.positions), row_entry = up(plan.row_entry), table = up(plan.page_table);
      const auto entries = up(plan.entries);
      const auto kd = up(Vector<const float, Host>(k, {T * width})), vd = up(Vector<const float, Host>(v, {T * width}));
      const auto qd = up(Vector<const float, Host>(q, {T * qw}));
      Buffer<float, Space> od(static_cast<std::size_t>(T * qw));
      const ops::BatchView<Space> device_plan{positions.view(), row_entry.view(), entries.view(), table.view(), P};
      ops::kv_append(ctx, layer, Matrix<const float, Space>(kd.data(), {T, width}),
                     Matrix<const float, Space>(vd.data(), {T, width}), device_plan);
      ops::attention(ctx, Matrix<float, Space>(od.data(), {T, qw}), Matrix<const float, Space>(qd.data(), {T, qw}),
                     layer, device_plan, shape, mask);
      ops::copy(ctx, Vector<float, Host>(out, {T * qw}), od.view());
    }
    for (const auto& c : chunks) pool_.advance(c.sequence, c.count);
  }

private:
  KvPool<Backend> pool_;
  std::vector<std::int32_t> positions_, row_entry_, table_;
  std::vector<ops::BatchEntry> entries_;
};

/// One layer's KV pool on the CPU.
using PagedSequences = BasicPagedSequences<cpu::Backend>;

}  // namespace sc2::test
