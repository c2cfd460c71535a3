// A program outside sc2 that loads a checkpoint and checks one forward pass.
#include <sc2/sc2.hpp>

#include <cmath>
#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto lm = sc2::Starcoder2ForCausalLM::load(argv[1]);
  sc2::CpuContext ctx(1);
  sc2::KvCache cache = lm.make_cache();
  const std::int32_t ids[] = {1, 2, 3};
  const auto logits = lm.forward_last(ctx, ids, cache);
  for (float x : logits)
    if (!std::isfinite(x)) return 1;
  std::printf("consumer ok: %zu logits\n", logits.size());
  return logits.size() == static_cast<std::size_t>(lm.config().vocab_size) ? 0 : 1;
}
