#include "mla/output_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <streambuf>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mla/error.hpp"

namespace fs = std::filesystem;

namespace mla {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

[[noreturn]] void cannot_write(const std::string& path, const std::string& why) {
  fail(ErrorCode::io_error, "cannot write \"" + path + "\": " + why);
}

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// The descriptor a path names directly (/dev/stdout, /dev/fd/3, /proc/self/fd/1), or -1.
// Such a path must not be reopened: reopening /proc/self/fd/1 of a `> file` redirection
// starts at offset 0 and truncates what was already printed.
int descriptor_of(const std::string& p) {
  if (p == "/dev/stdout") return 1;
  if (p == "/dev/stderr") return 2;
  if (p == "/dev/stdin") return 0;
  const std::string self = "/proc/" + std::to_string(getpid()) + "/fd/";
  for (const std::string& prefix : {std::string("/dev/fd/"), std::string("/proc/self/fd/"), self})
    if (p.size() > prefix.size() && p.compare(0, prefix.size(), prefix) == 0 && all_digits(p.substr(prefix.size())))
      return std::atoi(p.c_str() + prefix.size());
  return -1;
}

struct Resolved {
  std::string target;
  int fd = -1;
};

// Follows symbolic links (not those of the folders above, which rename goes through anyway)
// until a descriptor path, a non-link, or a path that does not exist.
Resolved resolve(const std::string& path) {
  std::string p = path;
  for (int hops = 0; hops < 40; ++hops) {
    if (int fd = descriptor_of(p); fd >= 0) return {p, fd};
    struct stat st {};
    if (lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return {p, -1};
    std::error_code ec;
    const fs::path link = fs::read_symlink(p, ec);
    if (ec) cannot_write(path, "cannot read the symbolic link \"" + p + "\": " + ec.message());
    p = link.is_absolute() ? link.string() : (fs::path(p).parent_path() / link).string();
  }
  cannot_write(path, "too many levels of symbolic links");
}

std::string identity_of(const struct stat& st) {
  return std::to_string(static_cast<unsigned long long>(st.st_dev)) + ":" +
         std::to_string(static_cast<unsigned long long>(st.st_ino));
}

bool is_dev_null(const struct stat& st) {
  struct stat null_st {};
  return stat("/dev/null", &null_st) == 0 && null_st.st_dev == st.st_dev && null_st.st_ino == st.st_ino;
}

// New files get the mode a plain open() would give them (0666 less the umask), not the 0600
// of mkstemp. The umask can only be read by setting it; done once, before any thread writes.
mode_t new_file_mode() {
  static const mode_t mask = [] {
    const mode_t m = umask(022);
    umask(m);
    return m;
  }();
  return 0666 & ~mask;
}

// An ostream onto a descriptor the process already has open (not owned, not closed).
class DescriptorBuf : public std::streambuf {
 public:
  explicit DescriptorBuf(int fd) : fd_(fd), buf_(1 << 16) { setp(buf_.data(), buf_.data() + buf_.size()); }
  [[nodiscard]] int error() const { return error_; }

 protected:
  int_type overflow(int_type c) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  bool drain() {
    for (char* p = pbase(); p < pptr();) {
      const ssize_t n = ::write(fd_, p, static_cast<size_t>(pptr() - p));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error_ = n < 0 ? errno : EIO;
        return false;
      }
      p += n;
    }
    setp(buf_.data(), buf_.data() + buf_.size());
    return true;
  }
  int fd_;
  int error_ = 0;
  std::vector<char> buf_;
};

}  // namespace

