// The bundled secrets tagger (models/sc2-tagger) and language identifier (models/sc2-langid):
// on their held-out examples sc2 computes PyTorch's predictions, hence its metrics
// (tools/evaluation/eval_classifiers.py wrote the fixtures); and the span helpers of token_spans.hpp.

#include "support.hpp"

#include <sc2/tagging/token_spans.hpp>
#include <sc2/sc2.hpp>

#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <tuple>

namespace {

const std::filesystem::path kModels = std::filesystem::path(SC2_SOURCE_DIR) / "models";

// Under AddressSanitizer (tests/hardening) the held-out runs check the first examples only:
// every example there would take many minutes.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif
constexpr std::size_t kSanitizedExamples = 6;

// A tensor of a fixture as int32, whatever its integer dtype (U8, I16, I32).
std::vector<std::int32_t> read_ints(const sc2::SafetensorsFile& file, const std::string& name) {
  const sc2::TensorInfo* t = file.find(name);
  REQUIRE(t != nullptr);
  std::vector<std::int32_t> out(static_cast<std::size_t>(t->numel()));
  const auto* bytes = reinterpret_cast<const unsigned char*>(t->bytes.data());
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (t->dtype_name == "U8") {
      out[i] = bytes[i];
    } else if (t->dtype_name == "I16") {
      std::int16_t v;
      std::memcpy(&v, bytes + 2 * i, 2);
      out[i] = v;
    } else {
      REQUIRE(t->dtype_name == "I32");
      std::memcpy(&out[i], bytes + 4 * i, 4);
    }
  }
  return out;
}

nlohmann::json read_json(const std::filesystem::path& path) { return nlohmann::json::parse(sc2::read_text_file(path)); }

using Run = std::tuple<std::size_t, std::size_t, std::int32_t>;

// Maximal runs [begin, end) of equal labels other than O (0), as tools/evaluation/eval_classifiers.py's runs().
std::set<Run> runs(std::span<const std::int32_t> labels) {
  std::set<Run> out;
  for (std::size_t t = 0; t < labels.size();) {
    if (labels[t] == 0) {
      ++t;
      continue;
    }
    std::size_t u = t;
    while (u < labels.size() && labels[u] == labels[t]) ++u;
    out.emplace(t, u, labels[t]);
    t = u;
  }
  return out;
}

struct Counts {
  std::int64_t tp = 0, fp = 0, fn = 0;
};

// The metrics of eval_classifiers.py's prf(), in the same order of operations.
void check_metrics(const Counts& c, const nlohmann::json& expected) {
  CHECK(c.tp == expected["tp"].get<std::int64_t>());
  CHECK(c.fp == expected["fp"].get<std::int64_t>());
  CHECK(c.fn == expected["fn"].get<std::int64_t>());
  const double tp = static_cast<double>(c.tp);
  const double p = c.tp + c.fp ? tp / static_cast<double>(c.tp + c.fp) : 0.0;
  const double r = c.tp + c.fn ? tp / static_cast<double>(c.tp + c.fn) : 0.0;
  const double f = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
  CHECK(p == expected["precision"].get<double>());
  CHECK(r == expected["recall"].get<double>());
  CHECK(f == expected["f1"].get<double>());
}

}  // namespace

