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
///
/// Costs (V vocabulary, N history). A call allocates nothing once the sampler has
/// seen a vocabulary that large: the probabilities (V doubles), the top-k selection
/// (V floats), the top-p order (V indices) and the marks of seen tokens (V bytes) are
/// members, grown on a call with a larger vocabulary and reused. No stage sorts the
/// vocabulary in the common case:
///
///   - repetition penalty, O(N): each id is marked, penalized once, and unmarked;
///   - top-k, O(V): one `nth_element` over a copy of the scores;
///   - top-p, O(V) expected: a −inf token has probability exactly 0 and adds exactly
///     0 to the ascending cumulative sum, so only finite scores are ordered. A few of
///     them (after top-k) are simply sorted. Otherwise a weighted selection
///     (`nth_element` and partial sums: first the top 256, then bisection) finds where
///     the mass below the top j, total − (mass of the top j), drops to 1 − p, and only
///     the last ≤ 256 candidates are sorted. That difference equals the ascending sum
///     of the full sort up to rounding, bounded by 8 (V + 1) · 2⁻⁵³; when the bound
///     proves the cut is the one the full sort makes, the rest is removed unsorted, and
///     when it cannot (a sum within that bound of 1 − p) everything is sorted and the
///     rule above is applied literally. The kept set is always exactly the full sort's;
///   - min-p and the draw, O(V).
///
/// Scores that are NaN or +inf make every probability NaN (or the softmax throws
/// `sc2::Error`, when the maximum it finds is a NaN), as in the plain rules: top-p
/// and min-p then remove nothing and the draw returns the last index. Top-k ranks
/// NaN above every number, as `torch.topk` does.

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

/// The ids of the `k` largest of `logits` (at most its size), largest first;
/// equal logits keep the lower id first.
///
///     for (int id : sc2::top_ids(logits, 5)) std::printf("%d %f\n", id, logits[id]);
inline std::vector<int> top_ids(std::span<const float> logits, std::size_t k) {
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(), [&](int a, int b) {
    const float x = logits[static_cast<std::size_t>(a)], y = logits[static_cast<std::size_t>(b)];
    return x > y || (x == y && a < b);
  });
  order.resize(k);
  return order;
}

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

/// Applies the processors and picks tokens; holds the random state of one sequence
/// and the scratch buffers its calls reuse (so one sampler serves one thread at a time).
class Sampler {
public:
  /// A sampler with `config` (validated) and its seed.
  explicit Sampler(const SamplingConfig& config = {}) : config_(config), rng_(config.seed) { config_.validate(); }

  /// The controls in use.
  const SamplingConfig& config() const noexcept { return config_; }

  /// Restarts the random sequence from `seed`.
  void reseed(std::uint64_t seed) { rng_.seed(seed); }

  /// Rewrites `scores` (V) in place through the processors, in transformers' order;
  /// `history` holds the ids of the prompt and of the tokens generated so far (ids
  /// outside [0, V) are ignored). Allocates only on a call with a larger V than before.
  ///
  ///     std::vector<float> scores(logits.begin(), logits.end());
  ///     sampler.process(scores, history);  // removed tokens are now -inf
  void process(std::span<float> scores, std::span<const std::int32_t> history) {
    if (scores.empty()) return;
    reserve(scores.size());
    if (config_.repetition_penalty != 1.0f) apply_repetition_penalty(scores, history);
    if (!config_.do_sample) return;
    if (config_.temperature != 1.0f)
      for (float& s : scores) s /= config_.temperature;
    if (config_.top_k != 0) apply_top_k(scores);
    if (config_.top_p < 1.0f) apply_top_p(scores);
    if (config_.min_p) apply_min_p(scores);
  }

