#pragma once
/// \file
/// The CUDA backend's kernel launchers, declared for host code.
///
/// Each launcher enqueues one or two kernels on a stream and returns; the
/// shapes follow the op headers (`sc2/ops/`), with activations in float and
/// keys and values in float or bfloat16. This header needs the CUDA runtime's
/// headers but not nvcc: a program compiled by g++ or clang calls these, and
/// exactly one translation unit compiled by nvcc defines them by including
/// `<sc2/backends/cuda/kernels.cuh>` (CMake's `sc2::cuda` target adds that
/// unit to every target that links it).
///
///     sc2::cuda::kernels::layer_norm(stream, out, in, weight, bias, T, D, 1e-5f);

#include <sc2/core/dtype.hpp>
#include <sc2/ops/batch_entry.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace sc2::cuda::kernels {

/// The most rotary frequencies a RoPE launch carries (head dims up to 512).
inline constexpr int kMaxRotaryFrequencies = 256;

/// The inverse frequencies of a rotary embedding, passed by value to the kernel.
struct RotaryFrequencies {
  float inv_freq[kMaxRotaryFrequencies];  ///< the first `half` are used
  int half = 0;                           ///< R / 2
};

/// The element type of a KV pool's keys and values.
enum class KvType : std::uint8_t { f32, bf16 };

/// Everything the attention kernels read: queries, the pool layer's pages and the batch plan.
struct AttentionArgs {
  float* out = nullptr;                        ///< (T, H·Dh)
  const float* q = nullptr;                    ///< (T, H·Dh)
  const void* keys = nullptr;                  ///< (pages, Hkv, P, Dh)
  const void* values = nullptr;                ///< (pages, Hkv, P, Dh)
  KvType kv_type = KvType::bf16;               ///< element type of keys and values
  const std::int32_t* positions = nullptr;     ///< (T)
  const std::int32_t* row_entry = nullptr;     ///< (T)
  const ops::BatchEntry* entries = nullptr;    ///< (B)
  const std::int32_t* page_table = nullptr;    ///< the entries' physical pages
  std::int64_t rows = 0;                       ///< T
  int heads = 0;                               ///< H
  int kv_heads = 0;                            ///< Hkv
  int head_dim = 0;                            ///< Dh
  std::int64_t page_size = 0;                  ///< P
  float scale = 0.0f;                          ///< multiplier of q·k
  std::int64_t window = 0;                     ///< W, or 0 for plain causal attention
};

/// Per-row controls of the device sampler (see `sc2::Sampler` for the semantics).
struct SampleParams {
  std::int32_t do_sample = 0;         ///< 0: greedy
  float temperature = 1.0f;           ///< divides the scores when sampling
  std::int32_t top_k = 0;             ///< 0: off
  float top_p = 1.0f;                 ///< 1: off
  float min_p = -1.0f;                ///< < 0: off
  float repetition_penalty = 1.0f;    ///< 1: off
  double uniform = 0.0;               ///< the row's draw in [0, 1), from its host generator
  std::int64_t history_offset = 0;    ///< where the row's history starts in the packed ids
  std::int64_t history_length = 0;    ///< its length
};

/// Device scratch the sampler needs for R rows of V scores, in bytes (one slice, 256-byte aligned parts).
std::size_t sample_scratch_bytes(std::int64_t rows, std::int64_t vocab);

/// out[t, :] = table[ids[t], :] widened to float; table (V, D) row-major f32 or bf16.
void embedding(cudaStream_t stream, float* out, const void* table, DType dtype, const std::int32_t* ids,
               std::int64_t tokens, std::int64_t hidden);
/// out (T, D) = LayerNorm(in) with weight and bias (D); statistics in double.
void layer_norm(cudaStream_t stream, float* out, const float* in, const float* weight, const float* bias,
                std::int64_t tokens, std::int64_t hidden, float eps);
/// x (n) = gelu_tanh(x), in place.
void gelu_tanh(cudaStream_t stream, float* x, std::int64_t n);
/// acc (n) += x (n).
void add(cudaStream_t stream, float* acc, const float* x, std::int64_t n);
/// out (R, D) = in[rows[r], :].
void gather_rows(cudaStream_t stream, float* out, const float* in, const std::int32_t* rows, std::int64_t count,
                 std::int64_t hidden);
/// out (n) = in (n) rounded to bfloat16 (raw bits) or float16, ties to even.
void round_to(cudaStream_t stream, void* out, DType dtype, const float* in, std::int64_t n);
/// out (n) = in (n) of `dtype` widened to float, or narrowed to `out_dtype`: a weight's one conversion at upload.
void convert(cudaStream_t stream, void* out, DType out_dtype, const void* in, DType in_dtype, std::int64_t n);
/// Rotates x (T, heads, Dh), rows `row_stride` floats apart, by positions (T).
void rope(cudaStream_t stream, float* x, const std::int32_t* positions, std::int64_t tokens, int heads, int head_dim,
          std::int64_t row_stride, const RotaryFrequencies& frequencies);
/// Rotates q (T, H, Dh) and k (T, Hkv, Dh) in place, dense rows, and writes the
/// rotated k and v (T, Hkv·Dh) into each row's slot of the pool layer's pages.
void rope_kv_append(cudaStream_t stream, const AttentionArgs& layer, float* q, float* k, const float* v,
                    const RotaryFrequencies& frequencies);
/// Writes k and v (T, Hkv·Dh) into each row's slot of the pool layer's pages.
void kv_append(cudaStream_t stream, const AttentionArgs& layer, const float* k, const float* v);
/// Split-KV attention (see attention.cuh): `splits` blocks per row and kv head;
/// with more than one, `partials` holds T·H·splits·(Dh + 2) floats.
void attention(cudaStream_t stream, const AttentionArgs& args, int splits, float* partials);
/// Shared memory one attention block needs, in bytes.
std::size_t attention_shared_bytes(int group, int head_dim);
/// Picks a token per row of logits (R, V): repetition penalty, then greedy
/// argmax or temperature, top-k, top-p, min-p and an inverse-CDF draw at the
/// row's `uniform`; `ids` (R) on the device, −1 where every token was removed.
/// `params` live on the device, `host_params` are the same rows on the host;
/// `history_scores` holds as many floats as the packed history has ids, and
/// `scratch` the `sample_scratch_bytes(rows, vocab)` bytes.
void sample(cudaStream_t stream, const float* logits, std::int64_t rows, std::int64_t vocab,
            const SampleParams* params, const SampleParams* host_params, const std::int32_t* history,
            float* history_scores, void* scratch, std::size_t scratch_bytes, std::int32_t* ids);

}  // namespace sc2::cuda::kernels
