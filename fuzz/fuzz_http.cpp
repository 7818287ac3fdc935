// HTTP/1.1 heads as the fingerprint server reads them in front of a site: a
// client's request and a backend's response, with their body framing.
#include "http/message.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto r = mw::http::parse_request_head(text); r && *r) {
    (void)mw::http::request_body(**r);
    (void)mw::http::serialize(**r);
    for (const auto& [k, v] : (*r)->headers) (void)mw::http::is_hop_by_hop((*r)->headers, k);
  }
  if (auto r = mw::http::parse_response_head(text); r && *r) {
    auto framing = mw::http::response_body(**r, "GET");
    if (framing.kind == mw::http::BodyFraming::Kind::chunked) (void)mw::http::chunked_end(text.substr((*r)->head_bytes));
    (void)mw::http::serialize(**r);
  }
  (void)mw::http::chunked_end(text);
  return 0;
}
