#include "http/message.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace mw::http {
namespace {

constexpr size_t kMaxHeaders = 100;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c <= 32 || c >= 127 || std::string_view("()<>@,;:\\\"/[]?={}").find(static_cast<char>(c)) != std::string_view::npos)
      return false;
  return true;
}

// The lines of a head ending in a blank line; nullopt while incomplete.
struct Lines {
  std::vector<std::string_view> lines;
  size_t bytes = 0;
};
tl::expected<std::optional<Lines>, std::string> split_head(std::string_view text) {
  auto end = text.find("\r\n\r\n");
  if (end == std::string_view::npos) return std::optional<Lines>();
  Lines out;
  out.bytes = end + 4;
  std::string_view head = text.substr(0, end);
  for (size_t at = 0; at <= head.size();) {
    size_t eol = head.find("\r\n", at);
    if (eol == std::string_view::npos) eol = head.size();
    out.lines.push_back(head.substr(at, eol - at));
    if (out.lines.size() > kMaxHeaders + 1) return tl::unexpected(fmt::format("more than {} header lines", kMaxHeaders));
    at = eol + 2;
  }
  return std::optional<Lines>(std::move(out));
}

tl::expected<Headers, std::string> parse_fields(const std::vector<std::string_view>& lines) {
  Headers h;
  for (size_t i = 1; i < lines.size(); ++i) {
    auto line = lines[i];
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t'))
      return tl::unexpected(fmt::format("line {}: a folded header (obsolete, refused)", i + 1));
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return tl::unexpected(fmt::format("line {}: a header without ':'", i + 1));
    auto name = line.substr(0, colon);
    if (!is_token(name)) return tl::unexpected(fmt::format("line {}: a header name that is not a token", i + 1));
    auto value = trim(line.substr(colon + 1));
    for (unsigned char c : value)
      if (c == '\r' || c == '\n' || c == 0) return tl::unexpected(fmt::format("line {}: a control byte in a value", i + 1));
    h.emplace_back(std::string(name), std::string(value));
  }
  return h;
}

bool http_version(std::string_view v) { return v == "HTTP/1.1" || v == "HTTP/1.0"; }

}  // namespace

std::optional<std::string> header(const Headers& h, std::string_view name) {
  for (const auto& [k, v] : h)
    if (iequals(k, name)) return v;
  return std::nullopt;
}

