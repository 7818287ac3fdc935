// HTTP/1.1 heads and body framing as the fingerprint server reads them in
// front of a site (src/http/message.cpp).
#include "http/message.hpp"

#include <gtest/gtest.h>

using namespace mw;

TEST(Http, ARequestHeadIsReadOnceWholeAndItsFieldsKeptInOrder) {
  std::string text = "GET /a?b=1 HTTP/1.1\r\nHost: site.test\r\nUser-Agent:  curl/8 \r\nConnection: keep-alive, X-Drop\r\n";
  EXPECT_FALSE(http::parse_request_head(text).value()) << "no blank line yet";
  text += "\r\nbody";
  auto r = http::parse_request_head(text).value().value();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/a?b=1");
  EXPECT_EQ(r.head_bytes, text.size() - 4);
  ASSERT_EQ(r.headers.size(), 3u);
  EXPECT_EQ(http::header(r.headers, "user-agent"), "curl/8");
  EXPECT_TRUE(http::is_hop_by_hop(r.headers, "x-drop")) << "named in Connection";
  EXPECT_TRUE(http::is_hop_by_hop(r.headers, "Keep-Alive"));
  EXPECT_FALSE(http::is_hop_by_hop(r.headers, "Host"));
  EXPECT_EQ(http::request_body(r).value().kind, http::BodyFraming::Kind::none);
  EXPECT_EQ(http::serialize(r), "GET /a?b=1 HTTP/1.1\r\nHost: site.test\r\nUser-Agent: curl/8\r\nConnection: keep-alive, X-Drop\r\n\r\n");
}

TEST(Http, BrokenOrAmbiguousHeadsAreRefusedByName) {
  auto error = [](const std::string& text) {
    auto r = http::parse_request_head(text);
    return r ? std::string() : r.error();
  };
  EXPECT_EQ(error("GET / HTTP/2\r\n\r\n"), "version 'HTTP/2' is not HTTP/1.0 or HTTP/1.1");
  EXPECT_EQ(error("GET /\r\n\r\n"), "the request line is not METHOD TARGET VERSION");
  EXPECT_EQ(error("GET http://x/ HTTP/1.1\r\n\r\n"), "the request target is not a path");
  EXPECT_EQ(error("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"), "line 3: a folded header (obsolete, refused)");
  EXPECT_EQ(error("GET / HTTP/1.1\r\nBad Name: a\r\n\r\n"), "line 2: a header name that is not a token");
  auto two = http::parse_request_head("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").value().value();
  EXPECT_EQ(http::request_body(two).error(), "two different Content-Length headers");
  auto chunked = http::parse_request_head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").value().value();
  EXPECT_FALSE(http::request_body(chunked));
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 150; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  EXPECT_EQ(error(many + "\r\n"), "more than 100 header lines");
}

TEST(Http, AResponsesBodyEndsAsItsHeadSays) {
  auto head = [](const std::string& text) { return http::parse_response_head(text).value().value(); };
  auto close = head("HTTP/1.0 200 OK\r\nServer: x\r\n\r\n");
  EXPECT_EQ(close.status, 200);
  EXPECT_EQ(http::response_body(close, "GET").kind, http::BodyFraming::Kind::until_close);
  EXPECT_EQ(http::response_body(close, "HEAD").kind, http::BodyFraming::Kind::none);
  EXPECT_EQ(http::response_body(head("HTTP/1.1 204 No Content\r\n\r\n"), "GET").kind, http::BodyFraming::Kind::none);
  auto length = http::response_body(head("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"), "GET");
  EXPECT_EQ(length.kind, http::BodyFraming::Kind::length);
  EXPECT_EQ(length.length, 12u);
  EXPECT_EQ(http::response_body(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), "GET").kind,
            http::BodyFraming::Kind::chunked);
  std::string body = "5;x=y\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer: 1\r\n\r\nNEXT";
  EXPECT_EQ(http::chunked_end(body).value(), body.size() - 4);
  EXPECT_FALSE(http::chunked_end(body.substr(0, 20)).value()) << "incomplete";
  EXPECT_FALSE(http::chunked_end("zz\r\n"));
  EXPECT_FALSE(http::chunked_end("5\r\nhelloXX")) << "a chunk not ending in CRLF";
  EXPECT_FALSE(http::parse_response_head("HTTP/1.1 2x0 OK\r\n\r\n"));
}