OutputFile::OutputFile(const std::string& path) : path_(path) {
  if (path.empty()) fail(ErrorCode::invalid_argument, "an output path is empty");
  const Resolved r = resolve(path);
  target_ = r.target;
  if (r.fd >= 0) {
    const int flags = fcntl(r.fd, F_GETFL);
    if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY)
      cannot_write(path, "descriptor " + std::to_string(r.fd) + " is not open for writing");
    struct stat st {};
    if (fstat(r.fd, &st) == 0) {
      identity_ = identity_of(st);
      null_device_ = is_dev_null(st);
    }
    fd_ = r.fd;
    stream_ = true;
    return;
  }
  struct stat st {};
  if (stat(target_.c_str(), &st) == 0) {
    identity_ = identity_of(st);
    if (S_ISDIR(st.st_mode)) cannot_write(path, "it is a directory");
    if (!S_ISREG(st.st_mode)) {  // a device, FIFO or socket: written in place, never replaced
      if (access(target_.c_str(), W_OK) != 0) cannot_write(path, errno_text(errno));
      null_device_ = is_dev_null(st);
      stream_ = true;
      return;
    }
    // Replacing a file the user may not write would succeed (the folder is writable); refuse
    // it as open() would.
    if (access(target_.c_str(), W_OK) != 0) cannot_write(path, errno_text(errno));
    existed_ = true;
    mode_ = st.st_mode & 07777;
  } else if (errno == ENOENT) {
    const fs::path folder = fs::path(target_).parent_path();
    struct stat dir {};
    if (!folder.empty() && (stat(folder.c_str(), &dir) != 0 || !S_ISDIR(dir.st_mode)))
      cannot_write(path, "folder \"" + folder.string() + "\" does not exist");
    std::error_code ec;
    identity_ = fs::weakly_canonical(fs::absolute(target_), ec).string();
    if (ec) identity_ = fs::absolute(target_).string();
  } else {
    cannot_write(path, errno_text(errno));
  }
  // A unique temporary name: a fixed one ("x.partial") could clobber a user's file of that
  // name or a concurrent run's.
  std::string name = target_ + ".partial-XXXXXX";
  const int fd = mkstemp(name.data());
  if (fd < 0) {
    const fs::path folder = fs::path(target_).parent_path();
    cannot_write(path, "cannot create a file in folder \"" + (folder.empty() ? std::string(".") : folder.string()) +
                           "\": " + errno_text(errno));
  }
  close(fd);
  temp_ = name;
}

OutputFile::~OutputFile() {
  if (!temp_.empty()) std::remove(temp_.c_str());
}

void OutputFile::write(const std::function<void(std::ostream&)>& body) {
  if (written_) fail(ErrorCode::internal, "output \"" + path_ + "\" written twice");
  written_ = true;
  if (fd_ >= 0) {
    // What the program printed so far comes first.
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    DescriptorBuf buf(fd_);
    std::ostream out(&buf);
    body(out);
    out.flush();
    if (!out) cannot_write(path_, errno_text(buf.error() ? buf.error() : EIO));
    return;
  }
  std::ofstream out(stream_ ? target_ : temp_, std::ios::binary | std::ios::out | std::ios::trunc);
  if (!out) cannot_write(path_, errno_text(errno));
  body(out);
  out.flush();
  if (!out) fail(ErrorCode::io_error, "writing \"" + path_ + "\" failed (disk full?)");
}

void OutputFile::commit() {
  if (committed_) return;
  if (!written_) fail(ErrorCode::internal, "output \"" + path_ + "\" committed before it was written");
  committed_ = true;
  if (stream_) return;
  if (chmod(temp_.c_str(), existed_ ? mode_ : new_file_mode()) != 0 || std::rename(temp_.c_str(), target_.c_str()) != 0)
    fail(ErrorCode::io_error, "cannot move the finished file into \"" + path_ + "\": " + errno_text(errno));
  temp_.clear();
}

void write_output_file(const std::string& path, const std::function<void(std::ostream&)>& body) {
  OutputFile file(path);
  file.write(body);
  file.commit();
}

std::string file_identity(const std::string& path) {
  struct stat st {};
  if (int fd = descriptor_of(path); fd >= 0) return fstat(fd, &st) == 0 ? identity_of(st) : std::string();
  return stat(path.c_str(), &st) == 0 ? identity_of(st) : std::string();
}

}  // namespace mla
