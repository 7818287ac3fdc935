// HTTP/1.1 message heads, as the fingerprint server reads a client's request
// and a backend's response when it stands in front of a site. Only what a
// reverse proxy needs: the start line, headers in order, the body's framing.
// Bounded and forgiving like the other parsers: a head that is not HTTP is an
// error that says what is wrong, never an exception.
//
// Written here because cpp-httplib (the dashboard's server) owns its sockets
// and threads, and the fingerprint server must read the request from its own
// TLS connection, in its own event loop, after looking at the ClientHello.
#pragma once

#include <tl/expected.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mw::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct RequestHead {
  std::string method, target, version;  // "GET", "/path?q", "HTTP/1.1"
  Headers headers;
  size_t head_bytes = 0;  // through the blank line
};

struct ResponseHead {
  std::string version, reason;
  int status = 0;
  Headers headers;
  size_t head_bytes = 0;
};

// The value of the first header named `name` (case-insensitive).
std::optional<std::string> header(const Headers& h, std::string_view name);
bool header_has_token(const Headers& h, std::string_view name, std::string_view token);  // "Connection: close"

// nullopt while `text` holds no whole head yet; an error for one that is not HTTP/1.x.
tl::expected<std::optional<RequestHead>, std::string> parse_request_head(std::string_view text);
tl::expected<std::optional<ResponseHead>, std::string> parse_response_head(std::string_view text);

// How the message's body ends.
struct BodyFraming {
  enum class Kind { none, length, chunked, until_close } kind = Kind::none;
  size_t length = 0;
};
// Requests: Content-Length or none (chunked request bodies are refused: the
// caller answers 411). Responses: also chunked, or until the server closes.
tl::expected<BodyFraming, std::string> request_body(const RequestHead& r);
BodyFraming response_body(const ResponseHead& r, const std::string& request_method);
// Where a chunked body ends in `text` (offset past the last chunk and
// trailers), nullopt while incomplete, an error for a malformed one.
tl::expected<std::optional<size_t>, std::string> chunked_end(std::string_view text);

// Hop-by-hop headers (RFC 9110 section 7.6.1) and those named in Connection:
// a proxy does not forward them.
bool is_hop_by_hop(const Headers& h, std::string_view name);
std::string serialize(const RequestHead& r);
std::string serialize(const ResponseHead& r);

}  // namespace mw::http
