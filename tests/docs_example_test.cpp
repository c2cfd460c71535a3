// The documentation's example program, run on a fixture, prints the reference's top 5.

#include "support.hpp"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <sstream>

#ifdef SC2_DOCS_TOP5
TEST_CASE("docs/top5_next_tokens prints the five largest reference logits", "[docs]") {
  const auto dir = sc2::test::fixture("models/gqa1_tied_window8_f32");
  const auto reference = sc2::SafetensorsFile::open(dir / "reference.safetensors");
  const auto ids = sc2::test::read_reference(reference, "input_ids").ints;
  const auto logits = sc2::test::read_reference(reference, "logits");
  const std::size_t V = static_cast<std::size_t>(logits.shape[1]);
  const float* last = logits.values.data() + (ids.size() - 1) * V;
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + 5, order.end(), [&](int a, int b) { return last[a] > last[b]; });

  std::string command = SC2_DOCS_TOP5;
  command.append(" ").append(dir.string());
  for (auto id : ids) command.append(" ").append(std::to_string(id));
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char line[256];
  for (int i = 0; i < 5; ++i) {
    REQUIRE(std::fgets(line, sizeof line, pipe) != nullptr);
    std::istringstream fields(line);
    int id = -1;
    double value = 0.0;
    fields >> id >> value;
    CHECK(id == order[static_cast<std::size_t>(i)]);
    CHECK(value == Approx(last[order[static_cast<std::size_t>(i)]]).margin(1e-4));
  }
  CHECK(pclose(pipe) == 0);
}
#endif
