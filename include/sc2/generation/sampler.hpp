#pragma once
/// \file
/// Choosing the next token: Hugging Face `generate`'s logits processors and sampling.
///
/// The processors run in transformers' order, each with its semantics:
///
///   1. repetition penalty p (any mode): for every token id seen so far (prompt and
///      generated), s = s < 0 ? s · p : s / p
///   then, only when sampling:
///   2. temperature t:  s = s / t
///   3. top-k k:        remove s < (k-th largest s); ties with the k-th are kept
///   4. top-p p:        sort ascending, remove tokens whose cumulative probability is
///                      <= 1 − p; the most likely token always stays
///   5. min-p m:        remove tokens with probability < m · (largest probability)
///
/// Removed tokens get −inf. Greedy decoding takes the first index of the largest
/// processed score; sampling draws from softmax of the processed scores with a
/// seeded 64-bit Mersenne Twister, so a seed reproduces a run exactly (the logits
/// themselves do not depend on the thread count). Defaults are `GenerationConfig`'s:
/// temperature 1, top-k 50, top-p 1, no min-p, no penalty.
///
///     sc2::SamplingConfig s;  s.do_sample = true;  s.temperature = 0.8f;  s.top_p = 0.95f;  s.seed = 7;
///     sc2::Sampler sampler(s);
///     std::int32_t next = sampler.sample(logits, history);

#include <sc2/core/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <vector>

namespace sc2 {

/// The sampling controls of Hugging Face `generate`.
struct SamplingConfig {
  bool do_sample = false;           ///< false: greedy (argmax); true: draw from the distribution
  float temperature = 1.0f;         ///< > 0; divides the scores when sampling
  int top_k = 50;                   ///< keep the k most likely; 0 disables
  float top_p = 1.0f;               ///< nucleus mass in (0, 1]; 1 disables
  std::optional<float> min_p;       ///< in [0, 1]; relative probability floor
  float repetition_penalty = 1.0f;  ///< > 0; 1 disables
  std::uint64_t seed = 0;           ///< random seed of the draws

  /// Throws `sc2::Error` for values Hugging Face rejects.
  void validate() const {
    SC2_CHECK(temperature > 0.0f && std::isfinite(temperature), "temperature must be a positive number, got {}",
              temperature);
    SC2_CHECK(top_k >= 0, "top_k must be >= 0, got {}", top_k);
    SC2_CHECK(top_p > 0.0f && top_p <= 1.0f, "top_p must be in (0, 1], got {}", top_p);
    SC2_CHECK(!min_p || (*min_p >= 0.0f && *min_p <= 1.0f), "min_p must be in [0, 1], got {}", min_p.value_or(0.0f));
    SC2_CHECK(repetition_penalty > 0.0f && std::isfinite(repetition_penalty),
              "repetition_penalty must be a positive number, got {}", repetition_penalty);
  }
};

/// Applies the processors and picks tokens; holds the random state of one sequence.
class Sampler {
public:
  /// A sampler with `config` (validated) and its seed.
  explicit Sampler(const SamplingConfig& config = {}) : config_(config), rng_(config.seed) { config_.validate(); }

  /// The controls in use.
  const SamplingConfig& config() const noexcept { return config_; }

  /// Restarts the random sequence from `seed`.
  void reseed(std::uint64_t seed) { rng_.seed(seed); }

  /// Rewrites `scores` (V) in place through the processors, in transformers' order;
  /// `history` holds the ids of the prompt and of the tokens generated so far.
  void process(std::span<float> scores, std::span<const std::int32_t> history) const {
    if (config_.repetition_penalty != 1.0f) apply_repetition_penalty(scores, history);
    if (!config_.do_sample) return;
    if (config_.temperature != 1.0f)
      for (float& s : scores) s /= config_.temperature;
    if (config_.top_k != 0) apply_top_k(scores);
    if (config_.top_p < 1.0f) apply_top_p(scores);
    if (config_.min_p) apply_min_p(scores);
  }

  /// Processes `scores` (V) in place and returns the chosen token id.
  std::int32_t sample(std::span<float> scores, std::span<const std::int32_t> history) {
    SC2_CHECK(!scores.empty(), "cannot sample from an empty distribution");
    process(scores, history);
    if (!config_.do_sample)
      return static_cast<std::int32_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
    const std::vector<double> probs = softmax(scores);
    // Inverse CDF of a uniform draw in [0, 1), skipping tokens of probability 0.
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    double cumulative = 0.0;
    std::int32_t last_possible = 0;
    for (std::size_t i = 0; i < probs.size(); ++i) {
      if (probs[i] <= 0.0) continue;
      last_possible = static_cast<std::int32_t>(i);
      cumulative += probs[i];
      if (u < cumulative) return last_possible;
    }
    return last_possible;  // u fell past the rounded total
  }

  /// softmax(scores) in double; −inf scores give probability 0.
  static std::vector<double> softmax(std::span<const float> scores) {
    const float m = *std::max_element(scores.begin(), scores.end());
    SC2_CHECK(m > -std::numeric_limits<float>::infinity(), "every token was removed by the sampling filters");
    std::vector<double> p(scores.size());
    double sum = 0.0;
    for (std::size_t i = 0; i < scores.size(); ++i) sum += (p[i] = std::exp(static_cast<double>(scores[i]) - m));
    for (double& x : p) x /= sum;
    return p;
  }

private:
  static constexpr float kRemoved = -std::numeric_limits<float>::infinity();

  void apply_repetition_penalty(std::span<float> scores, std::span<const std::int32_t> history) const {
    std::vector<bool> seen(scores.size(), false);
    for (std::int32_t id : history)
      if (id >= 0 && static_cast<std::size_t>(id) < scores.size()) seen[static_cast<std::size_t>(id)] = true;
    const float p = config_.repetition_penalty;
    for (std::size_t i = 0; i < scores.size(); ++i)
      if (seen[i]) scores[i] = scores[i] < 0.0f ? scores[i] * p : scores[i] / p;
  }

  void apply_top_k(std::span<float> scores) const {
    const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(config_.top_k), scores.size());
    std::vector<float> sorted(scores.begin(), scores.end());
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(k - 1), sorted.end(),
                     std::greater<float>());
    const float kth = sorted[k - 1];
    for (float& s : scores)
      if (s < kth) s = kRemoved;
  }

  void apply_top_p(std::span<float> scores) const {
    const std::vector<double> probs = softmax(scores);
    std::vector<std::size_t> order(scores.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    // Ascending by score, as torch.sort(descending=False); equal scores keep index order.
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
    double cumulative = 0.0;
    const double threshold = 1.0 - static_cast<double>(config_.top_p);
    for (std::size_t r = 0; r + 1 < order.size(); ++r) {  // the last (most likely) always stays
      cumulative += probs[order[r]];
      if (cumulative <= threshold) scores[order[r]] = kRemoved;
    }
  }

  void apply_min_p(std::span<float> scores) const {
    const std::vector<double> probs = softmax(scores);
    const std::size_t top = static_cast<std::size_t>(std::max_element(probs.begin(), probs.end()) - probs.begin());
    const double floor = static_cast<double>(*config_.min_p) * probs[top];
    for (std::size_t i = 0; i < scores.size(); ++i)
      if (i != top && probs[i] < floor) scores[i] = kRemoved;
  }

  SamplingConfig config_;
  std::mt19937_64 rng_;
};

}  // namespace sc2
