// A program outside sc2 that runs a checkpoint on the GPU: one forward pass and a
// greedy token, checked finite. Without a GPU it says so and exits with 4 (skipped).
#include <sc2/backends/cuda.hpp>
#include <sc2/sc2.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  if (sc2::cuda::device_count() == 0) {
    std::printf("consumer_cuda: no GPU here, skipped\n");
    return 4;
  }
  sc2::cuda::Context gpu;
  using LM = sc2::CausalLM<sc2::Starcoder2<sc2::ModelConfig, sc2::cuda::Backend>>;
  const auto lm = LM::load(gpu, argv[1]);
  auto cache = lm.make_cache();
  const std::vector<std::int32_t> ids{1, 2, 3};
  sc2::Buffer<float, sc2::Device> logits(static_cast<std::size_t>(3 * lm.vocab_size()));
  lm.forward_all(gpu, ids, cache, sc2::Matrix<float, sc2::Device>(logits.data(), {3, lm.vocab_size()}));
  std::vector<float> host(logits.size());
  sc2::ops::copy(gpu, sc2::Vector<float, sc2::Host>(std::span<float>(host)), logits.view());
  for (float x : host)
    if (!std::isfinite(x)) return 1;
  std::printf("consumer_cuda ok: %zu logits\n", host.size());
  return 0;
}
