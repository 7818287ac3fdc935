// Turns a lab configuration into namespaces, links, addresses and routes: a
// pure function, so the topology is testable without root. lab/netns.cpp
// carries the plan out with iproute2.
//
// A chain of routers r1..rN; with device_after = d, routers d and d+1 are
// joined twice: through the device namespace (two links) and by a direct
// bypass link. Vantages and server namespaces hang off a router each.
// Traffic to a destination uses the device link or the bypass by that
// destination's `via_device`; vantages' own subnets always use the device, so
// a hijacked flow's replies come back through it.
#pragma once

#include "lab/config.hpp"

#include <map>
#include <string>
#include <vector>

namespace mw::lab {

struct Interface {
  std::string ns;
  std::string name;
  std::string address;  // "10.60.1.1/24"
};

struct Link {
  Interface a, b;
};

struct Route {
  std::string ns;
  std::string destination;  // a prefix, "default", or "local PREFIX"
  std::string via;          // next hop; empty for local routes
};

struct ServerNamespace {
  std::string ns;
  PrefixConfig prefix;
};

struct LabPlan {
  LabConfig config;
  std::string ns_prefix;                      // "mwlab-"
  std::vector<std::string> routers;           // namespaces, r1 first
  std::string device;                         // namespace, empty without a device
  std::map<std::string, std::string> vantages;  // vantage name -> namespace
  std::vector<ServerNamespace> servers;
  std::vector<Link> links;
  std::vector<Route> routes;

  std::vector<std::string> all_namespaces() const;
  // The server prefixes whose traffic from this vantage crosses the device.
  bool crosses_device(const std::string& vantage, const PrefixConfig& prefix) const;
  // The vantage's own address.
  std::string vantage_address(const std::string& vantage) const;
};

LabPlan plan_lab(const LabConfig& config);

}  // namespace mw::lab
