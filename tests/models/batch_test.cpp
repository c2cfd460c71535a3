// The ragged batch forward over a paged KV pool: every sequence of a batch gets
// the bits it gets alone, whatever runs beside it, however its prompt is
// chunked, and when it resumes from another sequence's cached prefix; pages
// come and go as the pool's rules say.

#include "allocation_counter.hpp"
#include "support.hpp"

#include <sc2/sc2.hpp>

#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <string>

namespace {

using LM = sc2::Starcoder2ForCausalLM;
using sc2::quant::Format;

// A fixture model, its matrices quantized at load to `quant` where their rows are whole blocks.
struct Model {
  Model(const char* fixture, std::optional<Format> blocks = std::nullopt) : name(fixture), quant(blocks) {}
  const char* name;
  std::optional<Format> quant;
  std::string describe() const { return std::string(name) + (quant ? " in " + std::string(sc2::quant::format_name(*quant)) : ""); }
  LM load(sc2::CpuContext& ctx) const {
    sc2::LoadOptions options;
    options.weight_quant = quant;
    LM lm = LM::load(ctx, sc2::test::fixture("models/" + std::string(name)), options);
    REQUIRE(lm.backbone().weights().layers.front().self_attn.o_proj.weight.blocks == quant);  // blocks where asked
    return lm;
  }
};

std::vector<std::int32_t> random_ids(std::size_t n, std::int64_t vocab, std::mt19937& rng) {
  std::vector<std::int32_t> ids(n);
  for (auto& id : ids) id = static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab));
  return ids;
}

