// What the report and the dashboard show, read from the store's summary
// tables: one place, so the HTML report and the live page never disagree.
// Each view is plain JSON, the dashboard's API as it is.
#pragma once

#include "certs/registry.hpp"
#include "store/store.hpp"
#include "tls/trust.hpp"

namespace mw::store {

// Counts of runs, records, certificates, events; the vantages and series.
tl::expected<Json, Error> overview(Store& s);
// One point per scan run: at_ms, vantage, series, records, judged, intercepted, share.
tl::expected<Json, Error> series_points(Store& s, const std::string& series = "");
tl::expected<Json, Error> event_list(Store& s, const std::string& series = "");
// Traces' (hop before, hop after) pairs with counts, most frequent first.
tl::expected<Json, Error> hop_pairs(Store& s, int limit = 20);
// Per SNI and vantage: records, intercepted, share, last seen; most intercepted first.
tl::expected<Json, Error> domains(Store& s, int limit = 200);
// Per target and vantage: records, intercepted, last verdict, last seen.
tl::expected<Json, Error> servers(Store& s, int limit = 500);
tl::expected<Json, Error> issuers(Store& s);
// The real (control) and forged chains of an intercepted record, and their diff.
tl::expected<Json, Error> cert_pair(Store& s, int64_t record_id, const tls::TrustStore& trust,
                                    const certs::InterceptorRegistry& registry);
// Vantages side by side (the study's 7 % vs 24 %): per vantage the share of
// scan records intercepted and hosts intercepted; per ordered pair (A, B) the
// hosts intercepted from A, measured from B and never intercepted there; per
// vantage the hops at which traces found the injector.
tl::expected<Json, Error> compare_vantages(Store& s, int list_limit = 50);
// The forgery recipes over up to `max_pairs` distinct forged leaves.
tl::expected<Json, Error> recipes(Store& s, const tls::TrustStore& trust, const certs::InterceptorRegistry& registry,
                                  int max_pairs = 200);

}  // namespace mw::store
