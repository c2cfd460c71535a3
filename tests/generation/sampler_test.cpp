// The sampler against transformers' logits processors (tools/make_generation_fixtures.py),
// and the distribution of its draws.

#include "support.hpp"

#include <sc2/generation/sampler.hpp>
#include <sc2/io/mapped_file.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <map>

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
