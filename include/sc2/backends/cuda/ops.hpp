#pragma once
/// \file
/// CUDA implementations of every op, found by argument-dependent lookup from
/// the op front-ends of `sc2/ops/` when their context is a `cuda::Context`.
///
///     linear        out (T, N) = in (T, K) · Wᵀ + bias      cuBLASLt; bf16 weights take
///                                                           the input rounded to bf16,
///                                                           f32 accumulation, bias epilogue
///     layer_norm, gelu_tanh, add, gather_rows, embedding, rope, kv_append:  one kernel each;
///     rope_kv_append: both rotations and the append in one kernel
///     attention     split-KV online-softmax kernel (kernels.cuh), splits chosen so that
///                   a decode step of few rows still fills every multiprocessor
///     sample        penalty, filters and draw on the device; one id per row comes back
///
/// Weights are uploaded once (`upload_matrix`): row-major, in bf16 or f32,
/// converted on the device from what the checkpoint stores.

#include <sc2/backends/cuda/context.hpp>
#include <sc2/backends/cuda/kernels.hpp>
#include <sc2/core/buffer.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/ops/attention.hpp>
#include <sc2/ops/batch_plan.hpp>
#include <sc2/ops/rope.hpp>
#include <sc2/ops/sample.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <span>
#include <type_traits>

namespace sc2::cuda {
namespace detail {

/// The cuBLAS data type of a weight dtype.
inline cudaDataType_t blas_type(DType dtype) noexcept {
  switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
  }
  return CUDA_R_32F;
}

/// The largest power of two, up to 256, dividing the address `p`.
inline int alignment_of(const void* p) noexcept {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t low = address & (~address + 1);
  return static_cast<int>(address == 0 || low > 256 ? 256 : low);
}

/// The element type tag of a KV pool element.
template <class Kv> constexpr kernels::KvType kv_type() noexcept {
  static_assert(std::is_same_v<Kv, float> || std::is_same_v<Kv, bf16>, "the CUDA KV pool holds float or bf16");
  return std::is_same_v<Kv, float> ? kernels::KvType::f32 : kernels::KvType::bf16;
}

/// The attention kernels' view of a pool layer and a plan.
template <class Kv>
kernels::AttentionArgs attention_args(const ops::KvLayer<Kv, Device>& layer, const ops::BatchView<Device>& plan) {
  kernels::AttentionArgs a;
  a.keys = layer.keys;
  a.values = layer.values;
  a.kv_type = kv_type<std::remove_const_t<Kv>>();
  a.positions = plan.positions.data();
  a.row_entry = plan.row_entry.data();
  a.entries = plan.entries.data();
  a.page_table = plan.page_table.data();
  a.rows = plan.rows();
  a.kv_heads = layer.kv_heads;
  a.head_dim = layer.head_dim;
  a.page_size = plan.page_size;
  return a;
}

/// A rotary table's frequencies as the kernels take them (by value).
inline kernels::RotaryFrequencies frequencies(const ops::RotaryTable& table) {
  SC2_CHECK(table.rotary_dim() / 2 <= kernels::kMaxRotaryFrequencies, "CUDA rope: rotary dim {} exceeds {}",
            table.rotary_dim(), 2 * kernels::kMaxRotaryFrequencies);
  kernels::RotaryFrequencies f;
  f.half = table.rotary_dim() / 2;
  std::copy(table.inv_freq().begin(), table.inv_freq().end(), f.inv_freq);
  return f;
}

/// Chooses the cuBLASLt plan of one product shape.
inline MatmulPlan make_matmul_plan(Context& ctx, DType dtype, std::int64_t T, std::int64_t N, std::int64_t K,
                                   std::int64_t ld_in, std::int64_t ld_out, bool bias, int align_a, int align_b,
                                   int align_c) {
  MatmulPlan plan;
  const cudaDataType_t type = blas_type(dtype);
  check(cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  // Column-major view: out^T (N, T) = W (stored (N, K) row-major = (K, N) column-major)^T · in^T (K, T).
  const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)),
        "set TRANSA");
  check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof(keep)), "set TRANSB");
  if (bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
          "set EPILOGUE");
    const cudaDataType_t bias_type = CUDA_R_32F;
    check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)),
          "set BIAS_DATA_TYPE");
  }
  const auto u = [](std::int64_t x) { return static_cast<std::uint64_t>(x); };
  check(cublasLtMatrixLayoutCreate(&plan.a, type, u(K), u(N), K), "layout of the weight");
  check(cublasLtMatrixLayoutCreate(&plan.b, type, u(K), u(T), ld_in), "layout of the input");
  check(cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, u(N), u(T), ld_out), "layout of the output");

  cublasLtMatmulPreference_t preference = nullptr;
  check(cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate");
  const std::size_t workspace = Context::kBlasWorkspaceBytes;
  const auto a32 = static_cast<std::uint32_t>(align_a), b32 = static_cast<std::uint32_t>(align_b),
             c32 = static_cast<std::uint32_t>(align_c);
  cublasStatus_t status =
      cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                           sizeof(workspace));
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a32,
                                                  sizeof(a32));
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b32,
                                                  sizeof(b32));
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &c32,
                                                  sizeof(c32));
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &c32,
                                                  sizeof(c32));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulAlgoGetHeuristic(ctx.blas(), plan.op, plan.a, plan.b, plan.c, plan.c, preference, 1,
                                            &result, &found);
  (void)cublasLtMatmulPreferenceDestroy(preference);
  check(status, "choosing a matrix product");
  SC2_CHECK(found > 0, "cuBLASLt has no algorithm for ({}, {}) · ({}, {})ᵀ in {}", T, K, N, K, dtype_name(dtype));
  plan.algo = result.algo;
  return plan;
}

}  // namespace detail

