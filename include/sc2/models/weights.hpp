#pragma once
/// \file
/// Weights in a backend's memory, and the loader that takes them from a checkpoint.
///
/// Loading goes one way: config.json is read first, then the checkpoint is
/// mapped and checked once (`Checkpoint::open`, checkpoint.hpp), then the backbone and its
/// head take their tensors through a `WeightLoader`, which checks each shape
/// against the configuration, hands each tensor to the backend once
/// (`upload_matrix`: the CPU packs it into its kernels' panels, a GPU copies
/// it to device memory) and records what was used, so that unexpected tensors
/// can be named. The weights then live in a `WeightStore` that any number of
/// executors share. Once the backend has a tensor, the loader lets the kernel
/// drop its mapped pages, so loading holds the weights in memory about once.
///
/// Matrices keep their stored dtype (f32, bf16, f16) unless a dtype is asked
/// for or the backend names the one it keeps (`Backend::weight_dtype(stored)`:
/// the CUDA backend's bf16); vectors (biases, norms) are float. A matrix in a
/// GGML block format (from a GGUF file) stays in its blocks on a backend that
/// computes on them (the CPU: `upload_matrix(ctx, host, quant::Format)`);
/// elsewhere, or when a dtype is asked for, it is dequantized row by row,
/// exactly as `gguf.quants.dequantize` does (f32 unless a dtype is asked for).
/// A block format asked for (`LoadOptions::weight_quant`) quantizes float
/// matrices at load with ggml's reference quantizer, and requantizes blocks of
/// another format; a matrix whose rows are not whole blocks of it keeps its
/// stored type (as llama-quantize falls back for such rows).

#include <sc2/core/buffer.hpp>
#include <sc2/core/context.hpp>
#include <sc2/core/dtype.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/io/mapped_file.hpp>
#include <sc2/io/tensor_index.hpp>
#include <sc2/quant/blocks.hpp>
#include <sc2/ops/copy.hpp>

#include <fmt/ranges.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sc2 {

/// A Linear layer: weight (out, in) and an optional bias (out), in `Space`.
template <class Space = Host>
struct LinearWeights {
  WeightView<Space> weight;         ///< (out_features, in_features)
  Vector<const float, Space> bias;  ///< (out_features), empty when the layer has none
};

/// A LayerNorm: weight and bias, both (D), in `Space`.
template <class Space = Host>
struct LayerNormWeights {
  Vector<const float, Space> weight;  ///< (D)
  Vector<const float, Space> bias;    ///< (D)
};

/// The memory of a model's weights in `Space`: owned here, shared by every
/// executor of the model, immutable once loaded.
template <class Space>
class WeightStore {
public:
  /// Keeps `buffer` alive as long as the store.
  void keep(Buffer<std::byte, Space>&& buffer) {
    bytes_ += buffer.bytes();
    buffers_.push_back(std::move(buffer));
  }
  /// Keeps `weight`'s memory and returns its view.
  WeightView<Space> keep(OwnedWeight<Space>&& weight) {
    keep(std::move(weight.storage));
    return weight.view;
  }
  /// Bytes of all weights.
  std::size_t bytes() const noexcept { return bytes_; }

private:
  std::vector<Buffer<std::byte, Space>> buffers_;
  std::size_t bytes_ = 0;
};

/// Finds tensors by Hugging Face name, checks their shapes, and hands them to
/// `Backend` through `upload_matrix(ctx, host_matrix, dtype)` (found by
/// argument-dependent lookup in the backend's namespace).
template <ComputeBackend Backend>
class WeightLoader {
public:
  using Context = typename Backend::Context;  ///< the execution context uploads run on
  using Space = typename Backend::Space;      ///< where the weights go

  /// True when `Backend` keeps matrices in GGML blocks and computes on them.
  static constexpr bool keeps_blocks = requires(Context& c, const WeightView<Host>& m) {
    upload_matrix(c, m, quant::Format::q8_0);
  };

  /// A loader over the mapped `tensors` into `store`; `matrix_dtype` (if set)
  /// converts every matrix to that dtype, `matrix_blocks` (if set) quantizes
  /// every matrix to that GGML format.
  WeightLoader(Context& ctx, const TensorIndex& tensors, WeightStore<Space>& store,
               std::optional<DType> matrix_dtype = std::nullopt,
               std::optional<quant::Format> matrix_blocks = std::nullopt)
      : ctx_(ctx), tensors_(tensors), store_(store), matrix_dtype_(matrix_dtype), matrix_blocks_(matrix_blocks) {
    SC2_CHECK(!(matrix_dtype && matrix_blocks), "weights: ask for a dtype or a block format, not both");
    SC2_CHECK(!matrix_blocks || keeps_blocks, "weights: this backend does not compute on GGML blocks ({} asked for)",
              matrix_blocks ? quant::format_name(*matrix_blocks) : "");
  }

  /// Calls `progress(bytes_read, bytes_total)` of the checkpoint after each tensor.
  void on_progress(std::function<void(std::size_t, std::size_t)> progress) { progress_ = std::move(progress); }

  /// The execution context uploads run on.
  Context& context() noexcept { return ctx_; }
  /// True when the checkpoint holds `name`.
  bool contains(const std::string& name) const { return tensors_.find(name) != nullptr; }

