// Reading input files with a bound on what is read. A regular file's size is checked before
// anything is read; a stream (a FIFO, /dev/stdin, a character device such as /dev/zero) is
// read only up to the limit of its kind, so an endless stream is an error, not a full memory.
#pragma once

#include <cstdint>
#include <string>

namespace mla {

// Configs and `mla compare` cases files: JSON text a person writes.
inline constexpr uint64_t kMaxTextInputBytes = uint64_t{16} << 20;

// The whole of a text input. `what` names the kind in errors ("config file", "cases file").
// Error(io_error): cannot open, a directory, larger than `max_bytes`.
std::string read_text_file(const std::string& path, uint64_t max_bytes, const std::string& what);

// An input opened for sequential reading (safetensors: header, then tensor data).
class InputFile {
 public:
  InputFile(const std::string& path, const std::string& what);  // Error(io_error) when it cannot be opened
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  [[nodiscard]] bool regular() const { return regular_; }
  [[nodiscard]] uint64_t size() const { return size_; }          // regular files only
  [[nodiscard]] uint64_t position() const { return position_; }  // bytes consumed so far
  // Reads up to `n` bytes; fewer only at the end of the file. Error(io_error) on a read error.
  uint64_t read_some(void* dst, uint64_t n);
  // Moves forward `n` bytes (a seek on regular files, reading and dropping on streams).
  void skip(uint64_t n);

 private:
  std::string path_;
  int fd_ = -1;
  bool regular_ = false;
  uint64_t size_ = 0, position_ = 0;
};

}  // namespace mla