TEST_CASE("secrets tagger: sc2 gives PyTorch's held-out predictions and per-label precision, recall and F1",
          "[tagger][bundled]") {
  const auto fixture = sc2::test::fixture("tagger");
  const auto ref = sc2::SafetensorsFile::open(fixture / "heldout.safetensors");
  const auto metrics = read_json(fixture / "metrics.json");
  auto tagger = sc2::Starcoder2ForTokenClassification::load(kModels / "sc2-tagger");
  const auto config = read_json(kModels / "sc2-tagger" / "config.json");
  const auto delay = config["label_delay"].get<std::int64_t>();
  CHECK(delay == metrics["label_delay"].get<std::int64_t>());
  const std::int64_t L = tagger.num_labels();
  REQUIRE(L == 5);
  std::vector<std::string> labels;
  for (std::int64_t l = 0; l < L; ++l) labels.push_back(tagger.label(l));
  CHECK(labels == metrics["labels"].get<std::vector<std::string>>());

  const auto ids = read_ints(ref, "ids"), lengths = read_ints(ref, "lengths"), gold = read_ints(ref, "gold"),
             torch_pred = read_ints(ref, "torch_pred");
  const auto logits = sc2::test::read_reference(ref, "logits");
  const auto logit_chunks = metrics["logit_chunks"].get<std::size_t>();
  sc2::CpuContext ctx(2);
  std::vector<Counts> span(static_cast<std::size_t>(L)), token(static_cast<std::size_t>(L));
  std::size_t at = 0, scored = 0, logits_at = 0, disagreements = 0;
  double worst = 0.0;
  const std::size_t chunks = kSanitized ? kSanitizedExamples : lengths.size();
  for (std::size_t k = 0; k < chunks; ++k) {
    const std::int64_t n = lengths[k];
    std::vector<float> out(static_cast<std::size_t>(n * L));
    tagger.forward(ctx, std::span(ids).subspan(at, static_cast<std::size_t>(n)), sc2::MatrixView(out.data(), {n, L}));
    if (k < logit_chunks) {
      worst = std::max(worst, sc2::test::max_abs_diff(out.data(), logits.values.data() + logits_at, out.size()));
      logits_at += out.size();
    }
    // The label of token j is read at position j + delay.
    const auto tags = sc2::best_labels(sc2::ConstMatrixView(out.data(), {n, L}).slice(delay, n - delay));
    std::vector<std::int32_t> pred(tags.size());
    for (std::size_t j = 0; j < tags.size(); ++j) pred[j] = tags[j].label;
    const std::span<const std::int32_t> g = std::span(gold).subspan(scored, pred.size());
    for (std::size_t j = 0; j < pred.size(); ++j) disagreements += pred[j] != torch_pred[scored + j];
    const auto gold_runs = runs(g), pred_runs = runs(pred);
    for (const auto& r : pred_runs) (gold_runs.contains(r) ? span[std::get<2>(r)].tp : span[std::get<2>(r)].fp) += 1;
    for (const auto& r : gold_runs)
      if (!pred_runs.contains(r)) span[std::get<2>(r)].fn += 1;
    for (std::size_t j = 0; j < pred.size(); ++j) {
      if (pred[j] == g[j]) {
        token[pred[j]].tp += pred[j] != 0;
      } else {
        token[pred[j]].fp += pred[j] != 0;
        token[g[j]].fn += g[j] != 0;
      }
    }
    at += static_cast<std::size_t>(n);
    scored += pred.size();
  }
  CHECK(logits_at == logits.values.size());
  CHECK(worst <= 1e-3);
  CHECK(disagreements == 0);  // the same argmax for every held-out token
  if (kSanitized) return;
  CHECK(at == ids.size());
  CHECK(scored == gold.size());
  CHECK(scored == metrics["tokens"].get<std::size_t>());

  Counts span_all, token_all;
  for (std::int64_t l = 1; l < L; ++l) {
    INFO("label " << labels[static_cast<std::size_t>(l)]);
    check_metrics(span[static_cast<std::size_t>(l)], metrics["span"][labels[static_cast<std::size_t>(l)]]);
    check_metrics(token[static_cast<std::size_t>(l)], metrics["token"][labels[static_cast<std::size_t>(l)]]);
    for (auto [all, one] : {std::pair{&span_all, &span[static_cast<std::size_t>(l)]},
                            std::pair{&token_all, &token[static_cast<std::size_t>(l)]}}) {
      all->tp += one->tp;
      all->fp += one->fp;
      all->fn += one->fn;
    }
  }
  check_metrics(span_all, metrics["span"]["micro"]);
  check_metrics(token_all, metrics["token"]["micro"]);
}

TEST_CASE("language identifier: sc2 gives PyTorch's held-out predictions and accuracy", "[tagger][bundled]") {
  const auto fixture = sc2::test::fixture("langid");
  const auto ref = sc2::SafetensorsFile::open(fixture / "heldout.safetensors");
  const auto metrics = read_json(fixture / "metrics.json");
  auto classifier = sc2::Starcoder2ForSequenceClassification::load(kModels / "sc2-langid");
  const std::int64_t L = classifier.num_labels();
  REQUIRE(L == 4);
  CHECK(classifier.config().pad_token_id.value_or(-1) == 4);

  const auto ids = read_ints(ref, "ids"), offsets = read_ints(ref, "offsets"), gold = read_ints(ref, "gold"),
             torch_pred = read_ints(ref, "torch_pred");
  const auto logits = sc2::test::read_reference(ref, "logits");
  sc2::CpuContext ctx(2);
  std::vector<std::int64_t> correct(static_cast<std::size_t>(L)), examples(static_cast<std::size_t>(L));
  std::size_t all_correct = 0, disagreements = 0;
  double worst = 0.0;
  const std::size_t B = gold.size();
  REQUIRE(offsets.size() == B + 1);
  for (std::size_t b = 0; b < (kSanitized ? kSanitizedExamples : B); ++b) {
    const auto row = std::span(ids).subspan(static_cast<std::size_t>(offsets[b]),
                                            static_cast<std::size_t>(offsets[b + 1] - offsets[b]));
    const auto out = classifier.forward(ctx, row);
    worst = std::max(worst, sc2::test::max_abs_diff(out.data(), logits.values.data() + b * static_cast<std::size_t>(L),
                                                    out.size()));
    const auto pred = sc2::best_labels(sc2::ConstMatrixView(out.data(), {1, L}))[0].label;
    disagreements += pred != torch_pred[b];
    examples[static_cast<std::size_t>(gold[b])] += 1;
    correct[static_cast<std::size_t>(gold[b])] += pred == gold[b];
    all_correct += pred == gold[b];
  }
  CHECK(worst <= 1e-3);
  CHECK(disagreements == 0);
  if (kSanitized) return;
  CHECK(B == metrics["examples"].get<std::size_t>());
  CHECK(all_correct == metrics["correct"].get<std::size_t>());
  CHECK(static_cast<double>(all_correct) / static_cast<double>(B) == metrics["accuracy"].get<double>());
  for (std::int64_t l = 0; l < L; ++l) {
    const auto& expected = metrics["per_class"][classifier.label(l)];
    CHECK(examples[static_cast<std::size_t>(l)] == expected["examples"].get<std::int64_t>());
    CHECK(correct[static_cast<std::size_t>(l)] == expected["correct"].get<std::int64_t>());
  }
}

