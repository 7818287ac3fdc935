// A small world of certificate authorities and sites, modelled on the 2019
// Kazakh interception: a "public" root the scanner trusts, a stand-in
// interception root it does not, and sites that are clean, intercepted on
// trigger SNIs, blocked, or untrusted. The demo and the tests build on it.
#pragma once

#include "certs/issue.hpp"
#include "lab/tls_server.hpp"

#include <array>
#include <memory>
#include <string>
#include <string_view>

namespace mw::lab {

// The 37 domains the reference report found to trigger interception.
inline constexpr std::array<std::string_view, 37> kKz2019Triggers = {
    "allo.google.com",      "android.com",          "cdninstagram.com",     "dns.google.com",
    "docs.google.com",      "encrypted.google.com", "facebook.com",         "goo.gl",
    "google.com",           "groups.google.com",    "hangouts.google.com",  "instagram.com",
    "mail.google.com",      "mail.ru",              "messages.android.com", "messenger.com",
    "news.google.com",      "ok.ru",                "picasa.google.com",    "plus.google.com",
    "rukoeb.com",           "sites.google.com",     "sosalkino.tv",         "tamtam.chat",
    "translate.google.com", "twitter.com",          "video.google.com",     "vk.com",
    "vk.me",                "vkuseraudio.net",      "vkuservideo.net",      "www.facebook.com",
    "www.google.com",       "www.instagram.com",    "www.messenger.com",    "www.youtube.com",
    "youtube.com"};

class StandInWorld {
 public:
  StandInWorld();

  const certs::Authority& public_root() const { return public_root_; }
  const certs::Authority& interceptor_root() const { return interceptor_root_; }
  const certs::Authority& interceptor_intermediate() const { return interceptor_ca_; }

  // A site with a trusted chain for `name`.
  std::shared_ptr<Site> clean_site(const std::string& name) const;
  // Like clean_site, but trigger SNIs get a chain forged from the real one
  // (names copied, new RSA-2048 e=3 key, validity -6 h, serial tail
  // replaced, extensions dropped) under the stand-in interception CA.
  std::shared_ptr<Site> intercepted_site(const std::string& name) const;
  // Like clean_site, but trigger SNIs are answered with `action` (reset, alert, silent).
  std::shared_ptr<Site> blocking_site(const std::string& name, SniAction action) const;
  // A self-signed chain nobody trusts.
  std::shared_ptr<Site> self_signed_site(const std::string& name) const;

  std::vector<std::string> triggers() const;

 private:
  certs::Authority public_root_;
  certs::Authority public_ca_;
  certs::Authority interceptor_root_;
  certs::Authority interceptor_ca_;
};

}  // namespace mw::lab
