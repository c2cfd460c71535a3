#pragma once
/// \file
/// A per-executor workspace: the activations and batch plan of one forward
/// call, planned once for a token budget.
///
/// Weights are immutable and shared; everything a forward call writes lives
/// here or in the KV pool. A workspace is planned for at most `max_tokens`
/// rows, `max_sequences` chunks and `max_logit_rows` rows of logits: the
/// activations are slices of one arena in the backend's memory, and the
/// batch plan is built in host buffers and copied to the backend once per
/// call. Nothing is allocated per call.
///
///     activations   hidden, normed, block_out (T, D); q, attn (T, H·Dh); k, v (T, Hkv·Dh);
///                   mlp scratch; selected (R, D); logits (R, V or L)
///     plan          tokens, positions, row_entry (T); entries (B); page_table; logit rows (R)

#include <sc2/core/arena.hpp>
#include <sc2/core/buffer.hpp>
#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/ops/batch_plan.hpp>
#include <sc2/ops/copy.hpp>

#include <cstdint>

namespace sc2 {

/// The budget a workspace is planned for.
struct WorkspaceOptions {
  std::int64_t max_tokens = 512;     ///< rows of one batch (prefill chunks and decode rows together)
  std::int64_t max_sequences = 64;   ///< chunks of one batch
  std::int64_t max_logit_rows = 64;  ///< rows of logits one batch asks for
  /// Rows of logits the workspace itself holds (a call that asks for more
  /// writes them into a matrix of the caller's).
  std::int64_t stored_logit_rows = 64;
};

/// Throws an `sc2::Error` unless every count of `options` is in 1..2^24.
inline void check_workspace_options(const WorkspaceOptions& options) {
  const std::int64_t T = options.max_tokens, B = options.max_sequences, R = options.max_logit_rows;
  const std::int64_t S = options.stored_logit_rows;
  SC2_CHECK(T > 0 && B > 0 && R > 0 && S > 0 && T <= (1 << 24) && B <= (1 << 24) && R <= (1 << 24) && S <= (1 << 24),
            "workspace: max_tokens {}, max_sequences {}, max_logit_rows {} and stored_logit_rows {} must be in 1..2^24",
            T, B, R, S);
}

/// The widths a workspace holds rows of.
struct WorkspaceShape {
  std::int64_t hidden = 0;       ///< D
  std::int64_t q_width = 0;      ///< H·Dh
  std::int64_t kv_width = 0;     ///< Hkv·Dh
  std::int64_t mlp_scratch = 0;  ///< elements the MLP policy needs for max_tokens rows
  std::int64_t logit_width = 0;  ///< V for a language model, L for a classifier
  std::int64_t stored_logit_rows = 0;  ///< rows of logits held here
  std::int64_t pages_per_entry = 0;  ///< the most pages one chunk's rows read
};

/// Activations and batch plan for one executor; see the file comment.
template <ComputeBackend Backend>
class Workspace {
public:
  using Context = typename Backend::Context;  ///< the execution context its calls take
  using Space = typename Backend::Space;      ///< where its buffers live
  using Act = typename Backend::Activation;   ///< the activations' element type

  /// An empty workspace (plan one with the model's `make_workspace`).
  Workspace() = default;