TEST_CASE("token spans: best labels, byte offsets, runs trimmed of white space", "[tagger]") {
  const float logits[] = {2.0f, 0.0f, 0.0f,  // O
                          0.0f, 3.0f, 3.0f,  // tie: the first
                          0.0f, 0.0f, 1.0f};
  const auto tags = sc2::best_labels(sc2::ConstMatrixView(logits, {3, 3}));
  REQUIRE(tags.size() == 3);
  CHECK(tags[0].label == 0);
  CHECK(tags[0].probability == Approx(std::exp(2.0) / (std::exp(2.0) + 2.0)));
  CHECK(tags[1].label == 1);
  CHECK(tags[1].probability == Approx(std::exp(3.0) / (2 * std::exp(3.0) + 1.0)));
  CHECK(tags[2].label == 2);

  const auto tok = sc2::Tokenizer::from_file(kModels / "sc2-tagger" / "tokenizer.json");
  const std::string text = "key = \"abc123\"\n# é x\n";
  const auto ids = tok.encode(text);
  const auto offsets = sc2::token_byte_offsets(tok, ids);
  REQUIRE(offsets.size() == ids.size() + 1);
  CHECK(offsets.back() == text.size());
  for (std::size_t i = 0; i < ids.size(); ++i) CHECK(text.substr(offsets[i], offsets[i + 1] - offsets[i]) == tok.token_bytes(ids[i]));

  // Runs: tokens 1-2 (label 1, with a leading space), token 4 (label 2), and a run of white space alone.
  const std::string s = "a bc d  e";
  const std::vector<std::size_t> offs = {0, 1, 3, 4, 6, 7, 9};  // "a", " b", "c", " d", " ", " e"
  const std::vector<sc2::TokenTag> t = {{0, 0.9f}, {1, 0.8f}, {1, 0.6f}, {0, 0.9f}, {3, 0.5f}, {2, 0.7f}};
  const auto spans = sc2::label_spans(t, offs, s);
  REQUIRE(spans.size() == 2);
  CHECK(spans[0].begin == 2);
  CHECK(spans[0].end == 4);
  CHECK(spans[0].label == 1);
  CHECK(spans[0].score == Approx(0.7f));
  CHECK(spans[0].first_token == 1);
  CHECK(spans[0].end_token == 3);
  CHECK(spans[1].begin == 8);  // " e" trimmed to "e"; token 4 is white space alone and dropped
  CHECK(spans[1].end == 9);
  CHECK(spans[1].label == 2);
  CHECK_THROWS_AS(sc2::label_spans(t, std::span(offs).first(3), s), sc2::Error);
}

