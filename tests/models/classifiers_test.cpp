// Token and sequence classification heads against transformers
// (tools/reference/make_classifier_fixtures.py), padded batches included.

#include "support.hpp"

#include <sc2/sc2.hpp>

#include <fstream>

namespace {

using sc2::test::read_reference;

constexpr double kTolerance = 1e-4;

std::filesystem::path case_dir(const std::string& name) { return sc2::test::fixture("classifiers/" + name); }

sc2::TensorView<const std::int32_t, 2> matrix(const sc2::test::ReferenceTensor& t) {
  return {t.ints.data(), {t.shape[0], t.shape[1]}};
}

std::size_t argmax(const float* p, std::size_t n) { return static_cast<std::size_t>(std::max_element(p, p + n) - p); }

}  // namespace

TEST_CASE("token classifier logits match transformers for single sequences and padded batches", "[classifier]") {
  const auto dir = case_dir("token_classifier");
  const auto ref = sc2::SafetensorsFile::open(dir / "reference.safetensors");
  auto model = sc2::Starcoder2ForTokenClassification::load(dir);
  sc2::CpuContext ctx(2);
  const std::int64_t L = model.num_labels();
  CHECK(L == 5);
  CHECK(model.label(3) == "L3");

  const auto single = read_reference(ref, "single_ids");
  const auto single_logits = read_reference(ref, "single_logits");
  const auto T1 = static_cast<std::int64_t>(single.ints.size());
  std::vector<float> got(static_cast<std::size_t>(T1 * L));
  model.forward(ctx, single.ints, sc2::MatrixView(got.data(), {T1, L}));
  CHECK(sc2::test::max_abs_diff(got.data(), single_logits.values.data(), got.size()) <= kTolerance);

  for (const std::string side : {"right", "left", "nomask"}) {
    DYNAMIC_SECTION("batch " << side) {
      const auto ids = read_reference(ref, side == "left" ? "ids_left" : "ids_right");
      const auto expected = read_reference(ref, "logits_" + side);
      const std::int64_t B = ids.shape[0], T = ids.shape[1];
      std::vector<float> out(static_cast<std::size_t>(B * T * L));
      sc2::test::ReferenceTensor mask;
      sc2::TensorView<const std::int32_t, 2> mask_view;
      if (side != "nomask") {
        mask = read_reference(ref, "mask_" + side);
        mask_view = matrix(mask);
      }
      model.forward_batch(ctx, matrix(ids), sc2::TensorView<float, 3>(out.data(), {B, T, L}), mask_view);
      std::size_t compared = 0;
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t t = 0; t < T; ++t) {
          if (side != "nomask" && mask_view(b, t) == 0) continue;  // transformers' logits there are meaningless
          const std::size_t at = static_cast<std::size_t>((b * T + t) * L);
          INFO("row " << b << " token " << t);
          CHECK(sc2::test::max_abs_diff(out.data() + at, expected.values.data() + at, static_cast<std::size_t>(L)) <= kTolerance);
          CHECK(argmax(out.data() + at, static_cast<std::size_t>(L)) == argmax(expected.values.data() + at, static_cast<std::size_t>(L)));
          ++compared;
        }
      CHECK(compared >= 27);
    }
  }
}

TEST_CASE("sequence classifier pools the last non-pad token as transformers does", "[classifier]") {
  const auto dir = case_dir("sequence_classifier");
  const auto ref = sc2::SafetensorsFile::open(dir / "reference.safetensors");
  auto model = sc2::Starcoder2ForSequenceClassification::load(dir);
  sc2::CpuContext ctx(2);
  const std::int64_t L = model.num_labels();

  const auto single = read_reference(ref, "single_ids");
  const auto got = model.forward(ctx, single.ints);
  CHECK(sc2::test::max_abs_diff(got.data(), read_reference(ref, "single_logits").values.data(), got.size()) <= kTolerance);

  for (const std::string side : {"right", "left", "nomask"}) {
    DYNAMIC_SECTION("batch " << side) {
      const auto ids = read_reference(ref, side == "left" ? "ids_left" : "ids_right");
      const auto expected = read_reference(ref, "logits_" + side);
      const std::int64_t B = ids.shape[0];
      std::vector<float> out(static_cast<std::size_t>(B * L));
      sc2::test::ReferenceTensor mask;
      sc2::TensorView<const std::int32_t, 2> mask_view;
      if (side != "nomask") {
        mask = read_reference(ref, "mask_" + side);
        mask_view = matrix(mask);
      }
      model.forward_batch(ctx, matrix(ids), sc2::MatrixView(out.data(), {B, L}), mask_view);
      CHECK(sc2::test::max_abs_diff(out.data(), expected.values.data(), out.size()) <= kTolerance);
      for (std::int64_t b = 0; b < B; ++b)
        CHECK(argmax(out.data() + b * L, static_cast<std::size_t>(L)) ==
              argmax(expected.values.data() + b * L, static_cast<std::size_t>(L)));
    }
  }
}

TEST_CASE("a batch without a pad token id, or with a broken mask, is refused", "[classifier]") {
  const auto source = case_dir("sequence_classifier");
  const auto dir = std::filesystem::temp_directory_path() / "sc2-test-no-pad";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::copy(source / "model.safetensors", dir / "model.safetensors");
  std::string config = sc2::read_text_file(source / "config.json");
  config.replace(config.find("\"pad_token_id\": 1"), 17, "\"pad_token_id\": null");
  std::ofstream(dir / "config.json") << config;

  auto model = sc2::Starcoder2ForSequenceClassification::load(dir);
  sc2::CpuContext ctx(1);
  const std::vector<std::int32_t> ids{5, 6, 7, 8, 9, 10};
  std::vector<float> out(6);
  CHECK_THROWS_WITH(model.forward_batch(ctx, sc2::TensorView<const std::int32_t, 2>(ids.data(), {2, 3}),
                                        sc2::MatrixView(out.data(), {2, 3})),
                    Catch::Contains("needs a pad_token_id"));
  CHECK(model.forward(ctx, std::span(ids).first(3)).size() == 3);  // one row pools its last token

  auto padded = sc2::Starcoder2ForSequenceClassification::load(source);
  const std::vector<std::int32_t> holes{1, 0, 1, 1, 1, 1};
  CHECK_THROWS_WITH(padded.forward_batch(ctx, sc2::TensorView<const std::int32_t, 2>(ids.data(), {2, 3}),
                                         sc2::MatrixView(out.data(), {2, 3}),
                                         sc2::TensorView<const std::int32_t, 2>(holes.data(), {2, 3})),
                    Catch::Contains("must be contiguous"));
  CHECK_THROWS_WITH(sc2::Starcoder2ForTokenClassification::load(source), Catch::Contains("score.bias"));
}
