// The lab's interception device: a process in the device namespace that
// watches port-443 flows through NFQUEUE and, on a trigger ClientHello to a
// server with a trusted certificate, takes the client's TCP connection over
// (TCP_REPAIR + IP_TRANSPARENT), answers as the server with a forged chain,
// and relays to the real server over its own TLS connection.
#pragma once

#include <chrono>
#include <string>

namespace mw::lab {

// Runs until SIGTERM. Reads the lab's configuration and CAs from its state
// directory; writes counters to <state>/run/device.json and reads the on/off
// switch from <state>/device-enabled.
int run_device(const std::string& lab_name);

// The on/off switch (`mitmwatch lab device on|off`).
void set_device_enabled(const std::string& lab_name, bool enabled);

// Waits until the running device reports the switch's state in its counters
// (it reads the switch four times a second); false when it has not within
// `limit`. What `lab device on|off` returns after, so that a measurement
// started next sees the new state.
bool wait_device_state(const std::string& lab_name, bool enabled, std::chrono::milliseconds limit);

}  // namespace mw::lab
