#pragma once
// A small blocking TLS client (OpenSSL) for integration tests that need to
// see how a TLS connection ends: with the peer's close_notify (SSL_read
// returns 0, SSL_ERROR_ZERO_RETURN) or with a bare TCP FIN/reset, which
// OpenSSL 3 reports as "unexpected eof while reading" (a truncation the
// client can detect). Certificates are not verified: the tests are about
// framing and shutdown, not trust. Every wait is bounded.
#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "support/http_client.hpp"

namespace frontdoor::test {

// How the peer ended the connection, as an OpenSSL client sees it.
enum class TlsEnd {
  open,            // nothing ended it before the timeout
  close_notify,    // SSL_read returned 0 with SSL_ERROR_ZERO_RETURN
  unexpected_eof,  // TCP FIN without close_notify (SSL_ERROR_SSL / SSL_ERROR_SYSCALL at EOF)
  reset,           // ECONNRESET or another socket error
  error,           // another TLS error
};
const char* to_string(TlsEnd e) noexcept;

class TlsClient {
 public:
  // Connects to 127.0.0.1:port and completes the handshake; ok() says whether it worked.
  explicit TlsClient(std::uint16_t port, std::chrono::milliseconds timeout = kDefaultTimeout);
  ~TlsClient();
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  bool ok() const noexcept { return ssl_ != nullptr; }
  const std::string& error() const noexcept { return error_; }

  bool send(std::string_view bytes);

  // Reads one response: the head, then a Content-Length body, a chunked body
  // (raw, not decoded) or, with neither, everything until the end. nullopt
  // when the connection ends (or the timeout passes) before it is complete;
  // end() then says how it ended.
  std::optional<HttpResponse> read_response(bool head_request = false);

  // Reads until the connection ends or `timeout` passes; returns the bytes
  // read (after any already buffered) and records how it ended in end().
  std::string read_until_end(std::chrono::milliseconds timeout);

  TlsEnd end() const noexcept { return end_; }
  // The OpenSSL error text of the end (e.g. "unexpected eof while reading").
  const std::string& end_detail() const noexcept { return end_detail_; }

 private:
  // Reads more into buf_; false once the connection ended or on timeout.
  bool fill(Clock::time_point deadline);

  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::chrono::milliseconds timeout_;
  std::string buf_;
  std::string error_;
  TlsEnd end_ = TlsEnd::open;
  std::string end_detail_;
};

}  // namespace frontdoor::test
