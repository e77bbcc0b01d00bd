// Fuzz target: the chunked body decoder (http::ChunkedDecoder, review H2),
// as both relays use it: request bodies from clients and response bodies
// from workers. The input is
//   byte 0: the limits (small ones, to reach every limit check, or the
//           proxy's own: 4096 for the size line, 16 KiB of trailers);
//   byte 1: how the bytes arrive (the seed of the read sizes);
//   the rest: the body, as sent after the head.
// Checked:
//   - each call's result is well formed (consumed within the input, data a
//     non-empty view into it, need_more only once every byte is used, done
//     and error final);
//   - the caller's buffer stays bounded: after need_more nothing is left
//     unconsumed, so an endless size line or trailer cannot grow memory;
//   - the outcome does not depend on how the bytes arrive (one read, or
//     reads of 1..N bytes): same status, same data, same bytes consumed;
//   - when Beast's parser also reads the body to its end, both decode the
//     same bytes from the same framing.
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <string>
#include <string_view>

#include "frontdoor/http/body_decoder.hpp"

namespace bhttp = boost::beast::http;
using frontdoor::http::ChunkedDecoder;
using Status = ChunkedDecoder::Status;

namespace {

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_chunked_body: invariant broken: %s\n", what);
  std::abort();
}

ChunkedDecoder::Limits limits_of(std::uint8_t selector) {
  if (selector & 0x80) return {};  // the proxy's: 4096 and 16 KiB
  // Small limits: 1..16 for the size line, 0..63 for the trailers.
  return {static_cast<std::size_t>(1 + (selector & 0x0F)),
          static_cast<std::size_t>((selector >> 1) & 0x3F)};
}

struct Outcome {
  Status status = Status::need_more;
  std::string data;
  std::size_t consumed = 0;
};

// One call, and what must hold of its result.
ChunkedDecoder::Result decode_checked(ChunkedDecoder& d, std::string_view in) {
  const bool was_final = d.done() || d.failed();
  const auto r = d.decode(in);
  check(r.consumed <= in.size(), "consumed more than it was given");
  if (was_final) check(r.consumed == 0, "consumed bytes after done or error");
  switch (r.status) {
    case Status::need_more:
      check(r.consumed == in.size(), "need_more left bytes unconsumed (the caller would buffer)");
      check(r.data.empty(), "need_more with data");
      break;
    case Status::data:
      check(!r.data.empty(), "data without bytes");
      check(r.data.data() >= in.data() && r.data.data() + r.data.size() == in.data() + r.consumed,
            "data is not the end of the consumed bytes");
      break;
    case Status::done:
      check(d.done() && r.data.empty(), "done without done()");
      break;
    case Status::error:
      check(d.failed() && r.data.empty(), "error without failed()");
      break;
  }
  return r;
}

// Feeds `body` in reads of the given sizes (0: all at once), as a relay
// does: decode what is buffered until need_more, then read more.
Outcome feed(std::string_view body, ChunkedDecoder::Limits limits, std::uint32_t seed) {
  ChunkedDecoder d(limits);
  Outcome out;
  std::string buffered;  // received, not yet consumed
  std::size_t received = 0;
  while (true) {
    // Decode what is buffered.
    while (true) {
      const auto r = decode_checked(d, buffered);
      out.data.append(r.data);  // a view into `buffered`: copied before the erase
      out.consumed += r.consumed;
      buffered.erase(0, r.consumed);
      if (r.status == Status::data) continue;
      out.status = r.status;
      break;
    }
    if (out.status == Status::done || out.status == Status::error) break;
    check(buffered.empty(), "bytes left over while the decoder wants more");
    if (received == body.size()) break;
    std::size_t n = body.size() - received;
    if (seed != 0) {
      seed = seed * 1103515245u + 12345u;
      n = std::min<std::size_t>(n, 1 + (seed >> 16) % 17);
    }
    buffered.append(body.substr(received, n));
    received += n;
  }
  // A final decoder answers the same, consuming nothing.
  if (out.status == Status::done || out.status == Status::error) {
    const auto again = decode_checked(d, "0\r\n\r\n");
    check(again.status == out.status, "a final status changed");
  }
  check(d.body_bytes() == out.data.size(), "body_bytes() differs from the data returned");
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const auto limits = limits_of(data[0]);
  const std::uint32_t seed = data[1];
  const std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);

  const Outcome whole = feed(body, limits, 0);
  const Outcome split = feed(body, limits, seed | 1u);
  check(whole.status == split.status, "the status depends on how the bytes arrive");
  check(whole.data == split.data, "the data depends on how the bytes arrive");
  check(whole.consumed == split.consumed, "the framing depends on how the bytes arrive");

  if (whole.status != Status::done) return 0;
  // The same body after a request head, through Beast's parser.
  std::string message = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::size_t head_size = message.size();
  message.append(body);
  bhttp::request_parser<bhttp::string_body> parser;
  parser.eager(true);
  parser.body_limit(boost::none);
  parser.header_limit(1 << 20);
  boost::system::error_code ec;
  const std::size_t used = parser.put(boost::asio::buffer(message), ec);
  if (ec || !parser.is_done()) return 0;  // Beast is stricter here, or wants more
  check(parser.get().body() == whole.data, "frontdoor and Beast decode different bytes");
  check(used - head_size == whole.consumed, "frontdoor and Beast end the body at different bytes");
  return 0;
}
