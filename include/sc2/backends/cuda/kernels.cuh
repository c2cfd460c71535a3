#pragma once
/// \file
/// The CUDA backend's kernels and the definitions of their launchers
/// (declared in kernels.hpp). Include this file in exactly one translation
/// unit compiled by nvcc; CMake's `sc2::cuda` target does that for its
/// consumers. Shapes and math are those of the op headers:
///
///     embedding     out (T, D) = table[ids]                      table f32 or bf16
///     layer_norm    out (T, D) = (x − μ) / √(σ² + ε) · w + b     μ, σ² summed in double
///     gelu_tanh     x = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
///     rope          x (T, heads, Dh) rotated by position (rotate_half)
///     kv_append     pages[page(pos), g, pos % P, :] = k[t, g, :]  (and v)
///     rope_kv_append  both rotations and the append, one block per row
///     attention     out (T, H·Dh): softmax over each row's visible keys, online,
///                   in tiles of 32 keys; keys split over blocks and combined after
///     sample        one id per row of logits (R, V)
///
/// Activations are float; keys and values float or bfloat16 (raw bits).

#include <sc2/backends/cuda/kernels.hpp>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace sc2::cuda::kernels {
namespace detail {

/// Throws when a launch failed to start (bad configuration); asynchronous
/// errors surface at the context's next synchronisation.
inline void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("CUDA: launching ") + what + " failed: " + cudaGetErrorString(status));
}

/// Blocks of `threads` covering `n` items, at most 65535·16 (grid-stride loops cover the rest).
inline unsigned blocks_for(std::int64_t n, int threads) {
  const std::int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > (1 << 20) ? (1 << 20) : b));
}

/// A bfloat16 (raw bits) widened to float.
__device__ __forceinline__ float bf16_to_float(std::uint16_t bits) { return __uint_as_float(std::uint32_t{bits} << 16); }

/// A float rounded to bfloat16 bits, ties to even, NaN kept a NaN (as sc2::bf16::round).
__device__ __forceinline__ std::uint16_t float_to_bf16(float f) {
  std::uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

/// Element i of a key/value array of either element type.
__device__ __forceinline__ float load_kv(const float* p, std::int64_t i) { return p[i]; }
__device__ __forceinline__ float load_kv(const std::uint16_t* p, std::int64_t i) { return bf16_to_float(p[i]); }
__device__ __forceinline__ void store_kv(float* p, std::int64_t i, float x) { p[i] = x; }
__device__ __forceinline__ void store_kv(std::uint16_t* p, std::int64_t i, float x) { p[i] = float_to_bf16(x); }

/// Element i of a weight array of `dtype`, widened to float.
__device__ __forceinline__ float load_weight(const void* p, DType dtype, std::int64_t i) {
  switch (dtype) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::bf16: return bf16_to_float(static_cast<const std::uint16_t*>(p)[i]);
    case DType::f16: return __half2float(static_cast<const __half*>(p)[i]);
  }
  return 0.0f;
}
/// Stores x into element i of an array of `dtype`, rounded to nearest even.
__device__ __forceinline__ void store_element(void* p, DType dtype, std::int64_t i, float x) {
  switch (dtype) {
    case DType::f32: static_cast<float*>(p)[i] = x; break;
    case DType::bf16: static_cast<std::uint16_t*>(p)[i] = float_to_bf16(x); break;
    case DType::f16: static_cast<__half*>(p)[i] = __float2half_rn(x); break;
  }
}

/// The physical page slot offset, in elements, of position `pos` of kv head `g` for entry `e`.
__device__ __forceinline__ std::int64_t kv_offset(const AttentionArgs& a, const ops::BatchEntry& e, std::int64_t pos,
                                                  int g) {
  const std::int32_t page = a.page_table[e.page_offset + pos / a.page_size - e.first_page];
  return ((static_cast<std::int64_t>(page) * a.kv_heads + g) * a.page_size + pos % a.page_size) * a.head_dim;
}

// ---------------------------------------------------------------------------------------------
// Row-wise and element-wise kernels.

__global__ void embedding_kernel(float* out, const void* table, DType dtype, const std::int32_t* ids,
                                 std::int64_t hidden) {
  const std::int64_t t = blockIdx.x;
  const std::int64_t row = static_cast<std::int64_t>(ids[t]) * hidden;
  for (std::int64_t d = threadIdx.x; d < hidden; d += blockDim.x) out[t * hidden + d] = load_weight(table, dtype, row + d);
}

