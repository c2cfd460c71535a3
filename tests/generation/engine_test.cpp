// The engine: requests advanced together by continuous batching give each the
// tokens it gets alone; prefixes are shared; cancelled and finished requests
// give their pages back; a full pool makes requests wait, never crash; a step
// allocates nothing in steady state.

#include "allocation_counter.hpp"
#include "support.hpp"

#include <sc2/sc2.hpp>

#include <random>

namespace {

using LM = sc2::Starcoder2ForCausalLM;

const sc2::Tokenizer& tiny_tokenizer() {
  static const sc2::Tokenizer tok =
      sc2::Tokenizer::from_file(std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny/tokenizer.json");
  return tok;
}

std::vector<std::int32_t> random_ids(std::size_t n, std::int64_t vocab, std::mt19937& rng) {
  std::vector<std::int32_t> ids(n);
  for (auto& id : ids) id = static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab));
  return ids;
}

sc2::Request make_request(std::vector<std::int32_t> prompt, std::int64_t max_new, bool sample, std::uint64_t seed) {
  sc2::Request r;
  r.prompt = std::move(prompt);
  r.config.max_new_tokens = max_new;
  r.config.eos_token_ids = {-1};  // run to max_new_tokens
  r.config.sampling.do_sample = sample;
  r.config.sampling.temperature = 1.2f;
  r.config.sampling.top_k = 20;
  r.config.sampling.top_p = 0.9f;
  r.config.sampling.seed = seed;
  return r;
}

// The request alone: an engine that runs it and nothing else, prompt whole.
sc2::GenerationResult alone(const LM& lm, sc2::CpuContext& ctx, const sc2::Request& request) {
  sc2::Generator gen(lm, tiny_tokenizer());
  return gen.generate(ctx, std::span<const std::int32_t>(request.prompt), request.config);
}

}  // namespace

TEST_CASE("requests batched together get the tokens each gets alone, greedy and seeded", "[engine][invariance]") {
  for (const char* name : {"gqa1_tied_window8_f32", "gqa2_untied_nobias_nowindow_f32"}) {
    DYNAMIC_SECTION(name) {
      sc2::CpuContext ctx(2);
      const LM lm = LM::load(ctx, sc2::test::fixture("models/" + std::string(name)));
      std::mt19937 rng(5);
      const std::int64_t V = lm.vocab_size();
      std::vector<sc2::Request> requests;
      requests.push_back(make_request(random_ids(30, V, rng), 20, false, 0));
      requests.push_back(make_request(random_ids(4, V, rng), 12, true, 11));
      requests.push_back(make_request(random_ids(17, V, rng), 25, true, 12));
      requests.push_back(make_request(random_ids(9, V, rng), 6, false, 0));
      requests.push_back(make_request(random_ids(22, V, rng), 15, true, 13));  // joins late
      std::vector<sc2::GenerationResult> expected;
      for (const auto& r : requests) expected.push_back(alone(lm, ctx, r));

      sc2::Engine<LM> engine(lm, tiny_tokenizer(), {.max_batch_tokens = 16, .max_running = 3, .page_size = 4});
      std::vector<sc2::RequestId> ids;
      for (std::size_t i = 0; i + 1 < requests.size(); ++i) ids.push_back(engine.add(requests[i]));
      int steps = 0;
      std::size_t most_running = 0;
      while (engine.step(ctx)) {
        most_running = std::max(most_running, engine.running());
        if (++steps == 5) ids.push_back(engine.add(requests.back()));
        REQUIRE(steps < 500);
      }
      CHECK(most_running == 3);  // at most max_running at once, and that many did run together
      for (std::size_t i = 0; i < requests.size(); ++i) {
        INFO("request " << i);
        REQUIRE(engine.status(ids[i]) == sc2::RequestStatus::finished);
        CHECK(engine.result(ids[i]).ids == expected[i].ids);
        CHECK(engine.result(ids[i]).text == expected[i].text);
        CHECK(engine.result(ids[i]).stop_reason == sc2::StopReason::max_new_tokens);
      }
      CHECK(engine.pool().free_pages() == engine.pool().pages());  // every page came back
    }
  }
}

TEST_CASE("a request starts from another's cached prefix and gets the tokens it gets alone", "[engine][prefix]") {
  sc2::CpuContext ctx(2);
  const LM lm = LM::load(ctx, sc2::test::fixture("models/gqa2_untied_nobias_nowindow_f32"));
  std::mt19937 rng(8);
  auto first = make_request(random_ids(40, lm.vocab_size(), rng), 6, false, 0);
  first.keep_cache = true;  // an editor's last completion: its prompt stays cached
  auto second = make_request(std::vector<std::int32_t>(first.prompt.begin(), first.prompt.begin() + 35), 8, true, 3);
  for (const auto id : random_ids(9, lm.vocab_size(), rng)) second.prompt.push_back(id);  // the file changed after 35

  sc2::Engine<LM> engine(lm, tiny_tokenizer(), {.max_batch_tokens = 12, .max_running = 2, .page_size = 8});
  const auto a = engine.add(first);
  while (engine.step(ctx)) {
  }
  REQUIRE(engine.status(a) == sc2::RequestStatus::finished);
  const std::int64_t kept = engine.pool().pages() - engine.pool().free_pages();
  CHECK(kept > 0);  // a's pages stay for later requests
  second.prefix_of = a;
  second.prefix_tokens = 35;
  const auto b = engine.add(second);
  while (engine.step(ctx)) {
  }
  CHECK(engine.result(b).timings.cached_tokens == 35);
  CHECK(engine.result(b).ids == alone(lm, ctx, second).ids);
  CHECK(engine.result(a).ids == alone(lm, ctx, first).ids);
  engine.release(b);
  engine.release(a);
  CHECK(engine.pool().free_pages() == engine.pool().pages());
  // A prefix that is not the source's tokens is refused.
  auto c = second;
  c.prompt[3] += 1;
  const auto d = engine.add(first);
  CHECK_THROWS_WITH([&] { c.prefix_of = d; c.prefix_tokens = 10; engine.add(c); }(),
                    Catch::Contains("are not the first tokens of request"));
}

