#pragma once
/// \file
/// Weight views and the loader that finds them in a checkpoint.
///
/// Weights are views (`WeightMatrix`, spans) into the memory-mapped
/// safetensors files: a tensor whose dtype the kernels read (f32, bf16, f16
/// for matrices; f32 for vectors) is used in place. Anything else (a vector
/// in bf16, a tensor not aligned to its element size, or a requested
/// conversion) is converted once at load into storage the loader owns. The
/// loader checks every shape against the configuration and records which
/// tensors were used, so unexpected tensors can be named.

#include <sc2/core/buffer.hpp>
#include <sc2/core/dtype.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/io/safetensors.hpp>

#include <fmt/ranges.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace sc2 {

/// A Linear layer: weight (out, in) and an optional bias (out).
struct LinearWeights {
  WeightMatrix weight;          ///< (out_features, in_features)
  std::span<const float> bias;  ///< (out_features), empty when the layer has none
};

/// A LayerNorm: weight and bias, both (D).
struct LayerNormWeights {
  std::span<const float> weight;  ///< (D)
  std::span<const float> bias;    ///< (D)
};

/// Converted weights and the checkpoint mapping they came from, kept alive together.
struct WeightStorage {
  Safetensors checkpoint;                   ///< the mapped files
  std::vector<Buffer<std::byte>> converted;  ///< tensors converted or realigned at load
};

/// Finds tensors by Hugging Face name, checks their shapes, converts where needed.
class WeightLoader {
public:
  /// A loader over `storage`; `matrix_dtype` (if set) converts every matrix to that dtype.
  explicit WeightLoader(WeightStorage& storage, std::optional<DType> matrix_dtype = std::nullopt)
      : storage_(storage), matrix_dtype_(matrix_dtype) {}

  /// True when the checkpoint holds `name`.
  bool contains(const std::string& name) const { return storage_.checkpoint.find(name) != nullptr; }

  /// The (rows, cols) matrix `name`, in place when its dtype and alignment allow.
  WeightMatrix matrix(const std::string& name, std::int64_t rows, std::int64_t cols) {
    const TensorInfo& t = get(name, {rows, cols});
    const DType stored = *t.dtype;
    const DType wanted = matrix_dtype_.value_or(stored);
    const bool aligned = reinterpret_cast<std::uintptr_t>(t.bytes.data()) % dtype_size(stored) == 0;
    WeightMatrix m{stored, t.bytes.data(), rows, cols};
    if (wanted != stored || !aligned) m = WeightMatrix{wanted, convert(t, wanted), rows, cols};
    return m;
  }

  /// The float vector `name` of `size` elements (converted when stored otherwise).
  std::span<const float> vector(const std::string& name, std::int64_t size) {
    const TensorInfo& t = get(name, {size});
    const bool in_place = *t.dtype == DType::f32 && reinterpret_cast<std::uintptr_t>(t.bytes.data()) % 4 == 0;
    const void* data = in_place ? static_cast<const void*>(t.bytes.data()) : convert(t, DType::f32);
    return {static_cast<const float*>(data), static_cast<std::size_t>(size)};
  }

  /// A Linear layer `prefix`.weight (out, in) and, when `bias`, `prefix`.bias (out).
  LinearWeights linear(const std::string& prefix, std::int64_t out, std::int64_t in, bool bias) {
    LinearWeights w{matrix(prefix + ".weight", out, in), {}};
    if (bias) w.bias = vector(prefix + ".bias", out);
    return w;
  }

  /// A LayerNorm `prefix`.weight and `prefix`.bias, both (size).
  LayerNormWeights layer_norm(const std::string& prefix, std::int64_t size) {
    return {vector(prefix + ".weight", size), vector(prefix + ".bias", size)};
  }

  /// Names of the checkpoint's tensors that no load call used and `ignored` does not accept.
  template <class Pred> std::vector<std::string> unused(Pred&& ignored) const {
    std::vector<std::string> out;
    for (const auto& name : storage_.checkpoint.names())
      if (!used_.contains(name) && !ignored(name)) out.push_back(name);
    return out;
  }

private:
  const TensorInfo& get(const std::string& name, std::vector<std::int64_t> shape) {
    const TensorInfo& t = storage_.checkpoint.at(name);
    SC2_CHECK(t.shape == shape, "tensor '{}' in '{}' has shape [{}], expected [{}] from config.json", name,
              t.file.string(), fmt::join(t.shape, ", "), fmt::join(shape, ", "));
    SC2_CHECK(t.dtype.has_value(), "tensor '{}' in '{}' has dtype {}; weights must be F32, BF16 or F16", name,
              t.file.string(), t.dtype_name);
    used_.insert(name);
    return t;
  }

  const void* convert(const TensorInfo& t, DType to) {
    const std::int64_t n = t.numel();
    Buffer<std::byte> out(static_cast<std::size_t>(n) * dtype_size(to));
    const std::byte* src = t.bytes.data();
    auto element = [&](std::int64_t i) -> float {
      switch (*t.dtype) {
        case DType::f32: { float v; std::memcpy(&v, src + 4 * i, 4); return v; }
        case DType::bf16: { std::uint16_t b; std::memcpy(&b, src + 2 * i, 2); return bf16::from_bits(b).to_float(); }
        case DType::f16: { std::uint16_t b; std::memcpy(&b, src + 2 * i, 2); return f16::from_bits(b).to_float(); }
      }
      return 0.0f;
    };
    for (std::int64_t i = 0; i < n; ++i) {
      const float v = element(i);
      switch (to) {
        case DType::f32: reinterpret_cast<float*>(out.data())[i] = v; break;
        case DType::bf16: reinterpret_cast<bf16*>(out.data())[i] = bf16::round(v); break;
        case DType::f16: reinterpret_cast<f16*>(out.data())[i] = f16::round(v); break;
      }
    }
    storage_.converted.push_back(std::move(out));
    return storage_.converted.back().data();
  }

  WeightStorage& storage_;
  std::optional<DType> matrix_dtype_;
  std::set<std::string> used_;
};

}  // namespace sc2