/// Takes a host weight matrix (row-major, any stored dtype) into device memory
/// as `dtype` (bf16 or f32), row-major: copied once, converted on the device.
inline OwnedWeight<Device> upload_matrix(Context& ctx, const WeightMatrix& host, DType dtype) {
  SC2_CHECK(host.layout == WeightLayout::row_major, "upload_matrix: the host matrix must be row-major");
  SC2_CHECK(dtype == DType::bf16 || dtype == DType::f32,
            "the CUDA backend keeps weights in BF16 or F32, not {}", dtype_name(dtype));
  const std::int64_t n = host.rows * host.cols;
  OwnedWeight<Device> w{Buffer<std::byte, Device>(static_cast<std::size_t>(n) * dtype_size(dtype)),
                        {dtype, WeightLayout::row_major, nullptr, host.rows, host.cols, std::nullopt}};
  w.view.data = w.storage.data();
  const std::size_t stored_bytes = static_cast<std::size_t>(n) * dtype_size(host.dtype);
  if (host.dtype == dtype) {
    check(cudaMemcpyAsync(w.storage.data(), host.data, stored_bytes, cudaMemcpyHostToDevice, ctx.stream()),
          "uploading a weight");
  } else {
    Buffer<std::byte, Device> staged(stored_bytes);
    check(cudaMemcpyAsync(staged.data(), host.data, stored_bytes, cudaMemcpyHostToDevice, ctx.stream()),
          "uploading a weight");
    kernels::convert(ctx.stream(), w.storage.data(), dtype, staged.data(), host.dtype, n);
    ctx.synchronize();  // before `staged` goes
  }
  return w;
}

