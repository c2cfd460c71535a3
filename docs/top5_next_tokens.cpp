// Prints the five most likely next tokens after a prompt of token ids:
//   top5_next_tokens CHECKPOINT_DIR ID [ID ...]
#include <sc2/sc2.hpp>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CHECKPOINT_DIR ID [ID ...]\n", argv[0]);
    return 2;
  }
  try {
    // Any StarCoder2 checkpoint, configured from its config.json. For starcoder2-3b the
    // compile-time preset also works: sc2::CausalLM<sc2::Starcoder2<sc2::Config3B>>.
    auto lm = sc2::CausalLM<sc2::Starcoder2<sc2::ModelConfig>>::load(argv[1]);
    std::vector<std::int32_t> ids;
    for (int i = 2; i < argc; ++i) ids.push_back(static_cast<std::int32_t>(std::stol(argv[i])));

    sc2::CpuContext ctx;                    // one thread per core
    sc2::KvCache cache = lm.make_cache();   // the keys and values of this sequence
    std::span<const float> logits = lm.forward_last(ctx, ids, cache);   // (V)

    for (const int id : sc2::top_ids(logits, 5)) std::printf("%d %.6f\n", id, logits[static_cast<std::size_t>(id)]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