constexpr int kNormThreads = 256;

__global__ void __launch_bounds__(kNormThreads)
    layer_norm_kernel(float* out, const float* in, const float* weight, const float* bias, std::int64_t hidden,
                      float eps) {
  using Reduce = cub::BlockReduce<double, kNormThreads>;
  __shared__ typename Reduce::TempStorage storage;
  __shared__ double shared_mean, shared_var;
  const float* x = in + static_cast<std::int64_t>(blockIdx.x) * hidden;
  float* y = out + static_cast<std::int64_t>(blockIdx.x) * hidden;
  double sum = 0.0;
  for (std::int64_t d = threadIdx.x; d < hidden; d += kNormThreads) sum += static_cast<double>(x[d]);
  sum = Reduce(storage).Sum(sum);
  if (threadIdx.x == 0) shared_mean = sum / static_cast<double>(hidden);
  __syncthreads();
  const double mean = shared_mean;
  double squares = 0.0;
  for (std::int64_t d = threadIdx.x; d < hidden; d += kNormThreads) {
    const double c = static_cast<double>(x[d]) - mean;
    squares += c * c;
  }
  squares = Reduce(storage).Sum(squares);
  if (threadIdx.x == 0) shared_var = squares / static_cast<double>(hidden);
  __syncthreads();
  const float inv = static_cast<float>(1.0 / sqrt(shared_var + static_cast<double>(eps)));
  const float meanf = static_cast<float>(mean);
  for (std::int64_t d = threadIdx.x; d < hidden; d += kNormThreads) y[d] = (x[d] - meanf) * inv * weight[d] + bias[d];
}

__global__ void gelu_tanh_kernel(float* x, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float v = x[i];
    const float inner = 0.7978845608028654f * (v + 0.044715f * v * v * v);
    x[i] = 0.5f * v * (1.0f + tanhf(inner));
  }
}

__global__ void add_kernel(float* acc, const float* x, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    acc[i] += x[i];
}

__global__ void gather_rows_kernel(float* out, const float* in, const std::int32_t* rows, std::int64_t hidden) {
  const std::int64_t r = blockIdx.x;
  const std::int64_t src = static_cast<std::int64_t>(rows[r]) * hidden;
  for (std::int64_t d = threadIdx.x; d < hidden; d += blockDim.x) out[r * hidden + d] = in[src + d];
}

__global__ void convert_kernel(void* out, DType out_dtype, const void* in, DType in_dtype, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    store_element(out, out_dtype, i, load_weight(in, in_dtype, i));
}

__global__ void rope_kernel(float* x, const std::int32_t* positions, int heads, int head_dim, std::int64_t row_stride,
                            RotaryFrequencies f) {
  const std::int64_t t = blockIdx.x;
  const float position = static_cast<float>(positions[t]);
  float* row = x + t * row_stride;
  for (int i = threadIdx.x; i < f.half; i += blockDim.x) {
    // cos and sin of the float angle, correctly rounded to float (as the CPU backend).
    const float angle = position * f.inv_freq[i];
    const float c = static_cast<float>(cos(static_cast<double>(angle)));
    const float s = static_cast<float>(sin(static_cast<double>(angle)));
    for (int h = 0; h < heads; ++h) {
      float* head = row + static_cast<std::int64_t>(h) * head_dim;
      const float x1 = head[i], x2 = head[i + f.half];
      head[i] = x1 * c - x2 * s;
      head[i + f.half] = x2 * c + x1 * s;
    }
  }
}

template <class Kv>
__global__ void kv_append_kernel(AttentionArgs a, Kv* keys, Kv* values, const float* k, const float* v) {
  const std::int64_t t = blockIdx.x;
  const ops::BatchEntry e = a.entries[a.row_entry[t]];
  const std::int64_t pos = a.positions[t];
  const int width = a.kv_heads * a.head_dim;
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    const int g = i / a.head_dim, d = i - g * a.head_dim;
    const std::int64_t dst = kv_offset(a, e, pos, g) + d;
    store_kv(keys, dst, k[t * width + i]);
    store_kv(values, dst, v[t * width + i]);
  }
}

