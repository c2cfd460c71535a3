// Fuzzes the GGUF reader: any bytes as a .gguf file. A file that opens must
// describe only tensors whose bytes lie inside the file, match their extents
// and type, and do not overlap, and only strings that lie inside the file.

#include "fuzz_check.hpp"

#include <sc2/io/gguf.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace {

void check_invariants(const sc2::GgufFile& file) {
  const auto all = file.bytes();
  const std::byte* end = all.data() + all.size();
  const std::byte* previous_end = nullptr;
  for (const sc2::GgufTensor& t : file.tensors()) {
    SC2_FUZZ_CHECK(file.find_tensor(t.name) == &t);
    SC2_FUZZ_CHECK(!t.shape.empty() && t.shape.size() <= sc2::kGgufMaxDims);
    std::size_t count = 1;
    for (std::int64_t extent : t.shape) {
      SC2_FUZZ_CHECK(extent >= 1);
      count *= static_cast<std::size_t>(extent);  // cannot overflow: the reader bounded it by the file
    }
    SC2_FUZZ_CHECK(t.shape.back() % t.type.block == 0);
    SC2_FUZZ_CHECK(t.bytes.size() == count / static_cast<std::size_t>(t.type.block) * t.type.block_bytes);
    SC2_FUZZ_CHECK(t.bytes.data() >= all.data() && t.bytes.data() + t.bytes.size() <= end);
    SC2_FUZZ_CHECK(!previous_end || t.bytes.data() >= previous_end);
    previous_end = t.bytes.data() + t.bytes.size();
    // Touch the first and last byte: ASan reports any read outside the mapping.
    volatile std::byte first = t.bytes.front(), last = t.bytes.back();
    (void)first, (void)last;
  }
  for (const auto& [key, value] : file.metadata()) {
    if (value.type == sc2::GgufValueType::string && !value.text.empty())
      SC2_FUZZ_CHECK(value.text.data() >= reinterpret_cast<const char*>(all.data()) &&
                     value.text.data() + value.text.size() <= reinterpret_cast<const char*>(end));
    for (std::string_view s : value.strings)
      if (!s.empty())
        SC2_FUZZ_CHECK(s.data() >= reinterpret_cast<const char*>(all.data()) &&
                       s.data() + s.size() <= reinterpret_cast<const char*>(end));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path path = sc2_fuzz_input_file(data, size);
  try {
    const sc2::GgufFile file = sc2::GgufFile::open(path);
    check_invariants(file);
  } catch (const sc2::Error&) {
    // A clear refusal is the expected outcome for most inputs.
  }
  return 0;
}
