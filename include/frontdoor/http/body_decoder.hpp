#pragma once
// A chunked body decoder (RFC 9112 §7.1) with explicit limits, used for
// request bodies from clients and response bodies from workers alike: a
// broken or hostile peer on either side cannot make frontdoor buffer without
// bound. Beast's parser puts no limit on the chunk-size line or the trailer
// section (review H2), which is why this is our own.
//
// Pure: it never copies body bytes. decode() looks at the bytes received so
// far and returns the next piece of chunk data as a view into them; the
// caller relays it and drops `consumed` bytes once the relay is done.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace frontdoor::http {

class ChunkedDecoder {
 public:
  struct Limits {
    // The chunk-size line, extensions included, CRLF excluded.
    std::size_t max_line = 4096;
    // The whole trailer section (every field line and its CRLF), which is
    // parsed and dropped: frontdoor never forwards trailers.
    std::size_t max_trailers = 16384;
  };

  enum class Status : std::uint8_t {
    need_more,  // every byte of `in` was used up as framing; send more
    data,       // `data` holds chunk bytes (a prefix of what followed the framing)
    done,       // the last chunk and the trailer section are complete
    error,      // malformed or over a limit: the connection must close
  };

  struct Result {
    Status status = Status::need_more;
    // Bytes of `in` this call used (framing, and `data` when status is data).
    std::size_t consumed = 0;
    std::string_view data;
  };

  ChunkedDecoder() = default;
  explicit ChunkedDecoder(Limits limits) noexcept : limits_(limits) {}

  // Decodes from the start of `in` (the bytes not yet consumed). At most one
  // piece of data per call; call again with the rest for more. After done
  // or error, further calls return the same status and consume nothing.
  Result decode(std::string_view in) noexcept;

  bool done() const noexcept { return state_ == State::done; }
  bool failed() const noexcept { return state_ == State::error; }
  // Decoded body bytes so far.
  std::uint64_t body_bytes() const noexcept { return body_bytes_; }

 private:
  enum class State : std::uint8_t { size, size_ws, ext, size_lf, data, data_cr, data_lf, trailer, trailer_lf, done, error };

  Limits limits_{};
  State state_ = State::size;
  std::uint64_t remaining_ = 0;  // data bytes left in the current chunk
  std::size_t line_ = 0;         // bytes of the current size line so far
  std::size_t trailer_bytes_ = 0;
  std::size_t trailer_line_ = 0;  // bytes of the current trailer line so far
  std::uint8_t digits_ = 0;      // significant hex digits (leading zeros do not count)
  bool saw_digit_ = false;
  bool trailer_colon_ = false;  // the current trailer line has its ':'
  std::uint64_t body_bytes_ = 0;
};

}  // namespace frontdoor::http