TEST_CASE("a cached prompt serves later prefixes after its request generated past the window", "[engine][prefix]") {
  sc2::CpuContext ctx(2);
  // A window of 8: generating 20 tokens moves it far past the prompt's end.
  const LM lm = LM::load(ctx, sc2::test::fixture("models/gqa1_tied_window8_f32"));
  std::mt19937 rng(21);
  auto first = make_request(random_ids(40, lm.vocab_size(), rng), 20, false, 0);
  first.keep_cache = true;
  auto second = make_request(std::vector<std::int32_t>(first.prompt.begin(), first.prompt.begin() + 37), 6, false, 0);
  for (const auto id : random_ids(4, lm.vocab_size(), rng)) second.prompt.push_back(id);
  sc2::Engine<LM> engine(lm, tiny_tokenizer(), {.max_batch_tokens = 16, .max_running = 2, .page_size = 4});
  const auto a = engine.add(first);
  while (engine.step(ctx)) {
  }
  second.prefix_of = a;
  second.prefix_tokens = 37;
  const auto b = engine.add(second);
  while (engine.step(ctx)) {
  }
  CHECK(engine.result(b).timings.cached_tokens == 37);
  CHECK(engine.result(b).ids == alone(lm, ctx, second).ids);
  CHECK(engine.result(a).ids == alone(lm, ctx, first).ids);
  engine.release(b);
  engine.release(a);
  CHECK(engine.pool().free_pages() == engine.pool().pages());
}

TEST_CASE("cancelling frees a request's pages, and a full pool makes requests wait", "[engine][pages]") {
  sc2::CpuContext ctx(1);
  const LM lm = LM::load(ctx, sc2::test::fixture("models/gqa1_tied_window8_f32"));  // window 8
  std::mt19937 rng(2);
  // Pages for two sequences (window 8 + chunk 8 in pages of 4: 5 pages each), four may run.
  sc2::Engine<LM> engine(lm, tiny_tokenizer(), {.max_batch_tokens = 8, .max_running = 4, .page_size = 4, .kv_pages = 10});
  std::vector<sc2::RequestId> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(engine.add(make_request(random_ids(10, lm.vocab_size(), rng), 30, false, 0)));
  engine.step(ctx);
  CHECK(engine.running() == 2);  // the pool promised all its pages to two
  CHECK(engine.waiting() == 2);
  engine.step(ctx);
  engine.cancel(ids[0]);
  CHECK(engine.status(ids[0]) == sc2::RequestStatus::finished);
  CHECK(engine.result(ids[0]).stop_reason == sc2::StopReason::cancelled);
  engine.step(ctx);
  CHECK(engine.running() == 2);  // the third took the cancelled one's pages
  while (engine.step(ctx)) CHECK(engine.running() <= 2);
  for (const auto id : ids) CHECK(engine.status(id) == sc2::RequestStatus::finished);
  CHECK(engine.pool().free_pages() == engine.pool().pages());
  // A request that could never fit is refused when it is added.
  sc2::Engine<LM> tiny(lm, tiny_tokenizer(), {.max_batch_tokens = 8, .max_running = 1, .page_size = 4, .kv_pages = 2});
  CHECK_THROWS_WITH(tiny.add(make_request(random_ids(10, lm.vocab_size(), rng), 30, false, 0)),
                    Catch::Contains("KV pages; the pool holds 2"));
}

TEST_CASE("an engine step allocates nothing in steady state", "[engine][allocations]") {
  sc2::CpuContext ctx(1);  // one thread: every allocation would be on this one
  const LM lm = LM::load(ctx, sc2::test::fixture("models/gqa1_tied_window8_f32"));
  std::mt19937 rng(4);
  sc2::Engine<LM> engine(lm, tiny_tokenizer(), {.max_batch_tokens = 16, .max_running = 3, .page_size = 4});
  for (int i = 0; i < 3; ++i) {
    auto r = make_request(random_ids(6, lm.vocab_size(), rng), 60, i != 0, 7);
    r.config.stop_strings = {"never in this text \x01"};
    engine.add(r);
  }
  std::uint64_t during = 0;
  for (int step = 0; step < 50; ++step) {
    const std::uint64_t before = sc2::test::allocations();
    REQUIRE(engine.step(ctx));
    if (step >= 12) during += sc2::test::allocations() - before;  // all admitted, windows full
  }
  CHECK(engine.running() == 3);
  CHECK(during == 0);
}