/// CUDA `ops::linear`: out (T, N) = in (T, K) · Wᵀ (+ bias), through cuBLASLt.
inline void run_linear(Context& ctx, Matrix<float, Device> out, Matrix<const float, Device> in,
                       const WeightView<Device>& weight, Vector<const float, Device> bias) {
  SC2_CHECK(weight.layout == WeightLayout::row_major && (weight.dtype == DType::bf16 || weight.dtype == DType::f32),
            "CUDA linear: weights must be row-major BF16 or F32");
  const std::int64_t T = in.extent(0), K = weight.cols, N = weight.rows;
  if (T == 0) return;
  const void* input = in.data();
  std::int64_t ld_in = in.stride(0);
  if (weight.dtype != DType::f32) {  // cuBLASLt multiplies like types: round the input once
    void* rounded = ctx.scratch(Scratch::linear_input, static_cast<std::size_t>(T * K) * dtype_size(weight.dtype));
    SC2_CHECK(in.stride(0) == K, "CUDA linear: the input rows must be dense");
    kernels::round_to(ctx.stream(), rounded, weight.dtype, in.data(), T * K);
    input = rounded;
    ld_in = K;
  }
  const bool has_bias = !bias.empty();
  const int align_a = detail::alignment_of(weight.data), align_b = detail::alignment_of(input);
  const int align_c = std::min(detail::alignment_of(out.data()), has_bias ? detail::alignment_of(bias.data()) : 256);
  const MatmulKey key{static_cast<int>(weight.dtype), T, N, K, ld_in, out.stride(0), has_bias, align_a, align_b, align_c};
  const MatmulPlan& plan = ctx.matmul_plan(key, [&] {
    return detail::make_matmul_plan(ctx, weight.dtype, T, N, K, ld_in, out.stride(0), has_bias, align_a, align_b,
                                    align_c);
  });
  if (has_bias) {
    const float* bias_pointer = bias.data();
    check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_pointer,
                                         sizeof(bias_pointer)),
          "set BIAS_POINTER");
  }
  const float alpha = 1.0f, beta = 0.0f;
  check(cublasLtMatmul(ctx.blas(), plan.op, &alpha, weight.data, plan.a, input, plan.b, &beta, out.data(), plan.c,
                       out.data(), plan.c, &plan.algo, ctx.blas_workspace(), Context::kBlasWorkspaceBytes,
                       ctx.stream()),
        "cublasLtMatmul");
}

/// CUDA `ops::layer_norm`.
inline void run_layer_norm(Context& ctx, Matrix<float, Device> out, Matrix<const float, Device> in,
                           Vector<const float, Device> weight, Vector<const float, Device> bias, float eps) {
  SC2_CHECK(in.is_contiguous() && out.is_contiguous(), "CUDA layer_norm: rows must be dense");
  if (in.extent(0) == 0) return;
  kernels::layer_norm(ctx.stream(), out.data(), in.data(), weight.data(), bias.data(), in.extent(0), in.extent(1), eps);
}

/// CUDA `ops::gelu_tanh`.
inline void run_gelu_tanh(Context& ctx, Matrix<float, Device> x) {
  SC2_CHECK(x.is_contiguous(), "CUDA gelu_tanh: rows must be dense");
  if (x.size() > 0) kernels::gelu_tanh(ctx.stream(), x.data(), x.size());
}

/// CUDA `ops::add`.
inline void run_add(Context& ctx, Matrix<float, Device> acc, Matrix<const float, Device> x) {
  SC2_CHECK(acc.is_contiguous() && x.is_contiguous(), "CUDA add: rows must be dense");
  if (acc.size() > 0) kernels::add(ctx.stream(), acc.data(), x.data(), acc.size());
}

/// CUDA `ops::gather_rows`.
inline void run_gather_rows(Context& ctx, Matrix<float, Device> out, Matrix<const float, Device> in,
                            Vector<const std::int32_t, Device> rows) {
  SC2_CHECK(in.is_contiguous() && out.is_contiguous(), "CUDA gather_rows: rows must be dense");
  if (rows.extent(0) > 0)
    kernels::gather_rows(ctx.stream(), out.data(), in.data(), rows.data(), rows.extent(0), in.extent(1));
}

/// CUDA `ops::embedding`: rows of a row-major table, widened to float.
inline void run_embedding(Context& ctx, Matrix<float, Device> out, const WeightView<Device>& table,
                          Vector<const std::int32_t, Device> ids) {
  SC2_CHECK(table.layout == WeightLayout::row_major && out.is_contiguous(), "CUDA embedding: row-major table, dense rows");
  if (ids.extent(0) > 0)
    kernels::embedding(ctx.stream(), out.data(), table.data, table.dtype, ids.data(), ids.extent(0), table.cols);
}

