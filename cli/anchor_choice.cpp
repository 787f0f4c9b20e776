#include "anchor_choice.hpp"

#include <algorithm>

#include "mla/error.hpp"

namespace mla::cli {

namespace {

// The table a device without figures of its own is compared with: the GPU the project's
// kernels are measured and tuned on now.
constexpr const char* kReferenceKey = "h200";

const AnchorTable* table_by_key(const std::string& key) {
  for (const AnchorTable& t : kAnchorTables)
    if (key == t.key) return &t;
  return nullptr;
}

// The table measured on this hardware ("NVIDIA H100 80GB HBM3" contains "H100"); nullptr
// for other GPUs and for devices that report no hardware name.
const AnchorTable* table_for_hardware(const std::string& hardware) {
  if (hardware.empty()) return nullptr;
  for (const AnchorTable& t : kAnchorTables)
    if (hardware.find(t.gpu) != std::string::npos) return &t;
  return nullptr;
}

std::string keys() {
  std::string s;
  for (const AnchorTable& t : kAnchorTables) s += std::string(s.empty() ? "" : ", ") + t.key;
  return s;
}

}  // namespace

AnchorChoice choose_anchor_table(const std::string& requested, const std::string& hardware, const std::string& device) {
  const std::string self = hardware.empty() ? device : hardware;
  const AnchorTable* own = table_for_hardware(hardware);
  AnchorChoice c;
  if (requested == "auto") {
    c.table = own ? own : table_by_key(kReferenceKey);
    c.same_gpu = own != nullptr;
    c.why = own ? "this device is " + self
                : "this device (" + self + ") is not a GPU with figures of its own, so the " + c.table->gpu +
                      " figures are the reference";
  } else {
    c.table = table_by_key(requested);
    if (!c.table)
      fail(ErrorCode::invalid_argument, "--anchor-gpu: expected auto or one of " + keys() + ", got \"" + requested + "\"");
    c.same_gpu = own == c.table;
    c.why = "--anchor-gpu " + requested + " (this device is " + self + ")";
  }
  if (!c.same_gpu) c.why += ": the ratios compare this device with FlashMLA on an " + std::string(c.table->gpu);
  return c;
}

void check_anchor_case(const AnchorTable& table, int index) {
  const int rows = static_cast<int>(table.cases.size());
  if (index >= rows)
    fail(ErrorCode::invalid_argument, "--anchor-case " + std::to_string(index) + ": the " + table.key +
                                          " table has rows 0 to " + std::to_string(rows - 1));
}

int max_anchor_cases() {
  size_t rows = 0;
  for (const AnchorTable& t : kAnchorTables) rows = std::max(rows, t.cases.size());
  return static_cast<int>(rows);
}

}  // namespace mla::cli
