#include "output_files.hpp"

#include <map>

#include "mla/error.hpp"

namespace mla::cli {

void OutputFiles::output(const std::string& flag, const std::string& path) {
  if (!path.empty()) outputs_.push_back({flag, path, nullptr});
}

void OutputFiles::input(const std::string& flag, const std::string& path) {
  if (!path.empty()) inputs_.emplace_back(flag, path);
}

void OutputFiles::open() {
  std::map<std::string, const Output*> seen;
  for (Output& o : outputs_) {
    try {
      o.file = std::make_unique<OutputFile>(o.path);
    } catch (const Error& e) {
      throw Error(e.code(), o.flag + ": " + e.what());
    }
    if (o.file->is_null_device()) continue;  // /dev/null takes any number of outputs
    auto [it, fresh] = seen.emplace(o.file->identity(), &o);
    if (!fresh)
      fail(ErrorCode::invalid_argument, it->second->flag + " and " + o.flag + " name the same file (\"" +
                                            it->second->path + "\", \"" + o.path + "\"); give each output its own path");
  }
  for (const auto& [flag, path] : inputs_) {
    const std::string id = file_identity(path);
    if (id.empty()) continue;  // reading it will say what is wrong
    if (auto it = seen.find(id); it != seen.end())
      fail(ErrorCode::invalid_argument, it->second->flag + " names the same file as " + flag + " (\"" + path +
                                            "\"): writing it would replace the input");
  }
}

OutputFiles::Output& OutputFiles::find(const std::string& flag) {
  for (Output& o : outputs_)
    if (o.flag == flag) {
      if (!o.file) fail(ErrorCode::internal, flag + ": output used before OutputFiles::open()");
      return o;
    }
  fail(ErrorCode::internal, flag + ": not an output of this command");
}

const OutputFiles::Output& OutputFiles::find(const std::string& flag) const {
  return const_cast<OutputFiles*>(this)->find(flag);
}

bool OutputFiles::wants(const std::string& flag) const {
  for (const Output& o : outputs_)
    if (o.flag == flag) return true;
  return false;
}

std::string OutputFiles::write_path(const std::string& flag) const {
  const Output& o = find(flag);
  return o.file->is_stream() ? o.path : o.file->staging_path();
}

void OutputFiles::write(const std::string& flag, const std::function<void(std::ostream&)>& body) {
  Output& o = find(flag);
  try {
    o.file->write(body);
  } catch (const Error& e) {
    throw Error(e.code(), flag + ": " + e.what());
  }
}

void OutputFiles::written_elsewhere(const std::string& flag) { find(flag).file->mark_written(); }

void OutputFiles::commit() {
  for (Output& o : outputs_) {
    try {
      o.file->commit();
    } catch (const Error& e) {
      throw Error(e.code(), o.flag + ": " + e.what());
    }
  }
}

}  // namespace mla::cli
