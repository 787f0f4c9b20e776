// Writing a file whole or not at all: the content goes to "<path>.partial" and is renamed into
// place only once complete, so a failed or interrupted write never leaves a partial file.
#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace mla {

// Calls `write` with a binary stream; throws Error(io_error) naming `path` when the file
// cannot be created, written or moved into place (the temporary file is removed then).
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

}  // namespace mla