  /// The (rows, cols) matrix `name`, in the backend's layout and memory.
  WeightView<Space> matrix(const std::string& name, std::int64_t rows, std::int64_t cols) {
    const TensorInfo& t = get(name, {rows, cols}, /*blocks=*/true);
    if constexpr (keeps_blocks) {
      // Kept in blocks: those of the file, or those asked for where the rows are whole blocks of them.
      const std::optional<quant::Format> keep =
          matrix_dtype_ ? std::nullopt
          : matrix_blocks_ && cols % quant::block_elements(*matrix_blocks_) == 0 ? matrix_blocks_
                                                                                : t.quant;
      if (keep) {
        WeightMatrix host{t.dtype.value_or(DType::f32), WeightLayout::row_major, t.bytes.data(), rows, cols, t.quant};
        Buffer<std::byte> aligned;  // elements not aligned to their size are copied first
        if (!t.quant && reinterpret_cast<std::uintptr_t>(t.bytes.data()) % dtype_size(*t.dtype) != 0) {
          aligned = Buffer<std::byte>(t.bytes.size());
          std::memcpy(aligned.data(), t.bytes.data(), t.bytes.size());
          host.data = aligned.data();
        }
        const WeightView<Space> view = store_.keep(upload_matrix(ctx_, host, *keep));
        release_mapped_pages(t.bytes);
        return view;
      }
    }
    if (t.quant) {
      // Rows of blocks, dequantized into one float matrix the backend takes as f32.
      Buffer<float> widened(static_cast<std::size_t>(rows * cols));
      tensor_to_float(t, widened.span());
      const WeightMatrix host{DType::f32, WeightLayout::row_major, widened.data(), rows, cols, std::nullopt};
      const WeightView<Space> view = store_.keep(upload_matrix(ctx_, host, matrix_dtype_.value_or(kept_dtype(DType::f32))));
      release_mapped_pages(t.bytes);
      return view;
    }
    const DType stored = *t.dtype;
    WeightMatrix host{stored, WeightLayout::row_major, t.bytes.data(), rows, cols, std::nullopt};
    // A tensor not aligned to its element size is copied to aligned memory first.
    Buffer<std::byte> aligned;
    if (reinterpret_cast<std::uintptr_t>(t.bytes.data()) % dtype_size(stored) != 0) {
      aligned = Buffer<std::byte>(t.bytes.size());
      std::memcpy(aligned.data(), t.bytes.data(), t.bytes.size());
      host.data = aligned.data();
    }
    const WeightView<Space> view = store_.keep(upload_matrix(ctx_, host, matrix_dtype_.value_or(kept_dtype(stored))));
    release_mapped_pages(t.bytes);  // the backend has its own copy now
    return view;
  }

  /// The vector `name` of `size` elements, as float in the backend's memory.
  Vector<const float, Space> vector(const std::string& name, std::int64_t size) {
    const TensorInfo& t = get(name, {size});
    std::vector<float> host(static_cast<std::size_t>(size));
    tensor_to_float(t, host);
    Buffer<std::byte, Space> buffer(static_cast<std::size_t>(size) * sizeof(float));
    const Vector<float, Space> dst(reinterpret_cast<float*>(buffer.data()), {size});
    ops::copy(ctx_, dst, Vector<const float, Host>(std::span<const float>(host)));
    store_.keep(std::move(buffer));
    return dst;
  }

  /// A Linear layer `prefix`.weight (out, in) and, when `bias`, `prefix`.bias (out).
  LinearWeights<Space> linear(const std::string& prefix, std::int64_t out, std::int64_t in, bool bias) {
    LinearWeights<Space> w{matrix(prefix + ".weight", out, in), {}};
    if (bias) w.bias = vector(prefix + ".bias", out);
    return w;
  }

  /// A LayerNorm `prefix`.weight and `prefix`.bias, both (size).
  LayerNormWeights<Space> layer_norm(const std::string& prefix, std::int64_t size) {
    return {vector(prefix + ".weight", size), vector(prefix + ".bias", size)};
  }

  /// Names of the checkpoint's tensors that no load call used and `ignored` does not accept.
  template <class Pred> std::vector<std::string> unused(Pred&& ignored) const {
    std::vector<std::string> out;
    for (const auto& name : tensors_.names())
      if (!used_.contains(name) && !ignored(name)) out.push_back(name);
    return out;
  }

private:
  // The dtype a matrix stored as `stored` is kept in when none is asked for:
  // the backend's choice where it has one (a GPU keeps bf16), else the stored one.
  static DType kept_dtype(DType stored) noexcept {
    if constexpr (requires { Backend::weight_dtype(stored); }) return Backend::weight_dtype(stored);
    else return stored;
  }

  const TensorInfo& get(const std::string& name, std::vector<std::int64_t> shape, bool blocks = false) {
    const TensorInfo& t = tensors_.at(name);
    SC2_CHECK(t.shape == shape, "tensor '{}' in '{}' has shape [{}], expected [{}] from config.json", name,
              t.file.string(), fmt::join(t.shape, ", "), fmt::join(shape, ", "));
    SC2_CHECK(t.dtype.has_value() || (blocks && t.quant.has_value()),
              "tensor '{}' in '{}' has dtype {}; weights must be F32, BF16 or F16{}", name, t.file.string(),
              t.dtype_name, blocks ? " (matrices also Q8_0, Q4_0, Q4_K, Q5_K or Q6_K)" : "");
    used_.insert(name);
    read_ += t.bytes.size();
    if (progress_) progress_(read_, tensors_.total_bytes());
    return t;
  }

  Context& ctx_;
  const TensorIndex& tensors_;
  WeightStore<Space>& store_;
  std::optional<DType> matrix_dtype_;
  std::optional<quant::Format> matrix_blocks_;
  std::set<std::string> used_;
  std::size_t read_ = 0;
  std::function<void(std::size_t, std::size_t)> progress_;
};

}  // namespace sc2
