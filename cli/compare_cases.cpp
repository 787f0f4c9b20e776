#include "compare_cases.hpp"

#include <cstdio>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mla/config.hpp"
#include "mla/error.hpp"
#include "mla/input_file.hpp"
#include "mla/validate.hpp"

namespace mla::cli {

ShapeOptions CompareCase::small_shape() {
  ShapeOptions s;
  s.batch = 1;
  s.heads = 16;
  s.seqlen = 64;
  return s;
}

Tolerance CompareCase::tolerance() const {
  Tolerance t = tolerance_for(problem().dtype);
  if (rel_l2) t.rel_l2 = *rel_l2;
  if (max_abs) t.max_abs = *max_abs;
  if (lse_abs) t.lse_abs = *lse_abs;
  return t;
}

std::string CompareCase::describe() const {
  const ShapeOptions& s = shape;
  std::ostringstream os;
  os << s.variant << " b=" << s.batch << " s_q=" << s.s_q << " h_q=" << s.heads << " h_kv=" << s.kv_heads
     << " len=" << s.seqlen << (s.varlen ? "(var)" : "") << " page=" << s.page_size << (s.causal ? " causal" : "") << " "
     << s.dtype;
  if (quantized()) os << " kv=" << kv_format_name(kv());
  if (s.softmax_scale != 0.0f) os << " scale=" << s.softmax_scale;
  return os.str();
}

namespace {

std::string auto_name(const CompareCase& c) {
  const ShapeOptions& s = c.shape;
  std::ostringstream os;
  os << s.variant << "_b" << s.batch << "_sq" << s.s_q << "_h" << s.heads << "x" << s.kv_heads << "_len" << s.seqlen
     << (s.varlen ? "var" : "") << "_p" << s.page_size << (s.causal ? "_causal" : "") << "_" << s.dtype;
  if (c.quantized()) os << "_kv" << kv_format_name(c.kv());
  if (s.softmax_scale != 0.0f) os << "_scaled";
  return os.str();
}

// Builder for the built-in sets: positional fields in the order of the DESIGN 7 grid.
CompareCase make(const char* variant, int64_t b, int64_t s_q, int64_t h_q, int64_t h_kv, int64_t len, bool varlen,
                 bool causal, int64_t page, const char* dtype, float scale = 0.0f, const char* kv_format = "") {
  CompareCase c;
  c.shape.variant = variant;
  c.shape.batch = b;
  c.shape.s_q = s_q;
  c.shape.heads = h_q;
  c.shape.kv_heads = h_kv;
  c.shape.seqlen = len;
  c.shape.varlen = varlen;
  c.shape.causal = causal;
  c.shape.page_size = page;
  c.shape.dtype = dtype;
  c.shape.softmax_scale = scale;
  c.shape.kv_format = kv_format;
  return c;
}

// A case with a quantized KV format (the scale argument left at its default).
CompareCase make_kv(const char* kv_format, const char* variant, int64_t b, int64_t s_q, int64_t h_q, int64_t h_kv,
                    int64_t len, bool varlen, bool causal, int64_t page, const char* dtype) {
  return make(variant, b, s_q, h_q, h_kv, len, varlen, causal, page, dtype, 0.0f, kv_format);
}

// Every quantized format of the table (plain ones are the dtype axis already).
std::vector<const char*> quantized_formats() {
  std::vector<const char*> names;
  for (const KvFormatTraits& t : kv_formats())
    if (is_quantized(t.format)) names.push_back(t.name);
  return names;
}

// Every value of the DESIGN 7 grid appears at least once, on shapes small enough that cpu +
// two simulated devices finish in seconds: b {1,2,6,64,128}, s_q {1,2,4}, lengths {0,1,20,63,
// 64,65,140,4096,variable}, h_q {1,3,16,64,128}, h_kv {1,2}, causal on/off, pages {1,16,32,64},
// and the dtypes and variants. Large values never meet each other here: that is the full set.
std::vector<CompareCase> quick_cases() {
  std::vector<CompareCase> cases = {
      make("latent", 1, 1, 1, 1, 1, false, false, 64, "bf16"),
      make("latent", 1, 1, 3, 1, 20, false, false, 16, "bf16"),
      make("latent", 2, 1, 16, 1, 63, false, false, 64, "bf16"),
      make("latent", 2, 1, 16, 1, 64, false, false, 64, "bf16"),
      make("latent", 2, 1, 16, 1, 65, false, false, 64, "bf16"),
      make("latent", 2, 1, 16, 1, 0, false, false, 64, "bf16"),
      make("latent", 6, 1, 16, 1, 140, true, false, 16, "bf16"),
      make("latent", 6, 1, 16, 1, 20, false, false, 16, "bf16"),
      make("latent", 2, 2, 16, 1, 20, false, true, 16, "bf16"),
      make("latent", 2, 4, 16, 2, 65, false, true, 64, "bf16"),
      make("latent", 1, 4, 16, 1, 2, false, true, 64, "bf16"),  // s_q > length: fully masked queries
      make("latent", 6, 4, 16, 1, 20, true, true, 32, "bf16"),
      make("latent", 6, 2, 16, 2, 140, true, false, 32, "bf16"),
      make("latent", 2, 1, 16, 2, 140, false, false, 1, "bf16"),
      make("latent", 1, 1, 64, 1, 140, false, false, 64, "bf16"),
      make("latent", 1, 1, 128, 1, 64, false, false, 64, "bf16"),
      make("latent", 1, 1, 16, 1, 4096, false, false, 64, "bf16"),
      make("latent", 64, 1, 16, 1, 63, true, false, 16, "bf16"),
      make("latent", 128, 2, 1, 1, 20, false, true, 64, "bf16"),
      make("latent", 2, 1, 16, 1, 63, false, false, 64, "bf16", 0.1f),
      make("latent", 2, 1, 16, 1, 140, false, false, 64, "fp16"),
      make("latent", 2, 2, 3, 1, 65, false, true, 16, "fp32"),
      make("absorb", 2, 1, 16, 1, 140, false, false, 64, "bf16"),
      make("absorb", 1, 2, 3, 1, 65, false, true, 16, "fp16"),
      make("absorb", 2, 1, 16, 2, 64, true, false, 32, "bf16"),
  };
  // Each quantized KV format on three shapes: one page boundary crossed and a partial page,
  // the absorb variant with causal s_q 2, and two KV heads with variable lengths on small pages.
  for (const char* kv : quantized_formats()) {
    cases.push_back(make_kv(kv, "latent", 2, 1, 16, 1, 140, false, false, 64, "bf16"));
    cases.push_back(make_kv(kv, "absorb", 1, 2, 16, 1, 65, false, true, 16, "bf16"));
    cases.push_back(make_kv(kv, "latent", 6, 1, 16, 2, 63, true, false, 16, "fp16"));
  }
  return cases;
}

// The whole grid of DESIGN 7 on its three main axes (batch x length x h_q, 225 cases); the
// minor axes (s_q, causal, h_kv, page size, dtype, variant) rotate with the case index so every
// value meets every main-axis value somewhere. Slow on a small host: the b=128, len=4096,
// h_q=128 cases run ~150 GFLOP of float64 reference each.
std::vector<CompareCase> full_cases() {
  std::vector<CompareCase> out;
  const int64_t batches[] = {1, 2, 6, 64, 128};
  struct Len {
    int64_t len;
    bool var;
  };
  const Len lengths[] = {{0, false},  {1, false},   {20, false},  {63, false},  {64, false},
                         {65, false}, {140, false}, {4096, false}, {1024, true}};
  const int64_t heads[] = {1, 3, 16, 64, 128};
  const int64_t s_qs[] = {1, 2, 4};
  const int64_t pages[] = {64, 16, 32, 1};
  const char* dtypes[] = {"bf16", "bf16", "bf16", "fp16", "bf16", "fp32"};
  size_t k = 0;
  for (int64_t b : batches)
    for (const Len& l : lengths)
      for (int64_t h : heads) {
        const int64_t s_q = s_qs[k % 3];
        const bool causal = (k / 3) % 2 == 1;
        const int64_t h_kv = (h % 2 == 0 && k % 4 == 1) ? 2 : 1;
        int64_t page = pages[k % 4];
        if (page == 1 && (l.len > 140 || b > 6)) page = 64;  // page 1 on long caches only costs time
        const char* dtype = dtypes[k % 6];
        const char* variant = k % 7 == 3 ? "absorb" : "latent";
        out.push_back(make(variant, b, s_q, h, h_kv, l.len, l.var, causal, page, dtype));
        ++k;
      }
  // Each quantized KV format over batch {1, 6, 64} x every length, h_q and the minor axes
  // rotating as above (81 cases): the formats meet every length and page boundary.
  for (const char* kv : quantized_formats())
    for (int64_t b : {int64_t{1}, int64_t{6}, int64_t{64}})
      for (const Len& l : lengths) {
        const int64_t h = heads[k % 5];
        const int64_t page = pages[k % 3];  // 64, 16, 32: page 1 only costs time here
        out.push_back(make_kv(kv, k % 7 == 3 ? "absorb" : "latent", b, s_qs[k % 3], h, (h % 2 == 0 && k % 4 == 1) ? 2 : 1,
                              l.len, l.var, (k / 3) % 2 == 1, page, dtypes[k % 6]));
        ++k;
      }
  return out;
}

std::vector<CompareCase> read_case_file(const std::string& path) {
  const std::string text = read_text_file(path, kMaxTextInputBytes, "cases file");
  nlohmann::json doc;
  try {
    doc = parse_json(text);
  } catch (const nlohmann::json::exception& e) {
    const std::string what = e.what();  // "[json.exception.parse_error.101] parse error at line 1, ..."
    const auto pos = what.find("] ");
    fail(ErrorCode::invalid_argument,
         path + ": cases file is not valid JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)));
  }
  std::vector<ConfigIssue> issues;
  std::vector<CompareCase> out;
  ConfigReader top(doc, "", &issues);
  top.string("description", "");
  top.mark_known("cases");
  if (!doc.is_object() || !doc.contains("cases") || !doc["cases"].is_array() || doc["cases"].empty()) {
    if (doc.is_object()) top.add_issue("cases", "expected a non-empty array of case objects");
  } else {
    const auto& list = doc["cases"];
    for (size_t i = 0; i < list.size(); ++i) {
      ConfigReader r(list[i], "/cases/" + std::to_string(i), &issues);
      CompareCase c;
      c.name = r.string("name", "");
      c.shape.variant = r.choice("variant", c.shape.variant, {"latent", "absorb"});
      c.shape.batch = r.integer("batch", c.shape.batch, 1, 1 << 20);
      c.shape.s_q = r.integer("s_q", c.shape.s_q, 1, 1024);
      c.shape.heads = r.integer("heads", c.shape.heads, 1, 4096);
      c.shape.kv_heads = r.integer("kv_heads", c.shape.kv_heads, 1, 4096);
      c.shape.seqlen = r.integer("seqlen", c.shape.seqlen, 0, 1 << 24);
      c.shape.varlen = r.boolean("varlen", c.shape.varlen);
      c.shape.causal = r.boolean("causal", c.shape.causal);
      c.shape.page_size = r.integer("page_size", c.shape.page_size, 1, 1 << 20);
      c.shape.dtype = r.choice("dtype", c.shape.dtype, {"bf16", "fp16", "fp32"});
      std::vector<std::string> formats;
      for (const KvFormatTraits& t : kv_formats()) formats.emplace_back(t.name);
      if (r.has("kv_format")) c.shape.kv_format = r.choice("kv_format", "bf16", formats);
      c.shape.softmax_scale = static_cast<float>(r.number("softmax_scale", 0.0, -1e6, 1e6));
      c.seed_given = r.has("seed");
      if (c.seed_given) c.shape.seed = static_cast<uint64_t>(r.integer("seed", 1, 0, INT64_MAX));
      ConfigReader tol = r.object("tolerance");
      for (const char* key : {"rel_l2", "max_abs", "lse_abs"})
        if (tol.has(key)) {
          double v = tol.number(key, 0.0, 0.0, 1e300);
          if (std::string(key) == "rel_l2") c.rel_l2 = v;
          else if (std::string(key) == "max_abs") c.max_abs = v;
          else c.lse_abs = v;
        } else {
          tol.mark_known(key);
        }
      tol.finish();
      r.finish();
      try {
        validate_problem(c.problem());  // h_q % h_kv and friends, before any memory is touched
      } catch (const Error& e) {
        issues.push_back({"/cases/" + std::to_string(i), e.what()});
      }
      out.push_back(c);
    }
  }
  top.finish();
  if (!issues.empty()) {
    std::string text;
    for (const auto& issue : issues) text += (text.empty() ? "" : "; ") + issue.to_string();
    fail(ErrorCode::invalid_argument, path + ": invalid cases file: " + text);
  }
  return out;
}

}  // namespace

std::vector<CompareCase> load_cases(const std::string& which, uint64_t base_seed) {
  std::vector<CompareCase> cases;
  bool from_file = false;
  if (which == "quick") cases = quick_cases();
  else if (which == "full") cases = full_cases();
  else {
    cases = read_case_file(which);
    from_file = true;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < cases.size(); ++i) {
    CompareCase& c = cases[i];
    // Cases without a seed of their own get base + index, so --seed moves them all.
    if (!c.seed_given) c.shape.seed = base_seed + i;
    if (c.name.empty()) c.name = auto_name(c);
    if (!names.insert(c.name).second) {
      if (from_file) fail(ErrorCode::invalid_argument, which + ": two cases are named \"" + c.name + "\"");
      c.name += "_" + std::to_string(i);  // built-in sets: keep names unique without failing
      names.insert(c.name);
    }
  }
  return cases;
}

}  // namespace mla::cli