/// One block per row: cos and sin of the row's angles once into shared memory,
/// then q's heads rotated in place, then each kv head's rotated key (also kept
/// in k) and its value written to the row's page slot.
template <class Kv>
__global__ void rope_kv_append_kernel(AttentionArgs a, Kv* keys, Kv* values, float* q, float* k, const float* v,
                                      RotaryFrequencies f) {
  __shared__ float cos_s[kMaxRotaryFrequencies], sin_s[kMaxRotaryFrequencies];
  const std::int64_t t = blockIdx.x;
  const std::int64_t pos = a.positions[t];
  for (int i = threadIdx.x; i < f.half; i += blockDim.x) {
    const float angle = static_cast<float>(pos) * f.inv_freq[i];
    cos_s[i] = static_cast<float>(cos(static_cast<double>(angle)));
    sin_s[i] = static_cast<float>(sin(static_cast<double>(angle)));
  }
  __syncthreads();
  const int Dh = a.head_dim, half = f.half;
  float* q_row = q + t * a.heads * Dh;
  for (int x = threadIdx.x; x < a.heads * half; x += blockDim.x) {
    const int h = x / half, i = x - h * half;
    float* head = q_row + h * Dh;
    const float x1 = head[i], x2 = head[i + half], c = cos_s[i], s = sin_s[i];
    head[i] = x1 * c - x2 * s;
    head[i + half] = x2 * c + x1 * s;
  }
  const ops::BatchEntry e = a.entries[a.row_entry[t]];
  float* k_row = k + t * a.kv_heads * Dh;
  const float* v_row = v + t * a.kv_heads * Dh;
  for (int x = threadIdx.x; x < a.kv_heads * Dh; x += blockDim.x) {
    const int g = x / Dh, d = x - g * Dh;
    const std::int64_t slot = kv_offset(a, e, pos, g);
    store_kv(values, slot + d, v_row[x]);
    float* head = k_row + g * Dh;
    if (d < half) {  // this thread owns the pair (d, d + half)
      const float x1 = head[d], x2 = head[d + half], c = cos_s[d], s = sin_s[d];
      const float r1 = x1 * c - x2 * s, r2 = x2 * c + x1 * s;
      head[d] = r1;
      head[d + half] = r2;
      store_kv(keys, slot + d, r1);
      store_kv(keys, slot + d + half, r2);
    } else if (d >= 2 * half) {  // past the rotary dims: as it is
      store_kv(keys, slot + d, head[d]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Attention: one block per (row, kv head, split of the row's keys). The block
// keeps the queries of the kv head's group and their running max m, sum l and
// output accumulator in shared memory, and walks its keys in tiles of 32:
//
//     s = q·kᵀ · scale;  m' = max(m, max s);  p = e^(s − m');  α = e^(m − m')
//     l = α·l + Σp;      acc = α·acc + p·V;    m = m'
//
// so no (T, keys) score matrix exists anywhere. With one split the block
// writes acc / l; with several, each writes (acc, m, l) and `combine_kernel`
// merges them: out = Σ_s e^(m_s − M) acc_s / Σ_s e^(m_s − M) l_s.

constexpr int kAttentionThreads = 128;
constexpr int kKeyTile = 32;

template <class Kv>
__global__ void __launch_bounds__(kAttentionThreads)
    attention_kernel(AttentionArgs a, const Kv* keys, const Kv* values, int splits, float* partials) {
  const std::int64_t t = blockIdx.x;
  const int g = blockIdx.y, split = blockIdx.z;
  const int group = a.heads / a.kv_heads, Dh = a.head_dim, k_stride = Dh + 1;  // padded rows: no bank conflicts
  extern __shared__ float smem[];
  float* q_s = smem;                         // (group, Dh)
  float* k_s = q_s + group * Dh;             // (tile, Dh + 1)
  float* v_s = k_s + kKeyTile * k_stride;    // (tile, Dh)
  float* p_s = v_s + kKeyTile * Dh;          // (group, tile)
  float* acc = p_s + group * kKeyTile;       // (group, Dh)
  float* m_s = acc + group * Dh;             // (group)
  float* l_s = m_s + group;                  // (group)
  float* alpha_s = l_s + group;              // (group)

  const ops::BatchEntry e = a.entries[a.row_entry[t]];
  const std::int64_t i = a.positions[t];
  std::int64_t lo = a.window > 0 ? (i - a.window + 1 > 0 ? i - a.window + 1 : 0) : 0;
  if (lo < e.first_position) lo = e.first_position;
  const std::int64_t keys_total = i - lo + 1, chunk = (keys_total + splits - 1) / splits;
  const std::int64_t begin = lo + split * chunk;
  const std::int64_t end = begin + chunk < i + 1 ? begin + chunk : i + 1;

  const std::int64_t width = static_cast<std::int64_t>(a.heads) * Dh;
  const float* q = a.q + t * width + static_cast<std::int64_t>(g) * group * Dh;
  for (int x = threadIdx.x; x < group * Dh; x += kAttentionThreads) {
    q_s[x] = q[x];
    acc[x] = 0.0f;
  }
  for (int h = threadIdx.x; h < group; h += kAttentionThreads) {
    m_s[h] = -INFINITY;
    l_s[h] = 0.0f;
  }
  __syncthreads();

  for (std::int64_t j0 = begin; j0 < end; j0 += kKeyTile) {
    const int n = static_cast<int>(end - j0 < kKeyTile ? end - j0 : kKeyTile);
    for (int x = threadIdx.x; x < n * Dh; x += kAttentionThreads) {
      const int j = x / Dh, d = x - j * Dh;
      const std::int64_t offset = kv_offset(a, e, j0 + j, g) + d;
      k_s[j * k_stride + d] = load_kv(keys, offset);
      v_s[j * Dh + d] = load_kv(values, offset);
    }
    __syncthreads();
    for (int x = threadIdx.x; x < group * n; x += kAttentionThreads) {
      const int h = x / n, j = x - h * n;
      float dot = 0.0f;
      for (int d = 0; d < Dh; ++d) dot += q_s[h * Dh + d] * k_s[j * k_stride + d];
      p_s[h * kKeyTile + j] = dot * a.scale;
    }
    __syncthreads();
    for (int h = threadIdx.x; h < group; h += kAttentionThreads) {
      float m_new = m_s[h];
      for (int j = 0; j < n; ++j) m_new = fmaxf(m_new, p_s[h * kKeyTile + j]);
      const float alpha = m_s[h] == -INFINITY ? 0.0f : expf(m_s[h] - m_new);
      float sum = 0.0f;
      for (int j = 0; j < n; ++j) {
        const float p = expf(p_s[h * kKeyTile + j] - m_new);
        p_s[h * kKeyTile + j] = p;
        sum += p;
      }
      l_s[h] = l_s[h] * alpha + sum;
      m_s[h] = m_new;
      alpha_s[h] = alpha;
    }
    __syncthreads();
    for (int x = threadIdx.x; x < group * Dh; x += kAttentionThreads) {
      const int h = x / Dh, d = x - h * Dh;
      float o = acc[x] * alpha_s[h];
      for (int j = 0; j < n; ++j) o += p_s[h * kKeyTile + j] * v_s[j * Dh + d];
      acc[x] = o;
    }
    __syncthreads();
  }

  const std::int64_t first_head = static_cast<std::int64_t>(g) * group;
  if (splits == 1) {
    for (int x = threadIdx.x; x < group * Dh; x += kAttentionThreads) {
      const int h = x / Dh;
      a.out[t * width + first_head * Dh + x] = acc[x] / l_s[h];
    }
    return;
  }
  // Partials: acc (T, H, S, Dh), then m (T, H, S), then l (T, H, S).
  const std::int64_t slots = a.rows * a.heads * splits;
  for (int x = threadIdx.x; x < group * Dh; x += kAttentionThreads) {
    const int h = x / Dh, d = x - h * Dh;
    const std::int64_t slot = (t * a.heads + first_head + h) * splits + split;
    partials[slot * Dh + d] = acc[x];
  }
  for (int h = threadIdx.x; h < group; h += kAttentionThreads) {
    const std::int64_t slot = (t * a.heads + first_head + h) * splits + split;
    partials[slots * Dh + slot] = m_s[h];
    partials[slots * Dh + slots + slot] = l_s[h];
  }
}

__global__ void combine_kernel(AttentionArgs a, int splits, const float* partials) {
  const std::int64_t row_head = blockIdx.x;  // t · H + h
  const std::int64_t slots = a.rows * a.heads * splits, first = row_head * splits;
  const float* m = partials + slots * a.head_dim;
  const float* l = m + slots;
  float m_max = -INFINITY;
  for (int s = 0; s < splits; ++s) m_max = fmaxf(m_max, m[first + s]);
  for (int d = threadIdx.x; d < a.head_dim; d += blockDim.x) {
    float numerator = 0.0f, denominator = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float ms = m[first + s];
      if (ms == -INFINITY) continue;  // an empty split
      const float w = expf(ms - m_max);
      numerator += w * partials[(first + s) * a.head_dim + d];
      denominator += w * l[first + s];
    }
    a.out[row_head * a.head_dim + d] = numerator / denominator;
  }
}

// ---------------------------------------------------------------------------------------------
// Sampling: one block per row.

constexpr int kSampleThreads = 1024;

/// The larger score, the smaller index on ties; NaN never wins.
struct FirstMax {
  __device__ __forceinline__ cub::KeyValuePair<int, float> operator()(const cub::KeyValuePair<int, float>& a,
                                                                      const cub::KeyValuePair<int, float>& b) const {
    if (b.key < 0) return a;  // no candidate (a thread whose scores were all NaN)
    if (a.key < 0) return b;
    return b.value > a.value || (b.value == a.value && b.key < a.key) ? b : a;
  }
};

/// scores = logits; repetition penalty over the history (gather, then scatter:
/// repeated ids write the same value, so each is penalized once); temperature.
__global__ void __launch_bounds__(kSampleThreads)
    prepare_scores_kernel(const float* logits, float* scores, std::int64_t vocab, const SampleParams* params,
                          const std::int32_t* history, float* history_scores) {
  const std::int64_t r = blockIdx.x;
  const SampleParams p = params[r];
  float* s = scores + r * vocab;
  for (std::int64_t v = threadIdx.x; v < vocab; v += kSampleThreads) s[v] = logits[r * vocab + v];
  __syncthreads();
  if (p.repetition_penalty != 1.0f && p.history_length > 0) {
    const std::int32_t* ids = history + p.history_offset;
    float* seen = history_scores + p.history_offset;
    for (std::int64_t k = threadIdx.x; k < p.history_length; k += kSampleThreads)
      if (ids[k] >= 0 && ids[k] < vocab) seen[k] = s[ids[k]];
    __syncthreads();
    for (std::int64_t k = threadIdx.x; k < p.history_length; k += kSampleThreads)
      if (ids[k] >= 0 && ids[k] < vocab) {
        const float x = seen[k];
        s[ids[k]] = x < 0.0f ? x * p.repetition_penalty : x / p.repetition_penalty;
      }
    __syncthreads();
  }
  if (p.do_sample && p.temperature != 1.0f)
    for (std::int64_t v = threadIdx.x; v < vocab; v += kSampleThreads) s[v] /= p.temperature;
}

__global__ void segment_offsets_kernel(int* offsets, int rows, int vocab) {
  for (int r = blockIdx.x * blockDim.x + threadIdx.x; r <= rows; r += gridDim.x * blockDim.x) offsets[r] = r * vocab;
}

/// The first index in [0, n) of a descending array whose value fails `keep`
/// (values that pass come first).
template <class Keep>
__device__ std::int64_t first_failing(const float* sorted, std::int64_t n, Keep keep) {
  std::int64_t lo = 0, hi = n;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (keep(sorted[mid])) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

__global__ void __launch_bounds__(kSampleThreads)
    choose_kernel(const float* scores, const float* sorted, std::int64_t vocab, const SampleParams* params,
                  std::int32_t* ids) {
  using Pair = cub::KeyValuePair<int, float>;
  using ArgReduce = cub::BlockReduce<Pair, kSampleThreads>;
  using Scan = cub::BlockScan<double, kSampleThreads>;
  using CountReduce = cub::BlockReduce<std::int64_t, kSampleThreads>;
  __shared__ union {
    typename ArgReduce::TempStorage arg;
    typename Scan::TempStorage scan;
    typename CountReduce::TempStorage count;
  } storage;
  __shared__ double shared_total;
  __shared__ std::int64_t shared_count;
  __shared__ int found;

  const std::int64_t r = blockIdx.x;
  const SampleParams p = params[r];
  const float* s = scores + r * vocab;
  // Each thread owns one contiguous chunk of indices, so that sums run in index order.
  const std::int64_t per_thread = (vocab + kSampleThreads - 1) / kSampleThreads;
  const std::int64_t c0 = threadIdx.x * per_thread < vocab ? threadIdx.x * per_thread : vocab;
  const std::int64_t c1 = c0 + per_thread < vocab ? c0 + per_thread : vocab;

  if (!p.do_sample) {
    Pair best{-1, -INFINITY};
    for (std::int64_t v = c0; v < c1; ++v)
      if (best.key < 0 ? !isnan(s[v]) : s[v] > best.value) best = Pair{static_cast<int>(v), s[v]};
    const Pair top = ArgReduce(storage.arg).Reduce(best, FirstMax{});
    if (threadIdx.x == 0) ids[r] = top.key < 0 ? 0 : top.key;
    return;
  }

  const float* sorted_row = sorted + r * vocab;
  const float s0 = sorted_row[0];
  if (!(s0 > -INFINITY)) {
    if (threadIdx.x == 0) ids[r] = -1;
    return;
  }
  // Kept tokens are always a prefix of the descending order: find its length n.
  std::int64_t n = first_failing(sorted_row, vocab, [](float x) { return x > -INFINITY; });
  if (p.top_k > 0 && p.top_k < vocab) {
    const float kth = sorted_row[p.top_k - 1];
    const std::int64_t k_kept = first_failing(sorted_row, n, [kth](float x) { return x >= kth; });
    n = k_kept < n ? k_kept : n;
  }
  if (p.top_p < 1.0f) {
    // Keep position i iff the mass from i to the end (the ascending cumulative
    // sum up to it) exceeds 1 − top_p; the first always stays.
    const std::int64_t per = (n + kSampleThreads - 1) / kSampleThreads;
    const std::int64_t a0 = threadIdx.x * per < n ? threadIdx.x * per : n, a1 = a0 + per < n ? a0 + per : n;
    double mass = 0.0;
    for (std::int64_t i = a0; i < a1; ++i) mass += exp(static_cast<double>(sorted_row[i]) - s0);
    double before = 0.0, total = 0.0;
    Scan(storage.scan).ExclusiveSum(mass, before, total);
    std::int64_t kept = 0;
    double running = before;
    for (std::int64_t i = a0; i < a1; ++i) {
      if (total - running > (1.0 - static_cast<double>(p.top_p)) * total || i == 0) ++kept;
      running += exp(static_cast<double>(sorted_row[i]) - s0);
    }
    __syncthreads();
    const std::int64_t all = CountReduce(storage.count).Sum(kept);
    if (threadIdx.x == 0) shared_count = all;
    __syncthreads();
    n = shared_count > 0 ? shared_count : 1;
  }
  if (p.min_p >= 0.0f) {
    const float min_p = p.min_p;
    const std::int64_t m_kept =
        first_failing(sorted_row, n, [s0, min_p](float x) { return exp(static_cast<double>(x) - s0) >= min_p; });
    n = m_kept > 0 ? (m_kept < n ? m_kept : n) : 1;
  }
  const float threshold = sorted_row[n - 1];

  // Inverse CDF of the kept tokens' softmax in token index order at u.
  double mass = 0.0;
  std::int64_t last = -1;
  for (std::int64_t v = c0; v < c1; ++v)
    if (s[v] >= threshold) {
      mass += exp(static_cast<double>(s[v]) - s0);
      last = v;
    }
  double before = 0.0, total = 0.0;
  __syncthreads();
  Scan(storage.scan).ExclusiveSum(mass, before, total);
  if (threadIdx.x == 0) {
    found = 0;
    shared_total = total;
  }
  __syncthreads();
  const double target = p.uniform * shared_total;
  if (last >= 0 && before <= target && target < before + mass) {
    double cumulative = before;
    std::int64_t pick = last;  // rounding may leave the crossing past the chunk's re-summed end
    for (std::int64_t v = c0; v < c1; ++v)
      if (s[v] >= threshold) {
        cumulative += exp(static_cast<double>(s[v]) - s0);
        if (target < cumulative) {
          pick = v;
          break;
        }
      }
    if (atomicCAS(&found, 0, 1) == 0) ids[r] = static_cast<std::int32_t>(pick);
  }
  __syncthreads();
  if (found) return;
  // u fell past the rounded total: the last kept token.
  __syncthreads();
  const std::int64_t last_kept = CountReduce(storage.count).Reduce(last, [](std::int64_t x, std::int64_t y) {
    return x > y ? x : y;
  });
  if (threadIdx.x == 0) ids[r] = static_cast<std::int32_t>(last_kept);
}

/// Rounds `bytes` up to 256.
inline std::size_t align256(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

/// Bytes of CUB's segmented sort of R rows of V keys.
inline std::size_t sort_bytes(std::int64_t rows, std::int64_t vocab) {
  std::size_t bytes = 0;
  cub::DeviceSegmentedRadixSort::SortKeysDescending(nullptr, bytes, static_cast<const float*>(nullptr),
                                                    static_cast<float*>(nullptr), static_cast<int>(rows * vocab),
                                                    static_cast<int>(rows), static_cast<const int*>(nullptr),
                                                    static_cast<const int*>(nullptr));
  return bytes;
}

}  // namespace detail

std::size_t sample_scratch_bytes(std::int64_t rows, std::int64_t vocab) {
  const std::size_t n = static_cast<std::size_t>(rows * vocab);
  return 2 * detail::align256(n * sizeof(float)) + detail::align256((rows + 1) * sizeof(int)) +
         detail::align256(detail::sort_bytes(rows, vocab));
}

void embedding(cudaStream_t stream, float* out, const void* table, DType dtype, const std::int32_t* ids,
               std::int64_t tokens, std::int64_t hidden) {
  detail::embedding_kernel<<<static_cast<unsigned>(tokens), 256, 0, stream>>>(out, table, dtype, ids, hidden);
  detail::check_launch("embedding");
}

void layer_norm(cudaStream_t stream, float* out, const float* in, const float* weight, const float* bias,
                std::int64_t tokens, std::int64_t hidden, float eps) {
  detail::layer_norm_kernel<<<static_cast<unsigned>(tokens), detail::kNormThreads, 0, stream>>>(out, in, weight, bias,
                                                                                                 hidden, eps);
  detail::check_launch("layer_norm");
}

void gelu_tanh(cudaStream_t stream, float* x, std::int64_t n) {
  detail::gelu_tanh_kernel<<<detail::blocks_for(n, 256), 256, 0, stream>>>(x, n);
  detail::check_launch("gelu_tanh");
}

void add(cudaStream_t stream, float* acc, const float* x, std::int64_t n) {
  detail::add_kernel<<<detail::blocks_for(n, 256), 256, 0, stream>>>(acc, x, n);
  detail::check_launch("add");
}

void gather_rows(cudaStream_t stream, float* out, const float* in, const std::int32_t* rows, std::int64_t count,
                 std::int64_t hidden) {
  detail::gather_rows_kernel<<<static_cast<unsigned>(count), 256, 0, stream>>>(out, in, rows, hidden);
  detail::check_launch("gather_rows");
}

void round_to(cudaStream_t stream, void* out, DType dtype, const float* in, std::int64_t n) {
  convert(stream, out, dtype, in, DType::f32, n);
}

void convert(cudaStream_t stream, void* out, DType out_dtype, const void* in, DType in_dtype, std::int64_t n) {
  detail::convert_kernel<<<detail::blocks_for(n, 256), 256, 0, stream>>>(out, out_dtype, in, in_dtype, n);
  detail::check_launch("convert");
}

void rope(cudaStream_t stream, float* x, const std::int32_t* positions, std::int64_t tokens, int heads, int head_dim,
          std::int64_t row_stride, const RotaryFrequencies& frequencies) {
  detail::rope_kernel<<<static_cast<unsigned>(tokens), 64, 0, stream>>>(x, positions, heads, head_dim, row_stride,
                                                                         frequencies);
  detail::check_launch("rope");
}

void rope_kv_append(cudaStream_t stream, const AttentionArgs& layer, float* q, float* k, const float* v,
                    const RotaryFrequencies& frequencies) {
  const auto rows = static_cast<unsigned>(layer.rows);
  if (layer.kv_type == KvType::bf16)
    detail::rope_kv_append_kernel<<<rows, 128, 0, stream>>>(
        layer, static_cast<std::uint16_t*>(const_cast<void*>(layer.keys)),
        static_cast<std::uint16_t*>(const_cast<void*>(layer.values)), q, k, v, frequencies);
  else
    detail::rope_kv_append_kernel<<<rows, 128, 0, stream>>>(layer, static_cast<float*>(const_cast<void*>(layer.keys)),
                                                            static_cast<float*>(const_cast<void*>(layer.values)), q,
                                                            k, v, frequencies);
  detail::check_launch("rope_kv_append");
}

void kv_append(cudaStream_t stream, const AttentionArgs& layer, const float* k, const float* v) {
  const auto rows = static_cast<unsigned>(layer.rows);
  if (layer.kv_type == KvType::bf16)
    detail::kv_append_kernel<<<rows, 128, 0, stream>>>(layer, static_cast<std::uint16_t*>(const_cast<void*>(layer.keys)),
                                                       static_cast<std::uint16_t*>(const_cast<void*>(layer.values)), k, v);
  else
    detail::kv_append_kernel<<<rows, 128, 0, stream>>>(layer, static_cast<float*>(const_cast<void*>(layer.keys)),
                                                       static_cast<float*>(const_cast<void*>(layer.values)), k, v);
  detail::check_launch("kv_append");
}

std::size_t attention_shared_bytes(int group, int head_dim) {
  const std::size_t floats = static_cast<std::size_t>(group) * head_dim * 2 +
                             static_cast<std::size_t>(detail::kKeyTile) * (2 * head_dim + 1) +
                             static_cast<std::size_t>(group) * detail::kKeyTile + 3 * static_cast<std::size_t>(group);
  return floats * sizeof(float);
}

void attention(cudaStream_t stream, const AttentionArgs& args, int splits, float* partials) {
  const std::size_t shared = attention_shared_bytes(args.heads / args.kv_heads, args.head_dim);
  const dim3 grid(static_cast<unsigned>(args.rows), static_cast<unsigned>(args.kv_heads), static_cast<unsigned>(splits));
  const auto launch = [&](auto kernel, const auto* keys, const auto* values) {
    if (shared > 48 * 1024) {
      const cudaError_t status =
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
      if (status != cudaSuccess)
        throw std::runtime_error(std::string("CUDA: attention needs ") + std::to_string(shared) +
                                 " bytes of shared memory: " + cudaGetErrorString(status));
    }
    kernel<<<grid, detail::kAttentionThreads, shared, stream>>>(args, keys, values, splits, partials);
  };
  if (args.kv_type == KvType::bf16)
    launch(detail::attention_kernel<std::uint16_t>, static_cast<const std::uint16_t*>(args.keys),
           static_cast<const std::uint16_t*>(args.values));
  else
    launch(detail::attention_kernel<float>, static_cast<const float*>(args.keys), static_cast<const float*>(args.values));
  detail::check_launch("attention");
  if (splits > 1) {
    detail::combine_kernel<<<static_cast<unsigned>(args.rows * args.heads), 128, 0, stream>>>(args, splits, partials);
    detail::check_launch("attention combine");
  }
}

void sample(cudaStream_t stream, const float* logits, std::int64_t rows, std::int64_t vocab,
            const SampleParams* params, const SampleParams* host_params, const std::int32_t* history,
            float* history_scores, void* scratch, std::size_t scratch_bytes, std::int32_t* ids) {
  const std::size_t n = static_cast<std::size_t>(rows * vocab);
  auto* base = static_cast<char*>(scratch);
  auto* scores = reinterpret_cast<float*>(base);
  auto* sorted = reinterpret_cast<float*>(base + detail::align256(n * sizeof(float)));
  auto* offsets = reinterpret_cast<int*>(base + 2 * detail::align256(n * sizeof(float)));
  void* sort_temp = base + 2 * detail::align256(n * sizeof(float)) + detail::align256((rows + 1) * sizeof(int));
  const std::size_t used = static_cast<std::size_t>(static_cast<char*>(sort_temp) - base);
  if (scratch_bytes < used) throw std::runtime_error("CUDA sample: scratch too small");
  std::size_t sort_bytes = scratch_bytes - used;

  detail::prepare_scores_kernel<<<static_cast<unsigned>(rows), detail::kSampleThreads, 0, stream>>>(
      logits, scores, vocab, params, history, history_scores);
  detail::check_launch("sample: prepare");
  bool any_sampling = false;
  for (std::int64_t r = 0; r < rows; ++r) any_sampling = any_sampling || host_params[r].do_sample != 0;
  if (any_sampling) {
    detail::segment_offsets_kernel<<<1, 256, 0, stream>>>(offsets, static_cast<int>(rows), static_cast<int>(vocab));
    detail::check_launch("sample: offsets");
    const cudaError_t status = cub::DeviceSegmentedRadixSort::SortKeysDescending(
        sort_temp, sort_bytes, scores, sorted, static_cast<int>(n), static_cast<int>(rows), offsets, offsets + 1, 0,
        static_cast<int>(sizeof(float) * 8), stream);
    if (status != cudaSuccess) throw std::runtime_error(std::string("CUDA sample: sort failed: ") + cudaGetErrorString(status));
  }
  detail::choose_kernel<<<static_cast<unsigned>(rows), detail::kSampleThreads, 0, stream>>>(scores, sorted, vocab,
                                                                                            params, ids);
  detail::check_launch("sample: choose");
}

}  // namespace sc2::cuda::kernels
