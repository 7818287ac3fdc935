// The page a scanning host shows on port 80: who is measuring, why, what the
// probes do, whom to write and how to opt out. The measurement community asks
// this of every Internet-wide scanner (ZMap's "scanning best practices"; the
// Menlo Report's respect for persons): the operator who sees our handshakes
// in a log and visits the source address finds an answer, not a mystery.
#pragma once

#include <string>

namespace mw::drivers {

struct NoticeInfo {
  std::string contact;       // an e-mail address or URL; required
  std::string organization;  // who runs the measurement; may be empty
  std::string about;         // a URL for the study; may be empty
  std::string purpose;       // the study in a sentence or two; empty: the default text
  size_t opted_out = 0;      // prefixes excluded today (--opt-out lists)
  double rate = 0;           // new handshakes per second, as scans run by default (0: not said)
  double per_target_rate = 0;
};

// The whole HTML page; every value escaped.
std::string notice_html(const NoticeInfo& info);
// The opt-out list's format, served as /opt-out.txt: what to send us.
std::string opt_out_format_text(const NoticeInfo& info);

}  // namespace mw::drivers
