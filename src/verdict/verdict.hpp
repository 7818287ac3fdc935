// The one place that decides whether a test handshake was intercepted,
// blocked or clean, by comparing it with a control handshake to the same
// server. Detection does not depend on knowing the interceptor.
#pragma once

#include "tls/observation.hpp"

#include <string>
#include <vector>

namespace mw::verdict {

enum class Verdict { clean, intercepted, blocked, unreachable };

const char* to_string(Verdict v);

struct Comparison {
  Verdict verdict = Verdict::clean;
  std::vector<std::string> reasons;  // short facts that led to the verdict
  // The test came out otherwise than the control: a different chain, or a
  // failure where the control succeeded (or the reverse). A test that fails
  // just as its control did does not differ: the host is down.
  bool differs = false;
};

// One test attempt against one control attempt.
Comparison compare(const tls::Observation& test, const tls::Observation& control);

// HyperQuack's rule, as the scan driver applies it: after a test attempt that
// differs from the control, retry; stop at the first attempt that agrees.
bool needs_retry(const Comparison& c);

// The verdict over every test attempt of one (target, SNI), judged against
// the final control: one forged chain is evidence (interception can be
// partial, per flow), while an error that a retry did not repeat is noise.
Comparison settle(const std::vector<const tls::Observation*>& tests, const tls::Observation& final_control,
                  size_t* intercepted_attempts = nullptr);

}  // namespace mw::verdict
