// Fuzzes the safetensors loader: any bytes as a .safetensors file. A file that
// opens must describe only tensors whose bytes lie inside the data section,
// match their shape and dtype, are aligned and do not overlap.

#include "fuzz_check.hpp"

#include <sc2/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace {

void check_invariants(const sc2::SafetensorsFile& file) {
  const auto all = file.bytes();
  SC2_FUZZ_CHECK(all.size() >= 8);
  std::uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<std::uint8_t>(all[static_cast<std::size_t>(i)]);
  const std::byte* data = all.data() + 8 + header;
  const std::byte* end = all.data() + all.size();
  const std::byte* previous_end = data;
  for (const sc2::TensorInfo& t : file.tensors()) {
    SC2_FUZZ_CHECK(file.find(t.name) == &t);
    const std::size_t element = sc2::detail::safetensors_element_size(t.dtype_name);
    SC2_FUZZ_CHECK(element != 0);
    std::size_t count = 1;
    for (std::int64_t extent : t.shape) {
      SC2_FUZZ_CHECK(extent >= 0);
      count *= static_cast<std::size_t>(extent);  // cannot overflow: the loader bounded it by the file
    }
    SC2_FUZZ_CHECK(t.bytes.size() == count * element);
    if (t.bytes.empty()) continue;
    SC2_FUZZ_CHECK(t.bytes.data() >= previous_end && t.bytes.data() + t.bytes.size() <= end);
    SC2_FUZZ_CHECK(static_cast<std::size_t>(t.bytes.data() - data) % element == 0);
    previous_end = t.bytes.data() + t.bytes.size();
    // Touch the first and last byte: ASan reports any read outside the mapping.
    volatile std::byte first = t.bytes.front(), last = t.bytes.back();
    (void)first, (void)last;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path path = sc2_fuzz_input_file(data, size);
  try {
    const sc2::SafetensorsFile file = sc2::SafetensorsFile::open(path);
    check_invariants(file);
  } catch (const sc2::Error&) {
    // A clear refusal is the expected outcome for most inputs.
  }
  return 0;
}
