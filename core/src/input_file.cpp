#include "mla/input_file.hpp"

#include <cerrno>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mla/error.hpp"

namespace mla {

InputFile::InputFile(const std::string& path, const std::string& what) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail(ErrorCode::io_error, "cannot open " + what + " \"" + path + "\": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    fail(ErrorCode::io_error, "cannot open " + what + " \"" + path + "\": " + std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd_);
    fail(ErrorCode::io_error, "cannot read " + what + " \"" + path + "\": it is a directory");
  }
  regular_ = S_ISREG(st.st_mode);
  size_ = regular_ ? static_cast<uint64_t>(st.st_size) : 0;
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t InputFile::read_some(void* dst, uint64_t n) {
  uint64_t done = 0;
  auto* out = static_cast<char*>(dst);
  while (done < n) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n - done, uint64_t{1} << 30));
    const ssize_t got = ::read(fd_, out + done, chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail(ErrorCode::io_error, "reading \"" + path_ + "\" failed: " + std::strerror(errno));
    if (got == 0) break;
    done += static_cast<uint64_t>(got);
  }
  position_ += done;
  return done;
}

void InputFile::skip(uint64_t n) {
  if (n == 0) return;
  if (regular_ && ::lseek(fd_, static_cast<off_t>(position_ + n), SEEK_SET) >= 0) {
    position_ += n;
    return;
  }
  std::vector<char> sink(static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 20)));
  for (uint64_t left = n; left > 0;) {
    const uint64_t got = read_some(sink.data(), std::min<uint64_t>(left, sink.size()));
    if (got == 0) return;  // the caller notices the short file by position()
    left -= got;
  }
}

std::string read_text_file(const std::string& path, uint64_t max_bytes, const std::string& what) {
  InputFile file(path, what);
  const std::string limit = std::to_string(max_bytes) + " bytes";
  if (file.regular() && file.size() > max_bytes)
    fail(ErrorCode::io_error, path + ": the " + what + " has " + std::to_string(file.size()) +
                                  " bytes, more than the limit of " + limit);
  // One byte past the limit tells an over-long stream from one that ends exactly there.
  std::string text(static_cast<size_t>(file.regular() ? file.size() + 1 : std::min<uint64_t>(max_bytes + 1, 1 << 16)), '\0');
  uint64_t have = 0;
  for (;;) {
    if (have == text.size()) {
      if (have > max_bytes) break;
      text.resize(static_cast<size_t>(std::min<uint64_t>(max_bytes + 1, have * 2)));
    }
    const uint64_t got = file.read_some(text.data() + have, text.size() - have);
    if (got == 0) break;
    have += got;
  }
  if (have > max_bytes)
    fail(ErrorCode::io_error, path + ": the " + what + " goes on past the limit of " + limit +
                                  (file.regular() ? " (it grew while being read)" : " (a stream, not a regular file)"));
  text.resize(static_cast<size_t>(have));
  return text;
}

}  // namespace mla
