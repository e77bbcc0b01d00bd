#pragma once
// A deliberately small, blocking HTTP/1.1 client on a raw TCP socket, for
// integration tests: it sends exactly the bytes a test gives it (so framing
// attacks can be expressed) and parses responses strictly enough to check
// what a proxy sent back. Every wait is bounded by a deadline; nothing here
// throws on network errors (results say what happened).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace frontdoor::test {

using Clock = std::chrono::steady_clock;
using Headers = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::chrono::milliseconds kDefaultTimeout{5000};

// ASCII case-insensitive equality, for header names.
bool iequals(std::string_view a, std::string_view b) noexcept;

struct HttpResponse {
  int status = 0;
  std::string reason;
  Headers headers;   // in arrival order, names as sent
  std::string body;  // de-chunked
  std::string raw;   // the bytes of this response as received
  bool chunked = false;

  // First value of a header (case-insensitive name), nullopt when absent.
  std::optional<std::string> header(std::string_view name) const;
  std::vector<std::string> header_all(std::string_view name) const;
  std::size_t header_count(std::string_view name) const;
  bool has_header(std::string_view name) const { return header_count(name) > 0; }
};

// One chunk of a chunked body and when its last byte arrived.
struct TimedChunk {
  std::string data;
  Clock::time_point at;
};

class TcpClient {
 public:
  // Connects to 127.0.0.1:port. connected() tells whether it worked.
  explicit TcpClient(std::uint16_t port, std::chrono::milliseconds timeout = kDefaultTimeout);
  ~TcpClient();
  TcpClient(const TcpClient&) = delete;
  TcpClient& operator=(const TcpClient&) = delete;

  bool connected() const noexcept { return fd_ >= 0; }
  void set_timeout(std::chrono::milliseconds t) noexcept { timeout_ = t; }

  // Writes all bytes; false on error or timeout.
  bool send(std::string_view bytes);
  void shutdown_write();
  void close();

  // Reads the next response (a 1xx interim response is returned as such).
  // For a HEAD request pass head_request = true: no body is read.
  // nullopt on timeout, error, or a connection closed before a full response.
  std::optional<HttpResponse> read_response(bool head_request = false);

  // Reads and returns everything until the peer closes; `closed` (if given)
  // says whether EOF/reset was seen before the timeout.
  std::string read_until_closed(std::chrono::milliseconds timeout, bool* closed = nullptr);

  // True when the peer closes (EOF or reset) within the timeout; data that
  // arrives meanwhile is discarded.
  bool wait_closed(std::chrono::milliseconds timeout);

  // Incremental reading of a chunked response: read_head() parses the status
  // line and headers only; then read_chunk() returns each chunk as it arrives
  // (an empty chunk data means the last chunk; trailers are consumed).
  std::optional<HttpResponse> read_head();
  std::optional<TimedChunk> read_chunk();

  // True when bytes (or EOF/reset) can be read within `timeout`; nothing is consumed.
  bool readable(std::chrono::milliseconds timeout);

  // Bytes already received but not yet consumed.
  const std::string& pending() const noexcept { return buf_; }
  // Receives more bytes into pending() (raw protocols after a response head,
  // e.g. WebSocket frames after a 101); false on EOF, error or timeout.
  bool receive_more(std::chrono::milliseconds timeout) { return fill(Clock::now() + timeout); }
  // Hands over the bytes received and not yet consumed (pending() is then empty).
  std::string take_pending() {
    std::string out;
    out.swap(buf_);
    return out;
  }

 private:
  // Receives more bytes into buf_; false on EOF, error or deadline.
  bool fill(Clock::time_point deadline);
  bool read_line(std::string& line, Clock::time_point deadline, std::string* raw);
  bool read_exact(std::size_t n, std::string& out, Clock::time_point deadline, std::string* raw);
  std::optional<HttpResponse> parse_head(Clock::time_point deadline);
  bool read_chunked_body(HttpResponse& r, Clock::time_point deadline);

  int fd_ = -1;
  std::chrono::milliseconds timeout_;
  std::string buf_;
  bool eof_ = false;
};

// Formats a request. Adds "Content-Length" when the body is not empty and the
// headers carry neither Content-Length nor Transfer-Encoding (the body is
// then sent as given, so a test can pass a pre-chunked body).
std::string build_request(std::string_view method, std::string_view target, const Headers& headers,
                          std::string_view body = {});

// One request on a fresh connection; interim 1xx responses are skipped.
// status == 0 when no response arrived.
HttpResponse do_request(std::uint16_t port, std::string_view method, std::string_view target,
                        const Headers& headers, std::string_view body = {},
                        std::chrono::milliseconds timeout = kDefaultTimeout);

// Encodes a body with chunked transfer coding, chunk_size bytes per chunk.
std::string chunk_encode(std::string_view body, std::size_t chunk_size);

// Lower-case hex SHA-256 (OpenSSL EVP).
std::string sha256_hex(std::string_view data);

// A deterministic byte pattern of n bytes (same as the fake worker's large bodies).
std::string pattern_bytes(std::size_t n, std::uint32_t seed = 1);

}  // namespace frontdoor::test
