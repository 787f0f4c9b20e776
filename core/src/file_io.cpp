#include "mla/file_io.hpp"

#include <cstdio>
#include <fstream>

#include "mla/error.hpp"

namespace mla {

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(ErrorCode::io_error, "cannot write \"" + path + "\"");
    write(out);
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      fail(ErrorCode::io_error, "writing \"" + path + "\" failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(ErrorCode::io_error, "cannot move the finished file into \"" + path + "\"");
  }
}

}  // namespace mla
