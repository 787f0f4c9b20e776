// The output files of one command, handled as one transaction: every path is checked (and a
// regular file's temporary file created) before the work starts, two outputs may not share a
// file, no output may be one of the command's inputs, and the finished files are moved into
// place together at the end. A command that fails leaves no output and no temporary file.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "mla/output_file.hpp"

namespace mla::cli {

class OutputFiles {
 public:
  // `flag` names the path in errors ("--json"). An empty path means "not asked for".
  void output(const std::string& flag, const std::string& path);
  void input(const std::string& flag, const std::string& path);

  // Before the work. Error(io_error) when an output cannot be written (with the reason),
  // Error(invalid_argument) when two outputs, or an output and an input, are one file.
  void open();

  [[nodiscard]] bool wants(const std::string& flag) const;
  // Where a writer that only takes a path (the simulator's trace) should write `flag`: the
  // temporary file, or the path itself for a stream such as /dev/stdout.
  [[nodiscard]] std::string write_path(const std::string& flag) const;
  // Writes `flag`'s content (into its temporary file, or straight into a stream).
  void write(const std::string& flag, const std::function<void(std::ostream&)>& body);
  // Marks `flag` as written through write_path() by someone else.
  void written_elsewhere(const std::string& flag);
  // Moves every finished file into place. Not called on error: the destructor then removes
  // the temporary files.
  void commit();

 private:
  struct Output {
    std::string flag, path;
    std::unique_ptr<OutputFile> file;
  };
  Output& find(const std::string& flag);
  [[nodiscard]] const Output& find(const std::string& flag) const;
  std::vector<Output> outputs_;
  std::vector<std::pair<std::string, std::string>> inputs_;
};

}  // namespace mla::cli
