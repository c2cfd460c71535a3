// The sampler against transformers' logits processors (tools/reference/make_generation_fixtures.py),
// the distribution of its draws, a plain full-sort reference of the same rules (kept
// tokens and seeded draws identical), and the allocations of its calls.

#include "allocation_counter.hpp"
#include "support.hpp"

#include <sc2/generation/sampler.hpp>
#include <sc2/io/mapped_file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <new>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <thread>
#include <vector>

TEST_CASE("processors leave exactly the tokens and probabilities transformers leaves", "[sampler]") {
  const auto cases = nlohmann::json::parse(sc2::read_text_file(sc2::test::fixture("generation/processors.json")));
  REQUIRE(cases.size() >= 30);
  for (const auto& c : cases) {
    const auto& s = c["setting"];
    sc2::SamplingConfig config;
    config.do_sample = s.value("do_sample", false);
    config.temperature = s.value("temperature", 1.0f);
    config.top_k = s.value("top_k", 50);
    config.top_p = s.value("top_p", 1.0f);
    if (s.contains("min_p")) config.min_p = s["min_p"].get<float>();
    config.repetition_penalty = s.value("repetition_penalty", 1.0f);
    sc2::Sampler sampler(config);
    auto scores = c["logits"].get<std::vector<float>>();
    const auto history = c["history"].get<std::vector<std::int32_t>>();
    sampler.process(scores, history);

    std::vector<float> expected;
    for (const auto& e : c["expected"]) expected.push_back(e.is_null() ? -std::numeric_limits<float>::infinity() : e.get<float>());
    INFO(s.dump() << " processors " << c["processors"].dump());
    REQUIRE(expected.size() == scores.size());
    std::size_t kept = 0;
    for (std::size_t i = 0; i < scores.size(); ++i) {
      CHECK(std::isinf(scores[i]) == std::isinf(expected[i]));
      if (!std::isinf(expected[i])) {
        ++kept;
        CHECK(scores[i] == Approx(expected[i]).epsilon(1e-6));
      }
    }
    CHECK(kept >= 1);
    const auto p = sc2::Sampler::softmax(scores), q = sc2::Sampler::softmax(expected);
    for (std::size_t i = 0; i < p.size(); ++i) CHECK(p[i] == Approx(q[i]).margin(1e-6));
  }
}

TEST_CASE("greedy picks the first largest score after the repetition penalty", "[sampler]") {
  sc2::SamplingConfig config;
  config.repetition_penalty = 2.0f;
  sc2::Sampler sampler(config);
  std::vector<float> scores{1.0f, 3.0f, 3.0f, 2.0f};
  CHECK(sampler.sample(scores, std::vector<std::int32_t>{}) == 1);
  scores = {1.0f, 3.0f, 3.0f, 2.0f};
  CHECK(sampler.sample(scores, std::vector<std::int32_t>{1, 2}) == 3);  // 3/2 = 1.5 < 2
}

TEST_CASE("draws follow the filtered distribution", "[sampler]") {
  // p = softmax(log [0.5, 0.3, 0.15, 0.05]); top-p 0.9 removes the last (cumulative 0.05 <= 0.1).
  const std::vector<float> logits{std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  sc2::SamplingConfig config;
  config.do_sample = true;
  config.top_p = 0.9f;
  config.seed = 1234;
  sc2::Sampler sampler(config);
  const int draws = 40000;
  std::map<int, int> counts;
  for (int i = 0; i < draws; ++i) {
    auto scores = logits;
    ++counts[sampler.sample(scores, std::vector<std::int32_t>{})];
  }
  const double expected[] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0};
  for (int id = 0; id < 4; ++id) {
    const double p = expected[id];
    const double sigma = std::sqrt(p * (1 - p) / draws);
    INFO("token " << id << " frequency " << counts[id] / static_cast<double>(draws) << " expected " << p);
    CHECK(std::abs(counts[id] / static_cast<double>(draws) - p) <= 5 * sigma + 1e-12);
  }
  CHECK(counts[3] == 0);
}

