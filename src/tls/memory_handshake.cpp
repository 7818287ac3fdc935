#include "tls/memory_handshake.hpp"

#include <openssl/err.h>

namespace mw::tls {

MemoryHandshake::MemoryHandshake(const ClientProfile& profile, std::string sni) {
  obs_.sni = std::move(sni);
  ssl_.reset(SSL_new(profile.get()));
  if (!ssl_) return;
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (!in_ || !out_) {
    BIO_free(in_);
    BIO_free(out_);
    in_ = out_ = nullptr;
    ssl_.reset();
    return;
  }
  // An empty memory BIO reads as "retry later", not as end of file.
  BIO_set_mem_eof_return(in_, -1);
  SSL_set_bio(ssl_.get(), in_, out_);
  SSL_set_app_data(ssl_.get(), this);
  SSL_set_info_callback(ssl_.get(), &MemoryHandshake::on_info);
  if (!obs_.sni.empty()) SSL_set_tlsext_host_name(ssl_.get(), obs_.sni.c_str());
  ERR_clear_error();
  SSL_connect(ssl_.get());  // writes the ClientHello, then wants to read
  char* data = nullptr;
  long n = BIO_get_mem_data(out_, &data);
  if (n > 0) hello_.assign(data, data + n);
  (void)BIO_reset(out_);
}

void MemoryHandshake::on_info(const SSL* ssl, int where, int ret) {
  if ((where & SSL_CB_ALERT) && (where & SSL_CB_READ))
    static_cast<MemoryHandshake*>(SSL_get_app_data(ssl))->alert_received_ = ret & 0xff;
}

MemoryHandshake::State MemoryHandshake::feed(std::span<const uint8_t> bytes) {
  if (!ssl_) return State::failed;
  if (!first_byte_seen_ && !bytes.empty()) {
    first_byte_seen_ = true;
    saw_handshake_ = bytes[0] == 0x16;
  }
  if (!bytes.empty()) BIO_write(in_, bytes.data(), static_cast<int>(bytes.size()));
  (void)BIO_reset(out_);  // what the client would send next is never sent
  ERR_clear_error();
  int rc = SSL_connect(ssl_.get());
  // TLS 1.2 hands over the chain before its handshake can finish (that needs
  // our next flight); TLS 1.3 once the server's whole first flight is in.
  if (rc == 1 || SSL_get_peer_cert_chain(ssl_.get()) != nullptr) {
    capture_session(ssl_.get(), obs_);
    if (!obs_.chain.empty() || rc == 1) return State::chain_ready;
  }
  int err = SSL_get_error(ssl_.get(), rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return State::need_more;
  if (alert_received_ >= 0) {
    obs_.error = ProbeError::tls_alert;
    obs_.alert = alert_received_;
    obs_.error_detail = std::string("alert received: ") + SSL_alert_desc_string_long(alert_received_);
    return State::alert;
  }
  obs_.error = ProbeError::protocol_error;
  obs_.error_detail = drain_errors();
  return State::failed;
}

}  // namespace mw::tls
