// Writing an output file without destroying what the path points at, and without leaving a
// partial file behind. The policy (docs/robustness.md, "Output files"):
//
//   - a regular file, or a path that does not exist yet: the content goes to a temporary file
//     next to the file ("<name>.partial-XXXXXX"), which is renamed over it only once complete;
//     an existing file keeps its permission bits;
//   - a symbolic link: followed to its final target, which is then written by these rules (the
//     link stays a link);
//   - /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N: written to that open descriptor, in
//     place (the shell's redirection, pipe or terminal is kept; nothing is truncated);
//   - any other non-regular file (a character device such as /dev/null, a FIFO, a socket):
//     opened and written in place, never replaced;
//   - a directory, a missing folder, a link loop: refused with the reason.
//
// A stream (descriptor, device, FIFO) cannot be taken back, so it is written last by callers
// that write several outputs (see mla::cli::OutputFiles).
#pragma once

#include <functional>
#include <ostream>
#include <string>

#include <sys/types.h>

namespace mla {

class OutputFile {
 public:
  // Resolves `path` and checks it can be written: creates the temporary file for a regular
  // target, checks write access for a stream. Throws Error(io_error) naming `path` and why.
  explicit OutputFile(const std::string& path);
  ~OutputFile();  // removes the temporary file unless commit() ran
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // Writes the content: into the temporary file, or straight into the stream. Call once.
  void write(const std::function<void(std::ostream&)>& body);
  // Moves the temporary file into place (no-op for a stream).
  void commit();
  // The content was written through staging_path() (or into the stream) by someone else.
  void mark_written() { written_ = true; }

  [[nodiscard]] const std::string& path() const { return path_; }
  // The file finally written (the link's target for a symbolic link).
  [[nodiscard]] const std::string& target() const { return target_; }
  [[nodiscard]] bool is_stream() const { return stream_; }
  // The temporary file of a regular target (empty for a stream): where a writer that only
  // takes a path (a backend's trace file) may put the content before commit().
  [[nodiscard]] const std::string& staging_path() const { return temp_; }
  // Identity of the file written, to notice two outputs (or an input and an output) on one
  // file: "dev:inode" when it exists, else the absolute path it will have.
  [[nodiscard]] const std::string& identity() const { return identity_; }
  // True for /dev/null, which may take any number of outputs.
  [[nodiscard]] bool is_null_device() const { return null_device_; }

 private:
  std::string path_, target_, temp_, identity_;
  int fd_ = -1;  // the descriptor of a /dev/fd-style target
  bool stream_ = false, null_device_ = false, existed_ = false, written_ = false, committed_ = false;
  mode_t mode_ = 0;
};

// Writes one file by the rules above: OutputFile(path), write(body), commit().
void write_output_file(const std::string& path, const std::function<void(std::ostream&)>& body);

// "dev:inode" of an existing file (following links), or "" when it does not exist. Used to
// compare inputs with outputs.
std::string file_identity(const std::string& path);

}  // namespace mla