  /// Processes `scores` (V) in place and returns the chosen token id. Allocates only
  /// on a call with a larger V than before.
  ///
  ///     std::int32_t next = sampler.sample(scores, history);
  std::int32_t sample(std::span<float> scores, std::span<const std::int32_t> history) {
    SC2_CHECK(!scores.empty(), "cannot sample from an empty distribution");
    process(scores, history);
    if (!config_.do_sample)
      return static_cast<std::int32_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
    const std::span<double> probs(probs_.data(), scores.size());
    softmax_into(scores, probs);
    // Inverse CDF of a uniform draw in [0, 1), over token index order, skipping tokens of probability 0.
    const double u = draw_uniform();
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

  /// The next uniform number in [0, 1) of this sampler's generator: the one
  /// `sample` draws from. A device backend that applies the rules on the
  /// device takes its draw from here, so a seed gives the same sequence of
  /// draws on every backend.
  double draw_uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

  /// softmax(scores) in double; −inf scores give probability 0. Allocates its result;
  /// the sampler itself uses `softmax_into`.
  ///
  ///     std::vector<double> p = sc2::Sampler::softmax(scores);
  static std::vector<double> softmax(std::span<const float> scores) {
    SC2_CHECK(!scores.empty(), "cannot take the softmax of an empty distribution");
    std::vector<double> p(scores.size());
    softmax_into(scores, p);
    return p;
  }

  /// Writes softmax(scores) (V) in double to `p` (V) and returns the sum of the
  /// exponentials it divided by (NaN when a score is NaN or +inf). The maximum is
  /// subtracted first; the sum runs in index order. Throws `sc2::Error` when every
  /// score is −inf.
  static double softmax_into(std::span<const float> scores, std::span<double> p) {
    SC2_CHECK(!scores.empty() && p.size() == scores.size(), "softmax of {} scores into {} probabilities",
              scores.size(), p.size());
    const float m = *std::max_element(scores.begin(), scores.end());
    SC2_CHECK(m > -std::numeric_limits<float>::infinity(), "every token was removed by the sampling filters");
    double sum = 0.0;
    for (std::size_t i = 0; i < scores.size(); ++i)  // exp(−inf − m) is exactly 0: skip the call
      sum += (p[i] = scores[i] == kRemoved ? 0.0 : std::exp(static_cast<double>(scores[i]) - m));
    for (double& x : p) x /= sum;
    return sum;
  }

private:
  static constexpr float kRemoved = -std::numeric_limits<float>::infinity();

  /// Sizes the scratch the configured stages use for a vocabulary of `n` tokens.
  void reserve(std::size_t n) {
    SC2_CHECK(n <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()),
              "a vocabulary of {} tokens does not fit 32-bit token ids", n);
    if (config_.repetition_penalty != 1.0f) grow(seen_, n);
    if (!config_.do_sample) return;
    grow(probs_, n);
    if (config_.top_k != 0) grow(selection_, n);
    if (config_.top_p < 1.0f) grow(order_, n);
  }

  template <class T>
  static void grow(std::vector<T>& buffer, std::size_t n) {
    if (buffer.size() < n) buffer.resize(n);  // new marks are 0, as the invariant of seen_ wants
  }

  void apply_repetition_penalty(std::span<float> scores, std::span<const std::int32_t> history) {
    // seen_ is all 0 between calls: mark each id once, penalize it once, then clear the marks.
    const float p = config_.repetition_penalty;
    const auto in_range = [&](std::int32_t id) { return id >= 0 && static_cast<std::size_t>(id) < scores.size(); };
    for (const std::int32_t id : history) {
      if (!in_range(id) || seen_[static_cast<std::size_t>(id)] != 0) continue;
      seen_[static_cast<std::size_t>(id)] = 1;
      float& s = scores[static_cast<std::size_t>(id)];
      s = s < 0.0f ? s * p : s / p;
    }
    for (const std::int32_t id : history)
      if (in_range(id)) seen_[static_cast<std::size_t>(id)] = 0;
  }

