#pragma once
/// \file
/// A read-only memory mapping of a whole file (POSIX `mmap`).
///
/// Checkpoint weights are used in place from the mapping: pages are read
/// from disk on first touch and shared with the page cache, so loading is
/// instant and resident memory is the file size, not twice it.

#include <sc2/core/error.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace sc2 {

/// A read-only mapping of a file; movable, unmapped on destruction.
class MappedFile {
public:
  /// An empty mapping.
  MappedFile() = default;

  /// Maps `path` whole; an `sc2::Error` naming the file if it cannot.
  explicit MappedFile(const std::filesystem::path& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    SC2_CHECK(fd >= 0, "cannot open '{}': {}", path.string(), std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      SC2_FAIL("'{}' is not a regular file", path.string());
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      const int err = errno;
      ::close(fd);
      SC2_CHECK(p != MAP_FAILED, "cannot map '{}' ({} bytes): {}", path.string(), size_, std::strerror(err));
      data_ = static_cast<const std::byte*>(p);
    } else {
      ::close(fd);
    }
  }

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  /// Takes over `other`'s mapping.
  MappedFile(MappedFile&& other) noexcept
      : path_(std::move(other.path_)), data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  /// Unmaps this mapping and takes over `other`'s.
  MappedFile& operator=(MappedFile&& other) noexcept {
    if (this != &other) {
      unmap();
      path_ = std::move(other.path_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~MappedFile() { unmap(); }

  /// The file's bytes.
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  /// File size in bytes.
  std::size_t size() const noexcept { return size_; }
  /// The path the file was opened with.
  const std::filesystem::path& path() const noexcept { return path_; }

private:
  void unmap() noexcept {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Reads a whole (small) text file; an `sc2::Error` naming it if it cannot.
inline std::string read_text_file(const std::filesystem::path& path) {
  MappedFile file(path);
  const auto bytes = file.bytes();
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

/// Lets the kernel drop the pages of a read-only file mapping that lie wholly
/// inside `bytes` from this process's memory; reading them again maps them
/// again from the file. A loader calls it once a tensor has been copied into
/// its backend's memory, so resident memory stays at the weights once.
inline void release_mapped_pages(std::span<const std::byte> bytes) noexcept {
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (bytes.empty() || page_size <= 0) return;
  const auto page = static_cast<std::uintptr_t>(page_size);
  const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(bytes.data()) + page - 1) / page * page;
  const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(bytes.data()) + bytes.size()) / page * page;
  if (begin < end) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace sc2
