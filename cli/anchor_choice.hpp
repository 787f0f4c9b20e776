// Which FlashMLA table `mla bench --anchors` compares with: the table of the GPU it runs on,
// found from the hardware name the device reports, unless --anchor-gpu names one.
#pragma once

#include <string>

#include "anchors.hpp"

namespace mla::cli {

struct AnchorChoice {
  const AnchorTable* table = nullptr;
  bool same_gpu = false;  // the table was measured on the kind of GPU this device is
  std::string why;        // one clause for the output and the JSON: why this table
};

// requested: "auto", or a table's key ("h100", "h200"). hardware: Device::hardware_name(),
// empty for host and simulated devices; device: the label named instead when it is empty.
// auto takes the table whose GPU name the hardware name contains ("NVIDIA H200" -> h200);
// on any other device the H200 table, and `why` says the ratios are to another GPU's figures.
AnchorChoice choose_anchor_table(const std::string& requested, const std::string& hardware, const std::string& device);

// Error(invalid_argument) naming the table's rows when row `index` (>= 0) is not one of them.
void check_anchor_case(const AnchorTable& table, int index);

// Rows of the longest table: the --anchor-case range before the table is known.
int max_anchor_cases();

}  // namespace mla::cli
