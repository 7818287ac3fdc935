#include "fingerprint/sni.hpp"

namespace mw::fingerprint {
namespace {

// A cursor that refuses to read past its end.
struct SniReader {
  const uint8_t* p;
  size_t left;
  bool ok = true;

  uint32_t u(size_t n) {
    if (!ok || left < n) {
      ok = false;
      return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
    p += n;
    left -= n;
    return v;
  }
  void skip(size_t n) {
    if (!ok || left < n) {
      ok = false;
      return;
    }
    p += n;
    left -= n;
  }
  SniReader sub(size_t n) {
    if (!ok || left < n) {
      ok = false;
      return {p, 0, false};
    }
    SniReader r{p, n};
    p += n;
    left -= n;
    return r;
  }
};

}  // namespace

SniResult client_hello_sni(const uint8_t* data, size_t size) {
  SniResult out;
  SniReader rec{data, size};
  if (rec.u(1) != 22) return out;  // handshake record
  uint32_t major = rec.u(1);
  rec.u(1);
  uint32_t rec_len = rec.u(2);
  if (!rec.ok || major != 3) return out;
  SniReader body{rec.p, rec.left < rec_len ? rec.left : rec_len};
  if (body.u(1) != 1) return out;  // client_hello
  uint32_t hello_len = body.u(3);
  if (!body.ok) {
    out.status = HelloStatus::incomplete;
    return out;
  }
  if (hello_len > body.left) {
    out.status = HelloStatus::incomplete;
    return out;
  }
  SniReader h = body.sub(hello_len);
  h.skip(2 + 32);            // version, random
  h.skip(h.u(1));            // session id
  h.skip(h.u(2));            // cipher suites
  h.skip(h.u(1));            // compression methods
  if (!h.ok) return out;
  out.status = HelloStatus::ok;
  if (h.left == 0) return out;  // no extensions
  SniReader exts = h.sub(h.u(2));
  while (exts.ok && exts.left >= 4) {
    uint32_t type = exts.u(2);
    SniReader ext = exts.sub(exts.u(2));
    if (!exts.ok) break;
    if (type != 0) continue;  // server_name
    SniReader list = ext.sub(ext.u(2));
    while (list.ok && list.left >= 3) {
      uint32_t name_type = list.u(1);
      SniReader name = list.sub(list.u(2));
      if (list.ok && name_type == 0 && name.left > 0) {
        out.sni = std::string(reinterpret_cast<const char*>(name.p), name.left);
        return out;
      }
    }
  }
  return out;
}

}  // namespace mw::fingerprint