  void apply_top_k(std::span<float> scores) {
    const std::size_t n = scores.size();
    const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(config_.top_k), n);
    if (k == n) return;  // the k-th largest is the smallest: nothing lies below it
    float* const first = selection_.data();
    std::copy(scores.begin(), scores.end(), first);
    // Descending, NaN first (torch.topk's order); for numbers this is std::greater.
    const auto ranks_above = [](float a, float b) { return a > b || (std::isnan(a) && !std::isnan(b)); };
    std::nth_element(first, first + (k - 1), first + n, ranks_above);
    const float kth = first[k - 1];
    for (float& s : scores)
      if (s < kth) s = kRemoved;
  }

  void apply_top_p(std::span<float> scores) {
    const std::size_t n = scores.size();
    const std::span<double> probs(probs_.data(), n);
    // A NaN or +inf score makes every probability NaN: no cumulative sum is <= 1 − p.
    if (std::isnan(softmax_into(scores, probs))) return;
    const double threshold = 1.0 - static_cast<double>(config_.top_p);

    // The finite scores, in index order, and their total probability (in index order).
    // The −inf ones lead the ascending order, add exactly 0 and are removed already.
    std::uint32_t* const order = order_.data();
    std::size_t f = 0;
    double total = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      if (scores[i] != kRemoved) {
        order[f++] = static_cast<std::uint32_t>(i);
        total += probs[i];
      }
    // Descending by score, then by index: the reverse of a stable ascending sort.
    const auto before = [scores](std::uint32_t a, std::uint32_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a > b);
    };

    constexpr std::size_t kChunk = 256;
    if (f <= 2 * kChunk) {
      std::sort(order, order + f, before);
      cut_sorted(scores, probs, order, f, threshold);
      return;
    }
    // In descending order, the token at position j has the ascending cumulative sum
    // c_j = total − (mass of positions < j), and the full sort keeps positions < J, J the
    // first j >= 1 with c_j <= 1 − p. Narrow the range (lo, hi] that holds J by weighted
    // selection: order[0, lo) rank above order[lo, hi), which rank above order[hi, f).
    // A first split after kChunk tokens catches the common, peaked distribution; then bisect.
    std::size_t lo = 0, hi = f;
    double mass_above = 0.0;  // the mass of order[0, lo)
    for (std::size_t step = kChunk; hi - lo > kChunk; step = (hi - lo) / 2) {
      const std::size_t split = lo + std::min(step, (hi - lo) / 2);
      std::nth_element(order + lo, order + split, order + hi, before);
      double mass = 0.0;
      for (std::size_t r = lo; r < split; ++r) mass += probs[order[r]];
      if (total - (mass_above + mass) <= threshold) {
        hi = split;
      } else {
        lo = split;
        mass_above += mass;
      }
    }
    // Walk (lo, hi] in order. `below` is c_j with an error under `margin`: a sum of f
    // nonnegative terms in any order is off by at most (f − 1)·2⁻⁵³ of its value (the full
    // sort's sum, `total` and `top_mass`, all <= 1 + V·2⁻⁵³, then one subtraction), twice over.
    // The sums only grow along the ascending order, so the cut is proven when position J is
    // surely removed and position J − 1 (unless it is the top, always kept) surely not.
    std::sort(order + lo, order + hi, before);
    const double margin = 8.0 * static_cast<double>(f + 1) * (std::numeric_limits<double>::epsilon() / 2);
    double top_mass = mass_above, previous_below = total - mass_above;
    for (std::size_t j = lo + 1; j <= hi; ++j) {
      if (j == f) {  // no position was removed: proven when the least likely surely stays
        if (previous_below - margin > threshold) return;
        break;
      }
      top_mass += probs[order[j - 1]];
      const double below = total - top_mass;
      if (below <= threshold) {
        if (below + margin <= threshold && (j == 1 || previous_below - margin > threshold)) {
          for (std::size_t r = j; r < f; ++r) scores[order[r]] = kRemoved;
          return;
        }
        break;
      }
      previous_below = below;
    }
    // Within rounding of 1 − p (or rounding moved the cut past hi): decide as the full sort does.
    std::sort(order, order + f, before);
    cut_sorted(scores, probs, order, f, threshold);
  }

  /// The top-p rule on `order` (f), every finite score sorted descending: walking up from
  /// the least likely, removes each token while the cumulative probability is <= `threshold`,
  /// never the last (most likely).
  static void cut_sorted(std::span<float> scores, std::span<const double> probs, const std::uint32_t* order,
                         std::size_t f, double threshold) {
    double cumulative = 0.0;
    for (std::size_t r = 0; r + 1 < f; ++r) {
      const std::uint32_t i = order[f - 1 - r];
      cumulative += probs[i];
      if (!(cumulative <= threshold)) return;  // the sum only grows: nothing further is removed
      scores[i] = kRemoved;
    }
  }

  void apply_min_p(std::span<float> scores) {
    const std::span<double> probs(probs_.data(), scores.size());
    softmax_into(scores, probs);
    const std::size_t top = static_cast<std::size_t>(std::max_element(probs.begin(), probs.end()) - probs.begin());
    const double floor = static_cast<double>(*config_.min_p) * probs[top];
    for (std::size_t i = 0; i < scores.size(); ++i)
      if (i != top && probs[i] < floor) scores[i] = kRemoved;
  }

  SamplingConfig config_;
  std::mt19937_64 rng_;
  std::vector<double> probs_;          // (V) softmax of the scores at the current stage
  std::vector<float> selection_;       // (V) top-k: a copy of the scores, partly ordered
  std::vector<std::uint32_t> order_;   // (V) top-p: finite token ids, the most likely first
  std::vector<std::uint8_t> seen_;     // (V) repetition penalty: 1 for ids in the history; 0 between calls
};

}  // namespace sc2
