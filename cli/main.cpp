// The `mla` command. Exit status: 0 success, 1 a check failed, 2 bad input (arguments, config,
// files), 3 the backend is unavailable, does not support the request, or the request does not
// fit in memory (the device's, a modelled one, or the host limit), 4 device or internal error.
#include <iostream>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "mla/error.hpp"
#include "mla/logging.hpp"

namespace mla::cli {
int& exit_status() {
  static int status = 0;
  return status;
}
}  // namespace mla::cli

namespace {
int exit_code_for(mla::ErrorCode code) {
  switch (code) {
    case mla::ErrorCode::invalid_argument:
    case mla::ErrorCode::invalid_config:
    case mla::ErrorCode::io_error: return 2;
    // Not fitting in memory is a limit of this device (as `mla compare` reports it:
    // "unsupported"), not a fault of the input or of the device.
    case mla::ErrorCode::unsupported:
    case mla::ErrorCode::out_of_memory:
    case mla::ErrorCode::backend_unavailable: return 3;
    default: return 4;
  }
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mla: MLA decode on pluggable backends (cpu, sim_tpu, cuda)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  std::string log_level;
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off (default: $MLA_LOG_LEVEL or warn)");
  app.parse_complete_callback([&] {
    if (!log_level.empty()) mla::set_log_level(log_level);
  });
  mla::cli::add_backends_command(app);
  mla::cli::add_validate_config_command(app);
  mla::cli::add_run_command(app);
  mla::cli::add_bench_command(app);
  mla::cli::add_sweep_command(app);
  mla::cli::add_compare_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const mla::Error& e) {
    std::cerr << "mla: error (" << mla::error_code_name(e.code()) << "): " << e.what() << "\n";
    return exit_code_for(e.code());
  } catch (const std::bad_alloc&) {
    std::cerr << "mla: error (out_of_memory): the host ran out of memory (an allocation failed; --memory-limit "
                 "bounds what a run may use)\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "mla: error (internal): " << e.what() << "\n";
    return 4;
  }
  return mla::cli::exit_status();
}