/// CUDA `ops::rope`.
inline void run_rope(Context& ctx, TensorView<float, 3, Device> x, Vector<const std::int32_t, Device> positions,
                     const ops::RotaryTable& table) {
  SC2_CHECK(x.stride(1) == x.extent(2), "CUDA rope: heads must be dense within a row");
  const kernels::RotaryFrequencies f = detail::frequencies(table);
  if (x.extent(0) > 0)
    kernels::rope(ctx.stream(), x.data(), positions.data(), x.extent(0), static_cast<int>(x.extent(1)),
                  static_cast<int>(x.extent(2)), x.stride(0), f);
}

/// CUDA `ops::rope_kv_append`: one kernel rotates q and k and writes k and v to the pages.
template <class Kv>
void run_rope_kv_append(Context& ctx, const ops::KvLayer<Kv, Device>& layer, TensorView<float, 3, Device> q,
                        TensorView<float, 3, Device> k, Matrix<const float, Device> v,
                        const ops::BatchView<Device>& plan, const ops::RotaryTable& table) {
  SC2_CHECK(v.is_contiguous(), "CUDA rope_kv_append: rows must be dense");
  kernels::AttentionArgs a = detail::attention_args(layer, plan);
  a.heads = static_cast<int>(q.extent(1));
  if (plan.rows() > 0)
    kernels::rope_kv_append(ctx.stream(), a, q.data(), k.data(), v.data(), detail::frequencies(table));
}

/// CUDA `ops::kv_append`.
template <class Kv>
void run_kv_append(Context& ctx, const ops::KvLayer<Kv, Device>& layer, Matrix<const float, Device> k,
                   Matrix<const float, Device> v, const ops::BatchView<Device>& plan) {
  SC2_CHECK(k.is_contiguous() && v.is_contiguous(), "CUDA kv_append: rows must be dense");
  if (plan.rows() > 0) kernels::kv_append(ctx.stream(), detail::attention_args(layer, plan), k.data(), v.data());
}

/// CUDA `ops::attention` for StarCoder2's sliding-window mask.
template <class Kv, class Mask>
void run_attention(Context& ctx, Matrix<float, Device> out, Matrix<const float, Device> q,
                   const ops::KvLayer<Kv, Device>& layer, const ops::BatchView<Device>& plan,
                   const ops::AttentionShape& shape, const Mask& mask) {
  static_assert(std::is_same_v<Mask, ops::SlidingWindowMask>,
                "the CUDA attention kernels implement ops::SlidingWindowMask; a variant's mask needs its own kernel");
  SC2_CHECK(q.is_contiguous() && out.is_contiguous(), "CUDA attention: rows must be dense");
  const std::int64_t T = plan.rows();
  if (T == 0) return;
  const int group = shape.heads / shape.kv_heads;
  const std::size_t shared = kernels::attention_shared_bytes(group, shape.head_dim);
  SC2_CHECK(shared <= ctx.properties().sharedMemPerBlockOptin,
            "CUDA attention: {} query heads per kv head of {} need {} bytes of shared memory, the GPU has {}", group,
            shape.head_dim, shared, ctx.properties().sharedMemPerBlockOptin);
  kernels::AttentionArgs a = detail::attention_args(layer, plan);
  a.out = out.data();
  a.q = q.data();
  a.heads = shape.heads;
  a.scale = shape.scale;
  a.window = mask.window.value_or(0);
  // Enough blocks for two per multiprocessor: a decode step of one row splits
  // its keys over many blocks, a prefill chunk does not split at all.
  const std::int64_t blocks = T * shape.kv_heads, wanted = 2 * std::int64_t{ctx.multiprocessors()};
  const int splits = blocks >= wanted ? 1 : static_cast<int>(std::min<std::int64_t>(64, (wanted + blocks - 1) / blocks));
  float* partials = nullptr;
  if (splits > 1)
    partials = static_cast<float*>(ctx.scratch(
        Scratch::attention_partials,
        static_cast<std::size_t>(T * shape.heads * splits) * (static_cast<std::size_t>(shape.head_dim) + 2) *
            sizeof(float)));
  kernels::attention(ctx.stream(), a, splits, partials);
}

