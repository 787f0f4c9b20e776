// Each subcommand registers itself on the app; main.cpp only wires them up.
#pragma once

#include <CLI/CLI.hpp>

namespace mla::cli {

void add_backends_command(CLI::App& app);
void add_validate_config_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_compare_command(CLI::App& app);

// Exit status of the subcommand that ran (set by its callback).
int& exit_status();

}  // namespace mla::cli
