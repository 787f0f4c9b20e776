// mla::OutputFile, the one output-writing routine: what happens to each kind of path.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <fcntl.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "mla/error.hpp"
#include "mla/output_file.hpp"

namespace fs = std::filesystem;

namespace {

struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("mla_output_file_" + std::to_string(getpid()));
  Scratch() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  [[nodiscard]] std::string operator()(const std::string& name) const { return (dir / name).string(); }
  [[nodiscard]] bool clean() const {  // no temporary file left
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().find(".partial") != std::string::npos) return false;
    return true;
  }
};

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void put(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

auto text(const std::string& s) {
  return [s](std::ostream& out) { out << s; };
}

}  // namespace

TEST_CASE("output files: regular files are replaced whole, links written through", "[output_file]") {
  Scratch s;
  put(s("a.txt"), "old");
  chmod(s("a.txt").c_str(), 0640);
  mla::write_output_file(s("a.txt"), text("new"));
  CHECK(read(s("a.txt")) == "new");
  CHECK((fs::status(s("a.txt")).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read));

  fs::create_symlink("a.txt", s("link.txt"));
  fs::create_symlink("link.txt", s("link2.txt"));  // a chain
  mla::write_output_file(s("link2.txt"), text("through"));
  CHECK(fs::is_symlink(s("link.txt")));
  CHECK(fs::is_symlink(s("link2.txt")));
  CHECK(read(s("a.txt")) == "through");

  fs::create_symlink("loop_b", s("loop_a"));
  fs::create_symlink("loop_a", s("loop_b"));
  CHECK_THROWS_WITH(mla::write_output_file(s("loop_a"), text("x")), Catch::Contains("too many levels of symbolic links"));
  CHECK(s.clean());
}

TEST_CASE("output files: nothing is left when the content cannot be produced", "[output_file]") {
  Scratch s;
  put(s("keep.txt"), "precious");
  CHECK_THROWS_AS(mla::write_output_file(s("keep.txt"), [](std::ostream& out) {
                    out << "half";
                    throw std::runtime_error("the writer failed");
                  }),
                  std::runtime_error);
  CHECK(read(s("keep.txt")) == "precious");
  CHECK(!fs::exists(s("fresh.txt")));
  {
    mla::OutputFile f(s("fresh.txt"));  // staged, never committed
    f.write(text("abc"));
  }
  CHECK(!fs::exists(s("fresh.txt")));
  CHECK(s.clean());
}

TEST_CASE("output files: refusals name the path and the reason", "[output_file]") {
  Scratch s;
  fs::create_directory(s("d"));
  CHECK_THROWS_WITH(mla::OutputFile(s("d")), Catch::Contains("it is a directory"));
  CHECK_THROWS_WITH(mla::OutputFile(s("no/x.txt")), Catch::Contains("folder \"" + s("no") + "\" does not exist"));
  CHECK_THROWS_WITH(mla::OutputFile(""), Catch::Contains("empty"));
  try {
    mla::OutputFile f(s("d"));
  } catch (const mla::Error& e) {
    CHECK(e.code() == mla::ErrorCode::io_error);
  }
}

TEST_CASE("output files: devices, FIFOs and descriptors are written in place", "[output_file]") {
  Scratch s;
  mla::write_output_file("/dev/null", text("gone"));
  CHECK(fs::is_character_file("/dev/null"));
  {
    mla::OutputFile f("/dev/null");
    CHECK(f.is_stream());
    CHECK(f.is_null_device());
  }

  REQUIRE(mkfifo(s("p").c_str(), 0600) == 0);
  std::string got;
  std::thread reader([&] { got = read(s("p")); });
  mla::write_output_file(s("p"), text("through the pipe"));
  reader.join();
  CHECK(got == "through the pipe");
  CHECK(fs::is_fifo(s("p")));

  // A descriptor path is the descriptor itself: appended where it stands, nothing truncated.
  const std::string file = s("fd.txt");
  put(file, "before|");
  const int fd = ::open(file.c_str(), O_WRONLY | O_APPEND);
  REQUIRE(fd >= 0);
  mla::write_output_file("/dev/fd/" + std::to_string(fd), text("after"));
  mla::write_output_file("/proc/self/fd/" + std::to_string(fd), text("|again"));
  ::close(fd);
  CHECK(read(file) == "before|after|again");
  CHECK(mla::file_identity("/dev/null") == mla::file_identity("/dev/null"));
  CHECK(mla::file_identity(s("nothing_here")).empty());
  CHECK(s.clean());
}