std::int32_t argmax(std::span<const float> row) {
  return static_cast<std::int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

// Logits (T, V) of every token of `ids` run alone through a cache in chunks of `chunk` tokens.
std::vector<float> alone(const LM& lm, sc2::CpuContext& ctx, const std::vector<std::int32_t>& ids, std::int64_t chunk) {
  sc2::LoadOptions options;
  options.max_chunk_tokens = chunk;
  const LM chunked(lm.backbone(), lm.lm_head(), options);  // shares the weights
  auto cache = chunked.make_cache();
  std::vector<float> out(ids.size() * static_cast<std::size_t>(lm.vocab_size()));
  chunked.forward_all(ctx, ids, cache, sc2::MatrixView(out.data(), {static_cast<std::int64_t>(ids.size()), lm.vocab_size()}));
  return out;
}

bool same_bits(const float* a, const float* b, std::size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// A sequence of the scenario: its prompt, when it joins, how many tokens it generates,
// and whether it starts from another's cached prefix.
struct Script {
  std::vector<std::int32_t> prompt;
  int joins_at_step = 0;
  int generate = 0;
  int prefix_of = -1;           // index of the script whose cached prompt it starts from
  std::size_t prefix_tokens = 0;
};

// What a sequence went through: every token it fed and the logits of each row that asked.
struct Record {
  std::vector<std::int32_t> fed;                  // prompt then generated ids
  std::map<std::size_t, std::vector<float>> logits;  // by position in `fed`
};

// Runs the scripts together: each step packs every decoding sequence's next token, then
// prefill chunks of the others up to the token budget; finished sequences leave the pool.
std::vector<Record> run_together(const LM& lm, sc2::CpuContext& ctx, const std::vector<Script>& scripts,
                                 std::int64_t page_size, std::int64_t budget) {
  const std::int64_t V = lm.vocab_size();
  auto pool = lm.make_kv_pool({.page_size = page_size, .pages = 512});
  auto ws = lm.make_workspace({.max_tokens = budget, .max_sequences = 8, .max_logit_rows = 8, .stored_logit_rows = 8}, pool);
  const std::size_t full_pages = static_cast<std::size_t>(pool.free_pages());
  struct State {
    sc2::SequenceId seq = -1;
    std::size_t fed = 0;  // tokens of record.fed in the pool
    int generated = 0;
    bool done = false;
  };
  std::vector<Record> records(scripts.size());
  std::vector<State> states(scripts.size());
  for (std::size_t i = 0; i < scripts.size(); ++i) records[i].fed = scripts[i].prompt;
  sc2::Batch batch;
  for (int step = 0; step < 200; ++step) {
    for (std::size_t i = 0; i < scripts.size(); ++i) {
      State& s = states[i];
      if (s.seq >= 0 || s.done || scripts[i].joins_at_step > step) continue;
      if (scripts[i].prefix_of >= 0) {
        // Joins as soon as its source has cached the prefix (before the source's window moves past it).
        const State& source = states[static_cast<std::size_t>(scripts[i].prefix_of)];
        if (source.seq < 0 || source.fed < scripts[i].prefix_tokens) continue;
        s.seq = pool.fork(source.seq, static_cast<std::int64_t>(scripts[i].prefix_tokens));
        s.fed = scripts[i].prefix_tokens;
      } else {
        s.seq = pool.add();
      }
    }
    batch.clear();
    struct Row {
      std::size_t script, first;
      std::int64_t count;
      bool logits;
    };
    std::vector<Row> rows;
    std::int64_t used = 0;
    // Decode rows first, then prefill chunks in the budget that is left.
    for (int pass = 0; pass < 2; ++pass)
      for (std::size_t i = 0; i < scripts.size(); ++i) {
        State& s = states[i];
        if (s.seq < 0 || s.done) continue;
        const bool decoding = s.fed >= scripts[i].prompt.size();
        if (decoding != (pass == 0) || used == budget) continue;
        const std::int64_t left = static_cast<std::int64_t>(records[i].fed.size() - s.fed);
        const std::int64_t n = std::min(left, budget - used);
        const bool wants = s.fed + static_cast<std::size_t>(n) == records[i].fed.size();
        batch.add(s.seq, std::span(records[i].fed).subspan(s.fed, static_cast<std::size_t>(n)),
                  wants ? sc2::LogitRows::last : sc2::LogitRows::none);
        rows.push_back({i, s.fed, n, wants});
        used += n;
      }
    if (batch.empty()) break;
    const auto logits = lm.forward(ctx, ws, pool, batch);
    std::int64_t r = 0;
    for (const Row& row : rows) {
      State& s = states[row.script];
      s.fed += static_cast<std::size_t>(row.count);
      if (!row.logits) continue;
      const auto values = logits.row(r++);
      records[row.script].logits[s.fed - 1] = std::vector<float>(values.begin(), values.end());
      if (s.generated == scripts[row.script].generate) {
        pool.release(s.seq);  // finished: its pages go back
        s.done = true;
        continue;
      }
      records[row.script].fed.push_back(argmax(values));
      ++s.generated;
    }
    REQUIRE(r == logits.extent(0));
    (void)V;
  }
  for (std::size_t i = 0; i < scripts.size(); ++i) REQUIRE(states[i].done);
  CHECK(static_cast<std::size_t>(pool.free_pages()) == full_pages);  // every page came back
  return records;
}

}  // namespace

TEST_CASE("each sequence of a ragged batch gets exactly the logits it gets alone", "[batch][invariance]") {
  for (const Model& model : {Model{"gqa1_tied_window8_f32"}, Model{"gqa2_untied_nobias_nowindow_f32"},
                             Model{"gqa4_headdim128_window16_bf16"}, Model{"sharded_window12_f32"},
                             Model{"gqa1_tied_window8_f32", Format::q8_0}, Model{"gqa2_untied_nobias_nowindow_f32", Format::q4_0},
                             Model{"gqa4_headdim128_window16_bf16", Format::q4_k},
                             Model{"gqa4_headdim128_window16_bf16", Format::q6_k}}) {
    for (const sc2::cpu::Isa isa : sc2::test::all_supported_isas()) {
      DYNAMIC_SECTION(model.describe() << " on " << sc2::cpu::isa_name(isa)) {
        sc2::CpuContext ctx(2);
        ctx.set_isa(isa);
        const LM lm = model.load(ctx);
        std::mt19937 rng(42);
        const std::int64_t V = lm.vocab_size();
        // Prompts shorter and longer than the windows (8, 12, 16), one joining late,
        // one finishing early, two starting from the cached prompt of the first.
        std::vector<Script> scripts(6);
        scripts[0] = {random_ids(27, V, rng), 0, 12};
        scripts[1] = {random_ids(3, V, rng), 0, 2};
        scripts[2] = {random_ids(11, V, rng), 2, 9};
        scripts[3] = {random_ids(40, V, rng), 5, 6};
        scripts[4] = {scripts[0].prompt, 1, 5, 0, 16};  // the first 16 of scripts[0]'s prompt are shared
        scripts[4].prompt.insert(scripts[4].prompt.end(), {5, 7, 11});
        scripts[4].prompt.erase(scripts[4].prompt.begin() + 19, scripts[4].prompt.begin() + 27);
        scripts[5] = {std::vector<std::int32_t>(scripts[0].prompt.begin(), scripts[0].prompt.begin() + 14), 1, 4, 0, 14};
        scripts[5].prompt.push_back(9);  // shares 14 tokens: the last page of the prefix is partial
        for (const auto& [page, budget] : {std::pair<std::int64_t, std::int64_t>{4, 16}, {3, 7}, {8, 24}}) {
          INFO("page size " << page << ", token budget " << budget);
          const auto records = run_together(lm, ctx, scripts, page, budget);
          for (std::size_t i = 0; i < scripts.size(); ++i) {
            const auto& rec = records[i];
            REQUIRE(rec.fed.size() == scripts[i].prompt.size() + static_cast<std::size_t>(scripts[i].generate));
            const auto reference = alone(lm, ctx, rec.fed, 512);
            for (const auto& [position, values] : rec.logits) {
              INFO("sequence " << i << " position " << position);
              CHECK(same_bits(values.data(), reference.data() + position * static_cast<std::size_t>(V), values.size()));
            }
            CHECK(rec.logits.size() == static_cast<std::size_t>(scripts[i].generate) + 1);
          }
        }
      }
    }
  }
}

TEST_CASE("a prompt run whole, in chunks of any size or token by token gives the same bits", "[batch][invariance]") {
  for (const Model& model : {Model{"gqa1_tied_window8_f32"}, Model{"gqa4_headdim128_window16_bf16"},
                             Model{"gqa8_partial_rotary_window8_f16"}, Model{"sharded_window12_f32"},
                             Model{"gqa1_tied_window8_f32", Format::q8_0}, Model{"gqa4_headdim128_window16_bf16", Format::q5_k}}) {
    for (const sc2::cpu::Isa isa : sc2::test::all_supported_isas()) {
      DYNAMIC_SECTION(model.describe() << " on " << sc2::cpu::isa_name(isa)) {
        sc2::CpuContext ctx(2);
        ctx.set_isa(isa);
        const LM lm = model.load(ctx);
        std::mt19937 rng(7);
        const auto ids = random_ids(45, lm.vocab_size(), rng);
        const auto whole = alone(lm, ctx, ids, 512);
        for (const std::int64_t chunk : {1, 2, 3, 4, 7, 8, 9, 16, 31}) {
          INFO("chunk " << chunk);
          const auto got = alone(lm, ctx, ids, chunk);
          CHECK(same_bits(got.data(), whole.data(), got.size()));
        }
      }
    }
  }
}

TEST_CASE("page edges: chunks ending at a page edge, the window edge on a page edge", "[batch][pages]") {
  // Window 8 in pages of 4 and 8: the window's first key falls on a page edge every 4 (8)
  // positions, and chunks of 4 and 8 end exactly at page edges.
  sc2::CpuContext ctx(2);
  const LM lm = LM::load(ctx, sc2::test::fixture("models/gqa1_tied_window8_f32"));
  std::mt19937 rng(3);
  const auto ids = random_ids(33, lm.vocab_size(), rng);
  const auto reference = alone(lm, ctx, ids, 512);
  for (const std::int64_t page : {4, 8}) {
    for (const std::int64_t chunk : {4, 8}) {
      auto pool = lm.make_kv_pool({.page_size = page, .pages = 64});
      auto ws = lm.make_workspace({.max_tokens = chunk, .max_sequences = 1, .max_logit_rows = chunk,
                                   .stored_logit_rows = chunk},
                                  pool);
      const sc2::SequenceId s = pool.add();
      sc2::Batch batch;
      for (std::size_t at = 0; at < ids.size(); at += static_cast<std::size_t>(chunk)) {
        const std::size_t n = std::min(ids.size() - at, static_cast<std::size_t>(chunk));
        batch.clear();
        batch.add(s, std::span(ids).subspan(at, n), sc2::LogitRows::all);
        const auto logits = lm.forward(ctx, ws, pool, batch);
        INFO("page " << page << " chunk " << chunk << " at " << at);
        CHECK(same_bits(logits.data(), reference.data() + at * static_cast<std::size_t>(lm.vocab_size()),
                        n * static_cast<std::size_t>(lm.vocab_size())));
        // Memory is bounded by the window: only pages of the last W - 1 + chunk positions stay.
        CHECK(pool.held_pages(s) <= (8 - 1 + chunk + page - 1) / page + 1);
      }
    }
  }
}

TEST_CASE("the KV pool gives back pages behind the window, shares prefixes, and refuses what it cannot hold",
          "[batch][pages]") {
  sc2::CpuContext ctx(1);
  const LM lm = LM::load(ctx, sc2::test::fixture("models/gqa1_tied_window8_f32"));  // window 8
  auto pool = lm.make_kv_pool({.page_size = 4, .pages = 6});
  const sc2::SequenceId a = pool.add();
  pool.prepare(ctx, a, 12);  // positions 0..11: pages 0, 1, 2
  pool.advance(a, 12);
  CHECK(pool.held_pages(a) == 3);
  CHECK(pool.free_pages() == 3);
  // Position 12 sees keys 5..12: page 0 (positions 0..3) is wholly behind the window.
  CHECK(pool.pages_needed(a, 1) == 0);  // one page back, one page taken
  pool.prepare(ctx, a, 1);
  pool.advance(a, 1);
  CHECK(pool.held_pages(a) == 3);

  // A fork shares the pages of the first 13 positions that a query at 13 can still see.
  const sc2::SequenceId b = pool.fork(a, 13);
  CHECK(pool.free_pages() == 3);
  CHECK(pool.pages_needed(b, 1) == 1);  // the shared partial page 3 is copied before b writes into it
  pool.prepare(ctx, b, 1);
  pool.advance(b, 1);
  CHECK(pool.free_pages() == 2);

  // Asking for more than the pool holds is an error that changes nothing.
  const std::int64_t free_before = pool.free_pages(), length_before = pool.length(a);
  CHECK_THROWS_WITH(pool.prepare(ctx, a, 40), Catch::Contains("KV pool exhausted"));
  CHECK(pool.free_pages() == free_before);
  CHECK(pool.length(a) == length_before);
  // Releasing (a cancelled request) gives every page back, shared ones when both let go.
  pool.release(b);
  CHECK(pool.free_pages() == 3);
  pool.release(a);
  CHECK(pool.free_pages() == 6);
  // A fork of positions whose pages are gone is refused.
  const sc2::SequenceId c = pool.add();
  for (int i = 0; i < 5; ++i) {
    pool.prepare(ctx, c, 4);
    pool.advance(c, 4);
  }
  CHECK_THROWS_WITH(pool.fork(c, 4), Catch::Contains("no longer holds positions"));
  CHECK_THROWS_WITH(pool.length(b), Catch::Contains("no sequence"));
}

TEST_CASE("a forward pass over a batch allocates nothing in steady state", "[batch][allocations]") {
  sc2::CpuContext ctx(1);  // one thread: every allocation would be on this one
  const LM lm = LM::load(ctx, sc2::test::fixture("models/gqa1_tied_window8_f32"));
  auto pool = lm.make_kv_pool({.page_size = 4, .pages = 64});
  auto ws = lm.make_workspace({.max_tokens = 16, .max_sequences = 4, .max_logit_rows = 4}, pool);
  std::vector<sc2::SequenceId> seqs{pool.add(), pool.add(), pool.add()};
  std::vector<std::int32_t> next{1, 2, 3};
  sc2::Batch batch;
  batch.reserve(4);
  std::uint64_t during = 0;
  for (int step = 0; step < 40; ++step) {
    const std::uint64_t before = sc2::test::allocations();
    batch.clear();
    for (std::size_t i = 0; i < seqs.size(); ++i) batch.add(seqs[i], std::span(&next[i], 1));
    const auto logits = lm.forward(ctx, ws, pool, batch);
    for (std::size_t i = 0; i < seqs.size(); ++i) next[i] = argmax(logits.row(static_cast<std::int64_t>(i)));
    // Counted once the window (8) is full and the attention scratch has its final size.
    if (step >= 10) during += sc2::test::allocations() - before;
  }
  CHECK(during == 0);
}
