#pragma once
// Helpers shared by the tests: fixture paths, reference tensors, ISA sweeps.

#include <sc2/backends/cpu/context.hpp>
#include <sc2/core/dtype.hpp>
#include <sc2/io/safetensors.hpp>

#include <catch2/catch.hpp>

#include <sc2/io/mapped_file.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

namespace sc2::test {

/// Under CTest, which runs each test case in a process of its own and sets
/// SC2_TEST_SKIP_EXIT, ends the process with code 4, which CTest
/// (SKIP_RETURN_CODE 4) reports as skipped rather than passed. Elsewhere (the
/// test binary run directly, all cases in one process) it returns.
inline void exit_skipped_under_ctest(const char* why) {
  if (std::getenv("SC2_TEST_SKIP_EXIT") == nullptr) return;
  std::printf("skipped: %s\n", why);
  std::fflush(stdout);
  std::_Exit(4);
}

/// Skips the running test case, saying why (see `exit_skipped_under_ctest`).
#define SC2_SKIP_TEST(why)                      \
  do {                                          \
    WARN(why);                                  \
    ::sc2::test::exit_skipped_under_ctest(why); \
    return;                                     \
  } while (0)

/// tests/fixtures/<relative>.
inline std::filesystem::path fixture(const std::string& relative) {
  return std::filesystem::path(SC2_FIXTURES_DIR) / relative;
}

/// A tensor of a reference file, widened to float (F32) or copied (I32 as int32).
struct ReferenceTensor {
  std::vector<std::int64_t> shape;
  std::vector<float> values;
  std::vector<std::int32_t> ints;
};

/// Reads one tensor of a reference safetensors file.
inline ReferenceTensor read_reference(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* t = file.find(name);
  REQUIRE(t != nullptr);
  ReferenceTensor out{t->shape, {}, {}};
  if (t->dtype_name == "I32") {
    out.ints.resize(static_cast<std::size_t>(t->numel()));
    std::memcpy(out.ints.data(), t->bytes.data(), t->bytes.size());
  } else {
    REQUIRE(t->dtype_name == "F32");
    out.values.resize(static_cast<std::size_t>(t->numel()));
    std::memcpy(out.values.data(), t->bytes.data(), t->bytes.size());
  }
  return out;
}

/// `n` values drawn from a normal distribution of standard deviation `scale`.
inline std::vector<float> random_floats(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

/// Largest |a[i] - b[i]|.
inline double max_abs_diff(const float* a, const float* b, std::size_t n) {
  double worst = 0.0;
  for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
  return worst;
}

/// Every float32-class instruction-set path this machine can run (the paths
/// that round activations to bf16 are checked against their own references).
inline std::vector<cpu::Isa> supported_isas() {
  std::vector<cpu::Isa> out{cpu::Isa::scalar};
  for (const cpu::Isa isa : {cpu::Isa::avx2, cpu::Isa::avx512, cpu::Isa::amx})
    if (cpu::isa_supported(isa)) out.push_back(isa);
  return out;
}

/// Every instruction-set path this machine can run, the ones that round
/// activations to bf16 included: each must give a sequence the same bits in
/// any batch.
inline std::vector<cpu::Isa> all_supported_isas() {
  std::vector<cpu::Isa> out = supported_isas();
  for (const cpu::Isa isa : {cpu::Isa::avx512_bf16, cpu::Isa::amx_bf16})
    if (cpu::isa_supported(isa)) out.push_back(isa);
  return out;
}

/// What a program wrote, and how it ended (as `pclose` reports it).
struct ProgramOutput {
  std::string out, err;
  int status = -1;
};

/// Runs `program arguments` through the shell with `stdin_text` on its
/// standard input, capturing standard output and error.
inline ProgramOutput run_program(const std::string& program, const std::string& arguments,
                                 const std::string& stdin_text = "") {
  const auto dir = std::filesystem::temp_directory_path();
  // CTest runs test cases as parallel processes: each call gets its own files.
  static int calls = 0;
  const std::string unique = std::to_string(::getpid()) + "-" + std::to_string(++calls);
  const auto err_path = dir / ("sc2-test-" + unique + ".err"), in_path = dir / ("sc2-test-" + unique + ".in");
  std::ofstream(in_path, std::ios::binary) << stdin_text;
  const std::string command = program + " " + arguments + " < " + in_path.string() + " 2> " + err_path.string();
  ProgramOutput o;
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) o.out.append(buffer, n);
  o.status = pclose(pipe);
  o.err = sc2::read_text_file(err_path);
  std::filesystem::remove(err_path);
  std::filesystem::remove(in_path);
  return o;
}

}  // namespace sc2::test
