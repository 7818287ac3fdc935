// `mitmwatch certs`: flags and wiring; the forensics are src/certs/forensics.cpp.
#include "certs/forensics.hpp"
#include "certs/x509.hpp"
#include "cli/progress.hpp"
#include "commands.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace mw::app {
namespace {

struct CertsFlags {
  std::string real, forged, real_chain, forged_chain;
  std::vector<std::string> from_scan;
  std::string ca_file, save, recipe_file;
  std::vector<std::string> certs;
  bool json = false;
};

// A certificate or chain from a file (PEM, or DER) or a base64 DER argument.
certs::Chain load_chain(const std::string& arg, const char* what) {
  std::error_code ec;
  certs::Chain chain;
  if (std::filesystem::is_regular_file(arg, ec)) {
    std::ifstream in(arg, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string bytes = ss.str();
    if (bytes.empty()) throw UsageError(fmt::format("{} {}: empty file", what, arg));
    if (bytes.find("-----BEGIN") != std::string::npos) {
      auto pem = certs::parse_pem(bytes);
      if (!pem) throw UsageError(fmt::format("{} {}: {}", what, arg, pem.error()));
      for (auto& c : *pem) chain.certs.push_back(tls::X509Ref::adopt(std::move(c)));
      return chain;
    }
    auto der = certs::from_der(tls::Der(bytes.begin(), bytes.end()));
    if (!der) throw UsageError(fmt::format("{} {}: neither PEM nor a DER certificate (truncated or not a certificate)", what, arg));
    chain.certs.push_back(tls::X509Ref::adopt(std::move(*der)));
    return chain;
  }
  auto raw = certs::unbase64(arg);
  if (!raw) throw UsageError(fmt::format("{} '{}': no such file, and not base64 DER", what, arg.substr(0, 40)));
  auto der = certs::from_der(*raw);
  if (!der) throw UsageError(fmt::format("{} '{}': base64 that is not a DER certificate", what, arg.substr(0, 40)));
  chain.certs.push_back(tls::X509Ref::adopt(std::move(*der)));
  return chain;
}

void append_chain(certs::Chain& chain, const std::string& file, const char* what) {
  if (file.empty()) return;
  auto more = load_chain(file, what);
  for (auto& c : more.certs) chain.certs.push_back(std::move(c));
}

certs::Chain chain_of(const nlohmann::json& attempt) {
  certs::Chain c;
  for (const auto& b64 : attempt["chain"]) {
    auto der = certs::unbase64(b64.get<std::string>());
    if (!der) break;
    auto cert = certs::from_der(*der);
    if (!cert) break;
    c.certs.push_back(tls::X509Ref::adopt(std::move(*cert)));
  }
  return c;
}

// (real, forged) pairs from scan records: each intercepted record's control
// chain against its first test chain that differs from it.
std::vector<std::pair<std::string, std::pair<certs::Chain, certs::Chain>>> pairs_from_scans(
    const std::vector<std::string>& files) {
  std::vector<std::pair<std::string, std::pair<certs::Chain, certs::Chain>>> out;
  for (const auto& file : files) {
    std::ifstream in(file);
    if (!in) throw UsageError("scan file " + file + ": cannot open file");
    std::string line;
    for (size_t n = 1; std::getline(in, line); ++n) {
      if (line.empty()) continue;
      auto r = nlohmann::json::parse(line, nullptr, false);
      if (r.is_discarded() || !r.is_object() || !r.contains("attempts"))
        throw UsageError(fmt::format("scan file {}:{}: not a scan record", file, n));
      if (r.value("verdict", "") != "intercepted") continue;
      const nlohmann::json* control = nullptr;
      const nlohmann::json* forged = nullptr;
      for (const auto& a : r["attempts"]) {
        if (!a.value("ok", false) || a["chain"].empty()) continue;
        if (!control && a["role"] == "control") control = &a;
      }
      for (const auto& a : r["attempts"])
        if (control && a["role"] == "test" && a.value("ok", false) && !a["chain"].empty() && a["chain"][0] != (*control)["chain"][0]) {
          forged = &a;
          break;
        }
      if (!control || !forged) continue;
      auto real = chain_of(*control), fake = chain_of(*forged);
      if (real.certs.empty() || fake.certs.empty()) continue;
      out.push_back({r.value("ip", r.value("target", "")), {std::move(real), std::move(fake)}});
    }
  }
  return out;
}

tls::TrustStore trust_store(const std::string& ca_file) {
  auto t = tls::TrustStore::from_file(ca_file.empty() ? tls::TrustStore::kSystemBundle : ca_file);
  if (!t) throw UsageError(t.error());
  return std::move(*t);
}

int run_diff(const CertsFlags& f) {
  auto trust = trust_store(f.ca_file);
  auto registry = certs::InterceptorRegistry::builtin();
  std::vector<std::pair<std::string, std::pair<certs::Chain, certs::Chain>>> pairs;
  if (!f.from_scan.empty()) {
    pairs = pairs_from_scans(f.from_scan);
    if (pairs.empty()) throw UsageError("no intercepted records with both chains in the scan file(s)");
  } else {
    if (f.real.empty() || f.forged.empty()) throw UsageError("give REAL and FORGED, or --from-scan FILE");
    auto real = load_chain(f.real, "real certificate");
    auto forged = load_chain(f.forged, "forged certificate");
    append_chain(real, f.real_chain, "--real-chain");
    append_chain(forged, f.forged_chain, "--forged-chain");
    pairs.push_back({"", {std::move(real), std::move(forged)}});
  }
  std::map<std::string, std::set<std::string>> hosts_by_forged_key;
  std::vector<certs::CertDiff> diffs;
  for (auto& [host, chains] : pairs) {
    diffs.push_back(certs::diff(chains.first, chains.second, trust, registry));
    hosts_by_forged_key[diffs.back().forged.key.spki_sha256].insert(host);
  }
  for (size_t i = 0; i < diffs.size(); ++i) {
    const auto& d = diffs[i];
    size_t sharing = hosts_by_forged_key[d.forged.key.spki_sha256].size();
    if (f.json) {
      auto j = certs::to_json(d);
      if (!pairs[i].first.empty()) j["host"] = pairs[i].first;
      j["forged_key_hosts"] = sharing;
      fmt::print("{}\n", j.dump());
    } else {
      if (!pairs[i].first.empty()) fmt::print("== {}\n", pairs[i].first);
      fmt::print("{}", certs::to_text(d));
      if (pairs.size() > 1) fmt::print("forged key   seen for {} host(s) in this input\n", sharing);
      fmt::print("\n");
    }
  }
  return cli::kExitOk;
}

int run_recipe(const CertsFlags& f) {
  if (f.from_scan.empty()) throw UsageError("give --from-scan FILE (scan records with intercepted targets)");
  auto trust = trust_store(f.ca_file);
  auto registry = certs::InterceptorRegistry::builtin();
  std::vector<certs::Pair> pairs;
  for (auto& [host, chains] : pairs_from_scans(f.from_scan))
    pairs.push_back({host, certs::diff(chains.first, chains.second, trust, registry)});
  if (pairs.empty()) throw UsageError("no intercepted records with both chains in the scan file(s)");
  auto recipes = certs::infer_recipes(pairs);
  nlohmann::ordered_json all = nlohmann::ordered_json::array();
  for (const auto& r : recipes) all.push_back(certs::to_json(r));
  if (f.json) {
    for (const auto& r : all) fmt::print("{}\n", r.dump());
  } else {
    fmt::print("{} interception system(s) in {} forged pairs\n\n", recipes.size(), pairs.size());
    for (const auto& r : recipes) fmt::print("{}\n", certs::to_text(r));
  }
  if (!f.save.empty()) {
    std::ofstream out(f.save);
    if (!out) throw std::runtime_error(f.save + ": cannot open for writing");
    out << all.dump(2) << "\n";
    fmt::print(stderr, "recipes saved to {}\n", f.save);
  }
  return cli::kExitOk;
}

int run_match(const CertsFlags& f) {
  std::ifstream in(f.recipe_file);
  if (!in) throw UsageError("--recipe " + f.recipe_file + ": cannot open file");
  auto doc = nlohmann::json::parse(in, nullptr, false);
  std::vector<certs::Recipe> recipes;
  if (doc.is_array())
    for (const auto& j : doc)
      if (auto r = certs::recipe_from_json(j)) recipes.push_back(*r);
  if (recipes.empty()) throw UsageError("--recipe " + f.recipe_file + ": no mitmwatch.recipe/1 recipes in it");
  if (f.certs.empty()) throw UsageError("give certificate files to test");
  int matched = 0;
  for (const auto& file : f.certs) {
    auto chain = load_chain(file, "certificate");
    X509* leaf = chain.certs.front().get();
    std::string verdict = "matches no recipe";
    for (const auto& r : recipes) {
      auto why = certs::recipe_mismatches(r, leaf);
      if (why.empty()) {
        verdict = "matches the recipe of " + r.name;
        ++matched;
        break;
      }
    }
    fmt::print("{}: {} ({})\n", file, verdict, certs::shape_fingerprint(leaf));
  }
  return cli::kExitOk;
}

}  // namespace

Action add_certs_command(CLI::App& app) {
  auto f = std::make_shared<CertsFlags>();
  app.require_subcommand(1);
  app.footer(R"(Examples:
  mitmwatch certs diff real.pem forged.pem
  mitmwatch certs diff --from-scan scan.jsonl --json | jq .validity
  mitmwatch certs recipe --from-scan outside.jsonl inside.jsonl --save kz.recipes.json
  mitmwatch certs match --recipe kz.recipes.json suspicious.pem
  mitmwatch certs shape *.pem)");
  auto* diff = app.add_subcommand("diff", "What an interceptor changed: REAL vs FORGED, or every pair of a scan");
  diff->add_option("real", f->real, "Real certificate: PEM or DER file, or base64 DER");
  diff->add_option("forged", f->forged, "Forged certificate: PEM or DER file, or base64 DER");
  diff->add_option("--real-chain", f->real_chain, "The rest of the real chain (PEM)");
  diff->add_option("--forged-chain", f->forged_chain, "The rest of the forged chain (PEM)");
  auto* recipe = app.add_subcommand("recipe", "Infer each interception system's recipe from a scan's forged pairs");
  recipe->add_option("--save", f->save, "Write the recipes (JSON) to FILE for `certs match`");
  auto* match = app.add_subcommand("match", "Does a certificate follow a saved recipe (whatever its issuer)?");
  match->add_option("--recipe", f->recipe_file, "Recipes saved by `certs recipe --save`")->required();
  match->add_option("certs", f->certs, "Certificate files");
  auto* shape = app.add_subcommand("shape", "Print the structural shape fingerprint of certificates");
  shape->add_option("certs", f->certs, "Certificate files")->required();
  for (auto* sub : {diff, recipe}) {
    sub->add_option("--from-scan", f->from_scan, "Scan records (JSON Lines) to take pairs from")->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    sub->add_option("--ca-file", f->ca_file, "Root store for the chains (default: the system's)");
    sub->add_flag("--json", f->json, "JSON Lines output");
  }
  return [f, diff, recipe, match, shape] {
    if (diff->parsed()) return run_diff(*f);
    if (recipe->parsed()) return run_recipe(*f);
    if (match->parsed()) return run_match(*f);
    if (shape->parsed()) {
      for (const auto& file : f->certs) {
        auto chain = load_chain(file, "certificate");
        fmt::print("{}  {}  {}\n", certs::shape_fingerprint(chain.certs.front().get()), file,
                   certs::shape_raw(chain.certs.front().get()));
      }
      return cli::kExitOk;
    }
    return cli::kExitUsage;
  };
}

}  // namespace mw::app