  /// A workspace of `shape` for `options`.
  Workspace(const WorkspaceShape& shape, const WorkspaceOptions& options) : shape_(shape), options_(options) {
    check_workspace_options(options);
    const std::int64_t T = options.max_tokens, B = options.max_sequences, R = options.max_logit_rows;
    // T comes from the caller, the widths from config.json: check their products.
    for (const std::int64_t width : {shape.hidden, shape.q_width, shape.kv_width, shape.logit_width}) {
      std::int64_t product = 0;
      SC2_CHECK(!__builtin_mul_overflow(std::max(T, R), width, &product) && product < (std::int64_t{1} << 40),
                "workspace: {} rows of {} elements overflow; use fewer tokens per batch", std::max(T, R), width);
    }
    const auto n = [](std::int64_t count) { return static_cast<std::size_t>(count); };
    ArenaPlan plan;
    for (int i = 0; i < 3; ++i) plan.reserve<Act>(n(T * shape.hidden));
    for (int i = 0; i < 2; ++i) plan.reserve<Act>(n(T * shape.q_width));
    for (int i = 0; i < 2; ++i) plan.reserve<Act>(n(T * shape.kv_width));
    plan.reserve<Act>(n(shape.mlp_scratch));
    plan.reserve<Act>(n(R * shape.hidden));
    plan.reserve<float>(n(shape.stored_logit_rows * shape.logit_width));
    arena_ = Arena<Space>(plan);
    hidden_ = arena_.template take<Act>(n(T * shape.hidden));
    normed_ = arena_.template take<Act>(n(T * shape.hidden));
    block_out_ = arena_.template take<Act>(n(T * shape.hidden));
    q_ = arena_.template take<Act>(n(T * shape.q_width));
    attn_ = arena_.template take<Act>(n(T * shape.q_width));
    k_ = arena_.template take<Act>(n(T * shape.kv_width));
    v_ = arena_.template take<Act>(n(T * shape.kv_width));
    mlp_ = arena_.template take<Act>(n(shape.mlp_scratch));
    selected_ = arena_.template take<Act>(n(R * shape.hidden));
    logits_ = arena_.template take<float>(n(shape.stored_logit_rows * shape.logit_width));

    const std::int64_t table = B * shape.pages_per_entry;
    host_.allocate(T, B, table, R);
    if constexpr (!HostSpace<Space>) device_.allocate(T, B, table, R);
  }

  /// The budget.
  const WorkspaceOptions& options() const noexcept { return options_; }
  /// The widths.
  const WorkspaceShape& shape() const noexcept { return shape_; }

  /// The residual stream (T, D).
  Matrix<Act, Space> hidden(std::int64_t T) const noexcept { return {hidden_, {T, shape_.hidden}}; }
  /// A block's normed input (T, D).
  Matrix<Act, Space> normed(std::int64_t T) const noexcept { return {normed_, {T, shape_.hidden}}; }
  /// A block's output (T, D).
  Matrix<Act, Space> block_out(std::int64_t T) const noexcept { return {block_out_, {T, shape_.hidden}}; }
  /// Queries (T, H·Dh).
  Matrix<Act, Space> q(std::int64_t T) const noexcept { return {q_, {T, shape_.q_width}}; }
  /// Attention output (T, H·Dh).
  Matrix<Act, Space> attn(std::int64_t T) const noexcept { return {attn_, {T, shape_.q_width}}; }
  /// Keys (T, Hkv·Dh).
  Matrix<Act, Space> k(std::int64_t T) const noexcept { return {k_, {T, shape_.kv_width}}; }
  /// Values (T, Hkv·Dh).
  Matrix<Act, Space> v(std::int64_t T) const noexcept { return {v_, {T, shape_.kv_width}}; }
  /// The MLP policy's scratch.
  Vector<Act, Space> mlp_scratch() const noexcept { return {mlp_, {shape_.mlp_scratch}}; }
  /// The final hidden states of the rows that want logits (R, D).
  Matrix<Act, Space> selected(std::int64_t R) const noexcept { return {selected_, {R, shape_.hidden}}; }
  /// Logits of the rows that want them (R, V or L), R <= stored_logit_rows.
  Matrix<float, Space> logits(std::int64_t R) const {
    SC2_CHECK(R <= shape_.stored_logit_rows, "the workspace holds {} rows of logits, {} asked for",
              shape_.stored_logit_rows, R);
    return {logits_, {R, shape_.logit_width}};
  }

