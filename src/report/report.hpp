// `mitmwatch report`: the store's story in one self-contained HTML file (SVG
// inline, no scripts, no network), or Markdown with the SVGs beside it.
#pragma once

#include "store/views.hpp"

#include <string>
#include <vector>

namespace mw::report {

struct Figure {
  std::string name;  // "share", "hops", ... (file: STEM-NAME.svg)
  std::string svg;
};

struct Report {
  std::string html;
  std::string markdown;  // refers to figures as FIGURE_PREFIX-NAME.svg
  std::vector<Figure> figures;
  store::Json data;  // every view the report drew, for --format json
};

struct ReportOptions {
  std::string series;         // empty: every scan run
  std::string title = "mitmwatch report";
  std::string figure_prefix;  // for Markdown's image links
  bool compare = false;       // add the vantages compared
};

tl::expected<Report, store::Error> build_report(store::Store& s, const tls::TrustStore& trust,
                                                const certs::InterceptorRegistry& registry, const ReportOptions& o);

}  // namespace mw::report