TEST_CASE("token spans: repair grows spans over admitted bytes, drops and joins", "[tagger]") {
  const std::string text = "to: ann.lee@ex.org, pw=abcXYZ9 ip 10.0.0.7.";
  auto find = [&](std::string_view piece) { return text.find(piece); };
  // The model cut every secret: "lee@ex" (1), "XYZ" and "abc" as different labels (2, 3), "0.0." (4).
  std::vector<sc2::TextSpan> spans = {
      {find("lee@ex"), find("lee@ex") + 6, 1, 0.9f, 0, 3},
      {find("abc"), find("abc") + 3, 3, 0.5f, 3, 4},
      {find("XYZ"), find("XYZ") + 3, 2, 0.8f, 4, 6},
      {find("0.0."), find("0.0.") + 4, 4, 0.6f, 7, 9},
      {0, 2, 1, 0.9f, 9, 10},  // "to": an email without @, dropped
  };
  auto admits = [&](const sc2::TextSpan& s, char c, bool) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || (s.label == 1 && c == '@');
  };
  auto keeps = [&](sc2::TextSpan& s) {
    while (s.end > s.begin && text[s.end - 1] == '.') --s.end;
    return s.label != 1 || text.substr(s.begin, s.end - s.begin).find('@') != std::string::npos;
  };
  const auto out = sc2::repair_spans(spans, text, admits, keeps);
  REQUIRE(out.size() == 3);
  CHECK(text.substr(out[0].begin, out[0].end - out[0].begin) == "ann.lee@ex.org");
  CHECK(out[0].label == 1);
  CHECK(text.substr(out[1].begin, out[1].end - out[1].begin) == "abcXYZ9");
  CHECK(out[1].label == 2);  // 2 tokens x 0.8 outweigh 1 token x 0.5
  CHECK(out[1].score == Approx((0.5 + 2 * 0.8) / 3));
  CHECK(out[1].first_token == 3);
  CHECK(out[1].end_token == 6);
  CHECK(text.substr(out[2].begin, out[2].end - out[2].begin) == "10.0.0.7");
  CHECK(out[2].label == 4);
}

TEST_CASE("token spans: windows and label delay label every token once, as one pass does", "[tagger][bundled]") {
  auto tagger = sc2::Starcoder2ForTokenClassification::load(kModels / "sc2-tagger");
  const auto tok = sc2::Tokenizer::from_file(kModels / "sc2-tagger" / "tokenizer.json");
  sc2::CpuContext ctx(2);
  std::string text;
  for (int i = 0; i < 12; ++i) text += "HOST_" + std::to_string(i) + " = \"10.0.0." + std::to_string(i) + "\"\n";
  const auto ids = tok.encode(text);
  const auto T = static_cast<std::int64_t>(ids.size()), L = tagger.num_labels();
  REQUIRE(T > 60);
  const std::int64_t d = 3;

  // One pass over ids + d end tokens: token j is read at position j + d.
  std::vector<std::int32_t> stream(ids);
  stream.insert(stream.end(), static_cast<std::size_t>(d), 0);
  std::vector<float> full(stream.size() * static_cast<std::size_t>(L));
  const auto N = static_cast<std::int64_t>(stream.size());
  tagger.forward(ctx, stream, sc2::MatrixView(full.data(), {N, L}));
  const auto one_pass = sc2::best_labels(sc2::ConstMatrixView(full.data(), {N, L}).slice(d, T));

  const auto whole = sc2::tag_tokens(tagger, ctx, ids, {.window = 4096, .context = 0, .label_delay = d});
  REQUIRE(whole.size() == ids.size());
  for (std::size_t j = 0; j < whole.size(); ++j) {
    CHECK(whole[j].label == one_pass[j].label);
    CHECK(whole[j].probability == Approx(one_pass[j].probability).margin(1e-5));
  }

  // Windows of 24 positions repeating 8: window k > 0 starts at 16k and labels positions [16k + 8, 16k + 24).
  const std::int64_t W = 24, C = 8;
  const auto windowed = sc2::tag_tokens(tagger, ctx, ids, {.window = W, .context = C, .label_delay = d});
  REQUIRE(windowed.size() == ids.size());
  std::map<std::int64_t, std::vector<float>> window_logits;
  for (std::int64_t p = d; p < N; ++p) {
    const std::int64_t k = p < W ? 0 : (p - C) / (W - C), start = k * (W - C), n = std::min(W, N - start);
    std::vector<float>& out = window_logits[k];
    if (out.empty()) {
      out.resize(static_cast<std::size_t>(n * L));
      tagger.forward(ctx, std::span(stream).subspan(static_cast<std::size_t>(start), static_cast<std::size_t>(n)),
                     sc2::MatrixView(out.data(), {n, L}));
    }
    const auto expected = sc2::best_labels(sc2::ConstMatrixView(out.data(), {n, L}).slice(p - start, 1))[0];
    INFO("position " << p << " window " << k);
    CHECK(windowed[static_cast<std::size_t>(p - d)].label == expected.label);
    CHECK(windowed[static_cast<std::size_t>(p - d)].probability == expected.probability);
  }
  CHECK_THROWS_AS(sc2::tag_tokens(tagger, ctx, ids, {.window = 16, .context = 16}), sc2::Error);
  CHECK(sc2::tag_tokens(tagger, ctx, std::span<const std::int32_t>(), {.label_delay = d}).empty());
}
