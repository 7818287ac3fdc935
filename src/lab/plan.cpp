#include "lab/plan.hpp"

#include <fmt/format.h>

namespace mw::lab {
namespace {

// What a route is for: a destination prefix, attached at a router.
struct Destination {
  std::string prefix;
  int attach;
  bool via_device;
};

}  // namespace

std::vector<std::string> LabPlan::all_namespaces() const {
  std::vector<std::string> out = routers;
  if (!device.empty()) out.push_back(device);
  for (const auto& [name, ns] : vantages) out.push_back(ns);
  for (const auto& s : servers) out.push_back(s.ns);
  return out;
}

bool LabPlan::crosses_device(const std::string& vantage, const PrefixConfig& prefix) const {
  if (device.empty() || !prefix.via_device) return false;
  int from = 0;
  for (const auto& v : config.vantages)
    if (v.name == vantage) from = v.attach;
  int d = config.device_after;
  return (from <= d && prefix.attach > d) || (from > d && prefix.attach <= d);
}

std::string LabPlan::vantage_address(const std::string& vantage) const {
  for (const auto& l : links)
    if (l.b.ns == vantages.at(vantage)) return l.b.address.substr(0, l.b.address.find('/'));
  return {};
}

LabPlan plan_lab(const LabConfig& c) {
  LabPlan p;
  p.config = c;
  p.ns_prefix = "mw" + c.name + "-";
  const int n = c.routers, d = c.device_after;
  for (int i = 1; i <= n; ++i) p.routers.push_back(p.ns_prefix + "r" + std::to_string(i));
  if (d > 0) p.device = p.ns_prefix + "dev";
  auto router = [&](int i) { return p.routers[static_cast<size_t>(i - 1)]; };
  int link_no = 0;
  auto add_link = [&](const std::string& a_ns, const std::string& a_addr, const std::string& b_ns,
                      const std::string& b_addr) {
    std::string base = fmt::format("mw{}l{}", c.name, link_no++);
    p.links.push_back({{a_ns, base + "a", a_addr}, {b_ns, base + "b", b_addr}});
  };
  auto host = [](const std::string& cidr_addr) { return cidr_addr.substr(0, cidr_addr.find('/')); };

  // The chain, and at the device position the bypass plus the two device links.
  for (int i = 1; i < n; ++i) add_link(router(i), fmt::format("10.60.{}.1/24", i), router(i + 1), fmt::format("10.60.{}.2/24", i));
  if (d > 0) {
    add_link(router(d), "10.59.1.1/24", p.device, "10.59.1.2/24");
    add_link(p.device, "10.59.2.1/24", router(d + 1), "10.59.2.2/24");
  }
  // Stubs: vantages, then server namespaces, each on 10.61.<k>.0/24.
  std::vector<Destination> destinations;
  int stub = 0;
  for (const auto& v : c.vantages) {
    std::string ns = p.ns_prefix + v.name;
    p.vantages[v.name] = ns;
    std::string r_addr = fmt::format("10.61.{}.1/24", stub), v_addr = fmt::format("10.61.{}.2/24", stub);
    add_link(router(v.attach), r_addr, ns, v_addr);
    p.routes.push_back({ns, "default", host(r_addr)});
    destinations.push_back({fmt::format("10.61.{}.0/24", stub), v.attach, true});
    ++stub;
  }
  for (const auto& pc : c.prefixes) {
    std::string ns = p.ns_prefix + "s" + pc.name.substr(0, 8);
    p.servers.push_back({ns, pc});
    std::string r_addr = fmt::format("10.61.{}.1/24", stub), s_addr = fmt::format("10.61.{}.2/24", stub);
    add_link(router(pc.attach), r_addr, ns, s_addr);
    p.routes.push_back({ns, "default", host(r_addr)});
    p.routes.push_back({ns, "local " + pc.cidr.to_string(), ""});
    p.routes.push_back({router(pc.attach), pc.cidr.to_string(), host(s_addr)});
    destinations.push_back({fmt::format("10.61.{}.0/24", stub), pc.attach, pc.via_device});
    destinations.push_back({pc.cidr.to_string(), pc.attach, pc.via_device});
    ++stub;
  }
  // The device's own links, so that routers reach the device itself (its
  // probes of servers come from these addresses).
  if (d > 0) {
    destinations.push_back({"10.59.1.0/24", d, true});
    destinations.push_back({"10.59.2.0/24", d + 1, true});
  }
  // Chain routes toward every destination not attached to the router itself.
  for (const auto& dest : destinations) {
    for (int r = 1; r <= n; ++r) {
      if (dest.attach == r) continue;
      std::string via;
      if (dest.attach > r) {  // rightward
        if (r == d) via = dest.via_device ? "10.59.1.2" : fmt::format("10.60.{}.2", r);
        else via = fmt::format("10.60.{}.2", r);
      } else {  // leftward
        if (r == d + 1 && d > 0) via = dest.via_device ? "10.59.2.1" : fmt::format("10.60.{}.1", r - 1);
        else via = fmt::format("10.60.{}.1", r - 1);
      }
      p.routes.push_back({router(r), dest.prefix, via});
    }
    if (d > 0 && dest.prefix.rfind("10.59.", 0) != 0)
      p.routes.push_back({p.device, dest.prefix, dest.attach <= d ? "10.59.1.1" : "10.59.2.2"});
  }
  return p;
}

}  // namespace mw::lab