TEST_CASE("a seed reproduces the draws and another seed changes them", "[sampler]") {
  std::vector<float> logits(100);
  for (std::size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  auto run = [&](std::uint64_t seed) {
    sc2::SamplingConfig config;
    config.do_sample = true;
    config.top_k = 0;
    config.seed = seed;
    sc2::Sampler sampler(config);
    std::vector<std::int32_t> out;
    for (int i = 0; i < 50; ++i) {
      auto scores = logits;
      out.push_back(sampler.sample(scores, out));
    }
    return out;
  };
  CHECK(run(9) == run(9));
  CHECK(run(9) != run(10));
}

TEST_CASE("invalid sampling settings are refused", "[sampler]") {
  sc2::SamplingConfig c;
  c.temperature = 0.0f;
  CHECK_THROWS_WITH(sc2::Sampler(c), Catch::Contains("temperature"));
  c = {};
  c.top_p = 1.5f;
  CHECK_THROWS_WITH(sc2::Sampler(c), Catch::Contains("top_p"));
  c = {};
  c.top_k = -1;
  CHECK_THROWS_WITH(sc2::Sampler(c), Catch::Contains("top_k"));
  c = {};
  c.min_p = 2.0f;
  CHECK_THROWS_WITH(sc2::Sampler(c), Catch::Contains("min_p"));
  c = {};
  c.repetition_penalty = -1.0f;
  CHECK_THROWS_WITH(sc2::Sampler(c), Catch::Contains("repetition_penalty"));
}

namespace {

/// The sampler as it was before its scratch buffers: a fresh vector per stage and a
/// stable sort of the whole vocabulary for top-p. The plain statement of the rules,
/// which the sampler must match bit for bit.
class ReferenceSampler {
public:
  explicit ReferenceSampler(const sc2::SamplingConfig& config) : config_(config), rng_(config.seed) {}

  void process(std::span<float> scores, std::span<const std::int32_t> history) const {
    if (config_.repetition_penalty != 1.0f) apply_repetition_penalty(scores, history);
    if (!config_.do_sample) return;
    if (config_.temperature != 1.0f)
      for (float& s : scores) s /= config_.temperature;
    if (config_.top_k != 0) apply_top_k(scores);
    if (config_.top_p < 1.0f) apply_top_p(scores);
    if (config_.min_p) apply_min_p(scores);
  }

  std::int32_t sample(std::span<float> scores, std::span<const std::int32_t> history) {
    process(scores, history);
    if (!config_.do_sample)
      return static_cast<std::int32_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
    const std::vector<double> probs = softmax(scores);
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    double cumulative = 0.0;
    std::int32_t last_possible = 0;
    for (std::size_t i = 0; i < probs.size(); ++i) {
      if (probs[i] <= 0.0) continue;
      last_possible = static_cast<std::int32_t>(i);
      cumulative += probs[i];
      if (u < cumulative) return last_possible;
    }
    return last_possible;
  }

  static std::vector<double> softmax(std::span<const float> scores) {
    const float m = *std::max_element(scores.begin(), scores.end());
    REQUIRE(m > -std::numeric_limits<float>::infinity());
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
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
    double cumulative = 0.0;
    const double threshold = 1.0 - static_cast<double>(config_.top_p);
    for (std::size_t r = 0; r + 1 < order.size(); ++r) {
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

  sc2::SamplingConfig config_;
  std::mt19937_64 rng_;
};

/// The shapes of random logits: each stresses another part of the processors.
enum class Shape { flat, normal, peaked, quarter_steps, four_levels, uniform, zipf, some_removed, count };

/// `n` logits of `shape`; at least one is finite.
std::vector<float> random_logits(std::mt19937_64& rng, std::size_t n, Shape shape) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  switch (shape) {
    case Shape::flat:  // a wide nucleus: top-p keeps most of the vocabulary
      for (float& v : x) v = 0.05f * normal(rng);
      break;
    case Shape::normal:
      for (float& v : x) v = 2.0f * normal(rng);
      break;
    case Shape::peaked:  // a few tokens hold most of the mass
      for (float& v : x) v = 6.0f * normal(rng);
      break;
    case Shape::quarter_steps:  // many ties, at every rank
      for (float& v : x) v = std::round(8.0f * normal(rng)) / 4.0f;
      break;
    case Shape::four_levels:  // huge ties, straddling every cut
      for (float& v : x) v = static_cast<float>(std::uniform_int_distribution<int>(0, 3)(rng));
      break;
    case Shape::uniform:  // one tie of everything: cumulative sums of equal terms meet 1 − p exactly
      std::fill(x.begin(), x.end(), 0.5f);
      break;
    case Shape::zipf: {  // the long tail of a language model
      std::vector<std::size_t> rank(n);
      std::iota(rank.begin(), rank.end(), std::size_t{0});
      std::shuffle(rank.begin(), rank.end(), rng);
      for (std::size_t i = 0; i < n; ++i) x[rank[i]] = -1.1f * std::log(static_cast<float>(i + 1));
      break;
    }
    case Shape::some_removed:  // −inf before any processor
      for (float& v : x)
        v = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng) < 0.3f ? -std::numeric_limits<float>::infinity()
                                                                            : 3.0f * normal(rng);
      x[std::uniform_int_distribution<std::size_t>(0, n - 1)(rng)] = 1.0f;
      break;
    case Shape::count:
      break;
  }
  return x;
}

/// A random pick of `options`.
template <class T>
T pick(std::mt19937_64& rng, std::initializer_list<T> options) {
  return *(options.begin() + std::uniform_int_distribution<std::size_t>(0, options.size() - 1)(rng));
}

/// How many positions differ between `a` and `b` in whether the token was removed (−inf).
std::size_t kept_set_differences(const std::vector<float>& a, const std::vector<float>& b) {
  std::size_t d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d += std::isinf(a[i]) && a[i] < 0 ? !(std::isinf(b[i]) && b[i] < 0)
                                                                              : (std::isinf(b[i]) && b[i] < 0);
  return d;
}

/// Whether `a` and `b` hold the same floats, bit for bit.
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Processes `logits` with both samplers and checks that they agree bit for bit; then,
/// for several seeds, that a few draws (the history growing with them) give the same ids.
void check_against_reference(const sc2::SamplingConfig& config, const std::vector<float>& logits,
                             const std::vector<std::int32_t>& history) {
  sc2::Sampler sampler(config);
  const ReferenceSampler reference(config);
  std::vector<float> got = logits, expected = logits;
  sampler.process(got, history);
  reference.process(expected, history);
  CHECK(kept_set_differences(got, expected) == 0);
  CHECK(same_bits(got, expected));
  for (const std::uint64_t seed : {1u, 2u, 77u}) {
    sc2::SamplingConfig seeded = config;
    seeded.seed = seed;
    sc2::Sampler a(seeded);
    ReferenceSampler b(seeded);
    std::vector<std::int32_t> history_a = history, history_b = history;
    for (int draw = 0; draw < 3; ++draw) {
      std::vector<float> sa = logits, sb = logits;
      const std::int32_t ia = a.sample(sa, history_a), ib = b.sample(sb, history_b);
      CHECK(ia == ib);
      history_a.push_back(ia);
      history_b.push_back(ib);
    }
  }
}

}  // namespace

TEST_CASE("the sampler keeps the tokens and draws the ids of the full-sort reference", "[sampler]") {
  std::mt19937_64 rng(20240607);
  for (int trial = 0; trial < 1500; ++trial) {
    const std::size_t n = pick<std::size_t>(rng, {1, 2, 3, 10, 100, 513, 700, 2000, 2000, 10000, 10000, 49152});
    const int shape_count = static_cast<int>(Shape::count);
    const auto shape = static_cast<Shape>(std::uniform_int_distribution<int>(0, shape_count - 1)(rng));
    sc2::SamplingConfig config;
    config.do_sample = std::uniform_int_distribution<int>(0, 9)(rng) != 0;
    config.top_k = pick(rng, {0, 0, 0, 1, 5, 50, 50});
    config.top_p = pick(rng, {0.1f, 0.3f, 0.5f, 0.75f, 0.8f, 0.9f, 0.95f, 0.99f, 0.999f, 1.0f});
    const float min_p = pick(rng, {-1.0f, -1.0f, 0.0f, 0.02f, 0.1f, 0.5f, 1.0f});
    if (min_p >= 0.0f) config.min_p = min_p;
    config.temperature = pick(rng, {0.3f, 0.7f, 1.0f, 1.0f, 1.5f});
    config.repetition_penalty = pick(rng, {1.0f, 1.0f, 1.3f, 0.8f});
    const std::vector<float> logits = random_logits(rng, n, shape);
    std::vector<std::int32_t> history(std::uniform_int_distribution<std::size_t>(0, 40)(rng));
    for (std::int32_t& id : history)  // duplicates, and ids outside [0, n), which are ignored
      id = std::uniform_int_distribution<std::int32_t>(-2, static_cast<std::int32_t>(n) + 2)(rng);
    INFO("trial " << trial << ": n " << n << " shape " << static_cast<int>(shape) << " do_sample " << config.do_sample
                  << " top_k " << config.top_k << " top_p " << config.top_p << " min_p " << min_p << " temperature "
                  << config.temperature << " penalty " << config.repetition_penalty);
    check_against_reference(config, logits, history);
  }
}

TEST_CASE("top-p cuts that meet 1 - p exactly are made as the full sort makes them", "[sampler]") {
  // 1024 equal logits: every probability is exactly 2^-10, so the ascending sums (r + 1) / 1024
  // hit 1 − p exactly for these p, beyond what rounding bounds can decide; the stable order
  // removes the lowest ids.
  for (const float top_p : {0.25f, 0.5f, 0.75f, 0.875f, 0.999f}) {
    INFO("top_p " << top_p);
    sc2::SamplingConfig config;
    config.do_sample = true;
    config.top_k = 0;
    config.top_p = top_p;
    const std::vector<float> logits(1024, 0.25f);
    std::vector<float> scores = logits;
    sc2::Sampler(config).process(scores, std::vector<std::int32_t>{});
    const std::size_t removed = static_cast<std::size_t>(1024.0 * (1.0 - static_cast<double>(top_p)));
    for (std::size_t i = 0; i < scores.size(); ++i) CHECK(std::isinf(scores[i]) == (i < removed));
    check_against_reference(config, logits, {});
  }
  // Equal probabilities 1/n, rounded, with p a multiple of 1/n: the sums the full sort
  // compares with 1 − p fall a few units in the last place to either side of it, at the
  // cut and one token before it.
  for (const std::size_t n : {600u, 1000u, 1200u, 2000u, 3000u, 5000u, 10000u, 12000u})
    for (const float top_p : {0.03125f, 0.0625f, 0.125f, 0.25f, 0.75f}) {
      INFO("n " << n << " top_p " << top_p);
      sc2::SamplingConfig config;
      config.do_sample = true;
      config.top_k = 0;
      config.top_p = top_p;
      check_against_reference(config, std::vector<float>(n, 1.5f), {});
    }
  // Sums that meet 1 − p within a few units in the last place: 1000 tokens of probability
  // 0.001 (rounded), with and without top-k, and with removed tokens among them.
  std::mt19937_64 rng(3);
  for (const float top_p : {0.5f, 0.75f, 0.9f, 0.3f}) {
    for (const int top_k : {0, 50, 2000}) {
      INFO("top_p " << top_p << " top_k " << top_k);
      sc2::SamplingConfig config;
      config.do_sample = true;
      config.top_k = top_k;
      config.top_p = top_p;
      std::vector<float> logits(1000, -1.0f);
      check_against_reference(config, logits, {});
      for (std::size_t i = 0; i < logits.size(); i += 7) logits[i] = -std::numeric_limits<float>::infinity();
      check_against_reference(config, logits, {});
      check_against_reference(config, random_logits(rng, 3000, Shape::four_levels), {});
    }
  }
}

TEST_CASE("the allocation counter counts every form of operator new, per thread", "[allocations]") {
  const std::uint64_t before = sc2::test::allocations();
  ::operator delete(::operator new(16));
  ::operator delete[](::operator new[](16));
  ::operator delete(::operator new(16, std::nothrow), std::nothrow);
  ::operator delete[](::operator new[](16, std::nothrow), std::nothrow);
  constexpr std::align_val_t a{256};
  void* aligned[4] = {::operator new(16, a), ::operator new[](16, a), ::operator new(16, a, std::nothrow),
                      ::operator new[](16, a, std::nothrow)};
  const std::uint64_t counted = sc2::test::allocations() - before;
  for (void* p : aligned) CHECK(reinterpret_cast<std::uintptr_t>(p) % 256 == 0);
  ::operator delete(aligned[0], a);
  ::operator delete[](aligned[1], a);
  ::operator delete(aligned[2], a, std::nothrow);
  ::operator delete[](aligned[3], a, std::nothrow);
  CHECK(counted == 8);

  // Another thread's allocations count on that thread only.
  const std::uint64_t here_before = sc2::test::allocations();
  std::uint64_t there = 0;
  std::thread([&there] {
    const std::uint64_t start = sc2::test::allocations();
    for (int i = 0; i < 1000; ++i) ::operator delete(::operator new(8));
    there = sc2::test::allocations() - start;
  }).join();
  CHECK(there == 1000);
  CHECK(sc2::test::allocations() - here_before < 1000);  // starting the thread allocates a little here
}

TEST_CASE("sampling allocates nothing after the first call with a vocabulary size", "[sampler][allocations]") {
  constexpr std::size_t n = 49152;
  std::mt19937_64 rng(5);
  // Peaked and Zipf logits take top-p's chunked selection, flat ones its sort of a wide
  // nucleus, uniform ones its exact fallback; some logits are −inf from the start.
  std::vector<std::vector<float>> logits;
  for (const Shape shape : {Shape::peaked, Shape::zipf, Shape::flat, Shape::uniform, Shape::some_removed,
                            Shape::four_levels})
    logits.push_back(random_logits(rng, n, shape));
  std::vector<std::int32_t> history(300);
  for (std::int32_t& id : history) id = std::uniform_int_distribution<std::int32_t>(0, 60000)(rng);
  history.reserve(history.size() + 100);

  std::vector<sc2::SamplingConfig> configs(10);
  configs[1].repetition_penalty = 1.3f;  // greedy with a penalty
  for (std::size_t c = 2; c < configs.size(); ++c) configs[c].do_sample = true;  // [2]: top-k 50 alone
  configs[3].top_k = 0;
  configs[3].top_p = 0.9f;
  configs[4].top_k = 0;
  configs[4].top_p = 0.5f;
  configs[5].top_p = 0.95f;
  configs[6].top_k = 0;
  configs[6].min_p = 0.05f;
  configs[7].top_k = 0;
  configs[8] = {.do_sample = true, .temperature = 0.7f, .top_k = 0, .top_p = 0.8f, .min_p = 0.02f,
                .repetition_penalty = 1.2f, .seed = 9};
  configs[9] = {.do_sample = true, .temperature = 1.5f, .top_k = 1, .top_p = 0.3f, .min_p = 0.5f,
                .repetition_penalty = 0.8f, .seed = 11};

  std::vector<float> scores(n);
  for (std::size_t c = 0; c < configs.size(); ++c) {
    INFO("config " << c);
    sc2::Sampler sampler(configs[c]);
    std::copy(logits[0].begin(), logits[0].end(), scores.begin());
    sampler.sample(scores, history);  // sizes the scratch for n tokens
    const std::uint64_t before = sc2::test::allocations();
    for (int round = 0; round < 2; ++round)
      for (const std::vector<float>& l : logits) {
        std::copy(l.begin(), l.end(), scores.begin());
        history.push_back(sampler.sample(scores, history));
        std::copy(l.begin(), l.begin() + 1000, scores.begin());  // a smaller vocabulary fits too
        sampler.sample(std::span<float>(scores).first(1000), history);
      }
    const std::uint64_t allocated = sc2::test::allocations() - before;
    CHECK(allocated == 0);
    history.resize(300);
  }
}