bool header_has_token(const Headers& h, std::string_view name, std::string_view token) {
  for (const auto& [k, v] : h) {
    if (!iequals(k, name)) continue;
    std::string_view rest = v;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      if (iequals(trim(rest.substr(0, comma)), token)) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

tl::expected<std::optional<RequestHead>, std::string> parse_request_head(std::string_view text) {
  auto lines = split_head(text);
  if (!lines) return tl::unexpected(lines.error());
  if (!*lines) return std::optional<RequestHead>();
  auto first = (*lines)->lines.front();
  auto sp1 = first.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : first.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || first.find(' ', sp2 + 1) != std::string_view::npos)
    return tl::unexpected(std::string("the request line is not METHOD TARGET VERSION"));
  RequestHead r;
  r.method = first.substr(0, sp1);
  r.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
  r.version = first.substr(sp2 + 1);
  if (!is_token(r.method)) return tl::unexpected("method '" + r.method + "' is not a token");
  if (r.target.empty() || (r.target[0] != '/' && r.target != "*"))
    return tl::unexpected(std::string("the request target is not a path"));
  if (!http_version(r.version)) return tl::unexpected("version '" + r.version + "' is not HTTP/1.0 or HTTP/1.1");
  auto h = parse_fields((*lines)->lines);
  if (!h) return tl::unexpected(h.error());
  r.headers = std::move(*h);
  r.head_bytes = (*lines)->bytes;
  return std::optional<RequestHead>(std::move(r));
}

tl::expected<std::optional<ResponseHead>, std::string> parse_response_head(std::string_view text) {
  auto lines = split_head(text);
  if (!lines) return tl::unexpected(lines.error());
  if (!*lines) return std::optional<ResponseHead>();
  auto first = (*lines)->lines.front();
  auto sp1 = first.find(' ');
  if (sp1 == std::string_view::npos || first.size() < sp1 + 4)
    return tl::unexpected(std::string("the status line is not VERSION CODE REASON"));
  ResponseHead r;
  r.version = first.substr(0, sp1);
  auto code = first.substr(sp1 + 1, 3);
  if (!http_version(r.version)) return tl::unexpected("version '" + r.version + "' is not HTTP/1.0 or HTTP/1.1");
  if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return tl::unexpected("status '" + std::string(code) + "' is not three digits");
  r.status = std::stoi(std::string(code));
  if (first.size() > sp1 + 4) r.reason = first.substr(sp1 + 5);
  auto h = parse_fields((*lines)->lines);
  if (!h) return tl::unexpected(h.error());
  r.headers = std::move(*h);
  r.head_bytes = (*lines)->bytes;
  return std::optional<ResponseHead>(std::move(r));
}

namespace {
tl::expected<std::optional<size_t>, std::string> content_length(const Headers& h) {
  std::optional<size_t> out;
  for (const auto& [k, v] : h) {
    if (!iequals(k, "content-length")) continue;
    if (v.empty() || v.size() > 15 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return tl::unexpected("Content-Length '" + v + "' is not a number");
    size_t n = std::stoull(v);
    if (out && *out != n) return tl::unexpected(std::string("two different Content-Length headers"));
    out = n;
  }
  return out;
}
}  // namespace

tl::expected<BodyFraming, std::string> request_body(const RequestHead& r) {
  if (header(r.headers, "transfer-encoding"))
    return tl::unexpected(std::string("a chunked request body (send Content-Length)"));
  auto n = content_length(r.headers);
  if (!n) return tl::unexpected(n.error());
  if (!*n || **n == 0) return BodyFraming{};
  return BodyFraming{BodyFraming::Kind::length, **n};
}

BodyFraming response_body(const ResponseHead& r, const std::string& method) {
  if (method == "HEAD" || r.status == 204 || r.status == 304 || (r.status >= 100 && r.status < 200)) return {};
  if (header_has_token(r.headers, "transfer-encoding", "chunked")) return {BodyFraming::Kind::chunked, 0};
  auto n = content_length(r.headers);
  if (n && *n) return {BodyFraming::Kind::length, **n};
  return {BodyFraming::Kind::until_close, 0};
}

tl::expected<std::optional<size_t>, std::string> chunked_end(std::string_view text) {
  size_t at = 0;
  for (;;) {
    auto eol = text.find("\r\n", at);
    if (eol == std::string_view::npos) return std::optional<size_t>();
    auto size_text = text.substr(at, eol - at);
    size_text = size_text.substr(0, size_text.find(';'));  // chunk extensions
    size_text = trim(size_text);
    if (size_text.empty() || size_text.size() > 12 ||
        !std::all_of(size_text.begin(), size_text.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); }))
      return tl::unexpected("chunk size '" + std::string(size_text.substr(0, 20)) + "' is not hex");
    size_t n = std::stoull(std::string(size_text), nullptr, 16);
    at = eol + 2;
    if (n == 0) {  // trailers, then a blank line
      for (;;) {
        auto end = text.find("\r\n", at);
        if (end == std::string_view::npos) return std::optional<size_t>();
        if (end == at) return std::optional<size_t>(end + 2);
        at = end + 2;
      }
    }
    if (text.size() - at < n + 2) return std::optional<size_t>();
    if (text.substr(at + n, 2) != "\r\n") return tl::unexpected(std::string("a chunk does not end in CRLF"));
    at += n + 2;
  }
}

bool is_hop_by_hop(const Headers& h, std::string_view name) {
  for (std::string_view hop : {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
                               "te", "trailer", "transfer-encoding", "upgrade"})
    if (iequals(name, hop)) return true;
  return header_has_token(h, "connection", name);
}

std::string serialize(const RequestHead& r) {
  std::string out = r.method + " " + r.target + " " + r.version + "\r\n";
  for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
  return out + "\r\n";
}

std::string serialize(const ResponseHead& r) {
  std::string out = fmt::format("{} {:03d} {}\r\n", r.version, r.status, r.reason);
  for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
  return out + "\r\n";
}

}  // namespace mw::http