  /// The host side of the plan, filled by the model before each call.
  struct HostPlan {
    Buffer<std::int32_t> tokens;      ///< (T) token ids
    Buffer<std::int32_t> positions;   ///< (T) absolute positions
    Buffer<std::int32_t> row_entry;   ///< (T) the chunk of each row
    Buffer<std::int32_t> page_table;  ///< every chunk's pages, one run per chunk
    Buffer<std::int32_t> logit_rows;  ///< (R) the rows that want logits
    Buffer<ops::BatchEntry> entries;  ///< (B) one per chunk
    /// Room for T rows, B chunks, `table` page-table entries and R logit rows.
    void allocate(std::int64_t T, std::int64_t B, std::int64_t table, std::int64_t R) {
      const auto n = [](std::int64_t c) { return static_cast<std::size_t>(c); };
      tokens = Buffer<std::int32_t>(n(T)), positions = Buffer<std::int32_t>(n(T));
      row_entry = Buffer<std::int32_t>(n(T)), page_table = Buffer<std::int32_t>(n(table));
      logit_rows = Buffer<std::int32_t>(n(R)), entries = Buffer<ops::BatchEntry>(n(B));
    }
  };
  /// The plan in host memory.
  HostPlan& host_plan() noexcept { return host_; }

  /// Copies the first `T` rows, `B` entries, `table` page ids and `R` logit
  /// rows of the host plan to the backend (nothing to copy on the CPU) and
  /// returns the plan as the kernels read it.
  ops::BatchView<Space> upload_plan(Context& ctx, std::int64_t T, std::int64_t B, std::int64_t table, std::int64_t R,
                                    std::int64_t page_size) {
    if constexpr (HostSpace<Space>) {
      (void)ctx, (void)R;
      return {{host_.positions.data(), {T}}, {host_.row_entry.data(), {T}}, {host_.entries.data(), {B}},
              {host_.page_table.data(), {table}}, page_size};
    } else {
      upload(ctx, device_.tokens, host_.tokens, T);
      upload(ctx, device_.positions, host_.positions, T);
      upload(ctx, device_.row_entry, host_.row_entry, T);
      upload(ctx, device_.entries, host_.entries, B);
      upload(ctx, device_.page_table, host_.page_table, table);
      upload(ctx, device_.logit_rows, host_.logit_rows, R);
      return {{device_.positions.data(), {T}}, {device_.row_entry.data(), {T}}, {device_.entries.data(), {B}},
              {device_.page_table.data(), {table}}, page_size};
    }
  }
  /// The tokens of the uploaded plan (T), in the backend's memory.
  Vector<const std::int32_t, Space> tokens(std::int64_t T) const noexcept {
    if constexpr (HostSpace<Space>) return {host_.tokens.data(), {T}};
    else return {device_.tokens.data(), {T}};
  }
  /// The rows that want logits (R), in the backend's memory.
  Vector<const std::int32_t, Space> logit_rows(std::int64_t R) const noexcept {
    if constexpr (HostSpace<Space>) return {host_.logit_rows.data(), {R}};
    else return {device_.logit_rows.data(), {R}};
  }

private:
  template <class T> static void upload(Context& ctx, Buffer<T, Space>& dst, const Buffer<T>& src, std::int64_t count) {
    ops::copy(ctx, Vector<T, Space>(dst.data(), {count}), Vector<const T, Host>(src.data(), {count}));
  }

  struct DevicePlan {
    Buffer<std::int32_t, Space> tokens, positions, row_entry, page_table, logit_rows;
    Buffer<ops::BatchEntry, Space> entries;
    void allocate(std::int64_t T, std::int64_t B, std::int64_t table, std::int64_t R) {
      const auto n = [](std::int64_t c) { return static_cast<std::size_t>(c); };
      tokens = Buffer<std::int32_t, Space>(n(T)), positions = Buffer<std::int32_t, Space>(n(T));
      row_entry = Buffer<std::int32_t, Space>(n(T)), page_table = Buffer<std::int32_t, Space>(n(table));
      logit_rows = Buffer<std::int32_t, Space>(n(R)), entries = Buffer<ops::BatchEntry, Space>(n(B));
    }
  };

  WorkspaceShape shape_;
  WorkspaceOptions options_;
  Arena<Space> arena_;
  Act *hidden_ = nullptr, *normed_ = nullptr, *block_out_ = nullptr, *q_ = nullptr, *attn_ = nullptr;
  Act *k_ = nullptr, *v_ = nullptr, *mlp_ = nullptr, *selected_ = nullptr;
  float* logits_ = nullptr;
  HostPlan host_;
  DevicePlan device_;
};

}  // namespace sc2