/// CUDA `ops::sample`: every row's penalty, filters and draw on the device
/// (the draw's uniform comes from the row's own host generator, so a seed
/// reproduces a run); one id per row comes back to `ids`.
inline void run_sample(Context& ctx, Matrix<const float, Device> logits, std::span<const ops::SampleRow> rows,
                       std::span<std::int32_t> ids) {
  const auto R = static_cast<std::int64_t>(rows.size());
  const std::int64_t V = logits.extent(1);
  SC2_CHECK(logits.is_contiguous(), "CUDA sample: logits rows must be dense");
  SC2_CHECK(R * V < (std::int64_t{1} << 31), "CUDA sample: {} rows of {} scores exceed the sorter's 2^31", R, V);
  std::int64_t history = 0;
  for (const ops::SampleRow& row : rows)
    if (row.sampler->config().repetition_penalty != 1.0f) history += static_cast<std::int64_t>(row.history.size());
  // Pinned staging: parameters, then the packed history.
  const std::size_t params_bytes = static_cast<std::size_t>(R) * sizeof(kernels::SampleParams);
  const std::size_t params_padded = (params_bytes + 255) / 256 * 256;
  const std::size_t history_bytes = static_cast<std::size_t>(history) * sizeof(std::int32_t);
  auto* up = static_cast<std::byte*>(ctx.staging(Staging::sampling_rows, params_padded + history_bytes));
  auto* params = reinterpret_cast<kernels::SampleParams*>(up);
  auto* packed = reinterpret_cast<std::int32_t*>(up + params_padded);
  std::int64_t offset = 0;
  for (std::int64_t r = 0; r < R; ++r) {
    const ops::SampleRow& row = rows[static_cast<std::size_t>(r)];
    const SamplingConfig& c = row.sampler->config();
    kernels::SampleParams& p = params[r];
    p = kernels::SampleParams{};
    p.do_sample = c.do_sample ? 1 : 0;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.min_p = c.min_p ? *c.min_p : -1.0f;
    p.repetition_penalty = c.repetition_penalty;
    p.uniform = c.do_sample ? row.sampler->draw_uniform() : 0.0;
    if (c.repetition_penalty != 1.0f) {
      p.history_offset = offset;
      p.history_length = static_cast<std::int64_t>(row.history.size());
      std::copy(row.history.begin(), row.history.end(), packed + offset);
      offset += p.history_length;
    }
  }
  // Device: parameters, history, scores of the history, ids; then the sampler's scratch.
  const std::size_t history_padded = (history_bytes + 255) / 256 * 256;
  const std::size_t ids_bytes = (static_cast<std::size_t>(R) * sizeof(std::int32_t) + 255) / 256 * 256;
  auto* device_rows =
      static_cast<std::byte*>(ctx.scratch(Scratch::sampling_rows, params_padded + 2 * history_padded + ids_bytes));
  check(cudaMemcpyAsync(device_rows, up, params_padded + history_bytes, cudaMemcpyHostToDevice, ctx.stream()),
        "copying sampling parameters");
  auto* device_params = reinterpret_cast<const kernels::SampleParams*>(device_rows);
  auto* device_history = reinterpret_cast<const std::int32_t*>(device_rows + params_padded);
  auto* history_scores = reinterpret_cast<float*>(device_rows + params_padded + history_padded);
  auto* device_ids = reinterpret_cast<std::int32_t*>(device_rows + params_padded + 2 * history_padded);
  const std::size_t scratch_bytes = kernels::sample_scratch_bytes(R, V);
  void* scratch = ctx.scratch(Scratch::sampling, scratch_bytes);
  kernels::sample(ctx.stream(), logits.data(), R, V, device_params, params, device_history, history_scores, scratch,
                  scratch_bytes, device_ids);
  auto* down = static_cast<std::int32_t*>(ctx.staging(Staging::sampled_ids, static_cast<std::size_t>(R) * sizeof(std::int32_t)));
  check(cudaMemcpyAsync(down, device_ids, static_cast<std::size_t>(R) * sizeof(std::int32_t), cudaMemcpyDeviceToHost,
                        ctx.stream()),
        "copying sampled ids");
  ctx.synchronize();
  for (std::int64_t r = 0; r < R; ++r) {
    SC2_CHECK(down[r] >= 0, "every token was removed by the sampling filters");
    ids[static_cast<std::size_t>(r)] = down[r];
  }
}

}  // namespace sc2::cuda
