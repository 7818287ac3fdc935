#include "drivers/notice.hpp"

#include "io/markup.hpp"

#include <fmt/format.h>

namespace mw::drivers {
namespace {

// A contact as a link: mailto: for an address, the URL itself for one.
std::string contact_link(const std::string& contact) {
  bool url = contact.rfind("http://", 0) == 0 || contact.rfind("https://", 0) == 0;
  std::string href = url ? contact : contact.rfind("mailto:", 0) == 0 ? contact : "mailto:" + contact;
  return fmt::format("<a href=\"{}\">{}</a>", io::xml_escape(href), io::xml_escape(contact));
}

}  // namespace

std::string notice_html(const NoticeInfo& info) {
  std::string who = info.organization.empty() ? "" : "<p>Run by " + io::xml_escape(info.organization) + ".</p>";
  std::string title = info.organization.empty() ? "Measurement host" : "Measurement host: " + io::xml_escape(info.organization);
  std::string purpose = info.purpose.empty()
                            ? "We measure HTTPS interception: networks (ISPs, governments) that replace websites' "
                              "real TLS certificates with forged ones, as Kazakhstan did in 2019. Knowing where it "
                              "happens, for which sites and since when lets browsers, sites and the public respond."
                            : io::xml_escape(info.purpose);
  std::string rates;
  if (info.rate > 0 || info.per_target_rate > 0)
    rates = fmt::format("<li>Our scans send at most {} new connections a second in all, and at most {} a second to "
                        "any one address.</li>",
                        info.rate, info.per_target_rate);
  std::string about = info.about.empty()
                          ? ""
                          : fmt::format("<p>More about the study: <a href=\"{0}\">{0}</a></p>", io::xml_escape(info.about));
  return fmt::format(R"(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em}}code{{background:#f3f3f3}}</style>
</head><body>
<h1>This host runs a research measurement</h1>
{who}
<p>{purpose}</p>
<h2>What it sends you</h2>
<ul>
<li>TLS handshakes to port 443: one with a trigger name (SNI) such as a popular site's, one with a control name under
<code>example.com</code>, and a few retries when they differ. Nothing else: no logins, no exploits, no content. Some
scans then send one <code>HEAD /</code> request whose User-Agent names the contact below.</li>
<li>From some hosts, handshakes with a short time-to-live that expire on the way, to find the hop where certificates are
replaced (like traceroute).</li>
{rates}
<li>The software is mitmwatch, open source; it skips reserved address space and everything on its opt-out
list.</li>
</ul>
<h2>Opting out</h2>
<p>Write to {contact} with the address prefixes (CIDR) you want left alone, or the domain names you own that should
never be sent as a test name; we add them to our opt-out list and no scan of ours reaches them again. The list's format
is at <a href="/opt-out.txt">/opt-out.txt</a>. {opted_out} prefixes are on it today.</p>
<h2>Contact</h2>
<p>{contact}</p>
{about}
<p><small>mitmwatch {version}</small></p>
</body></html>
)",
                     fmt::arg("title", title), fmt::arg("who", who), fmt::arg("purpose", purpose), fmt::arg("rates", rates),
                     fmt::arg("contact", contact_link(info.contact)), fmt::arg("opted_out", info.opted_out),
                     fmt::arg("about", about), fmt::arg("version", MW_VERSION));
}

std::string opt_out_format_text(const NoticeInfo& info) {
  return fmt::format(R"(# mitmwatch opt-out list
#
# To be left out of our measurements, send lines like those below to {}.
# One entry per line, then optionally a comment after '#':
#   an address prefix in CIDR (IPv4 or IPv6) or one address: never a target;
#   a domain name: never sent as a test name (SNI), nor swept;
#   *.name: the name and all its subdomains.
# We add them to our list; no scan, sweep or trace of ours uses them again.
#
# 192.0.2.0/24        # Example Networks, requested 2026-12-01
# 2001:db8::/32
# 198.51.100.7
# example.org
# *.example.net
)",
                     info.contact);
}

}  // namespace mw::drivers
