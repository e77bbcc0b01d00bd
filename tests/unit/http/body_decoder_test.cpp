#include "frontdoor/http/body_decoder.hpp"

#include <gtest/gtest.h>

#include <string>

namespace frontdoor::http {
namespace {

using Status = ChunkedDecoder::Status;

// Feeds `wire` in pieces of `step` bytes (as a socket would), keeping what
// was not consumed, and returns the decoded body and the final status.
struct Decoded {
  std::string body;
  Status status = Status::need_more;
  std::size_t left = 0;  // bytes after the message
};

Decoded run(std::string_view wire, std::size_t step, ChunkedDecoder::Limits limits = {}) {
  ChunkedDecoder d(limits);
  Decoded out;
  std::string buffered;
  std::size_t fed = 0;
  while (true) {
    if (fed < wire.size()) {
      auto n = std::min(step, wire.size() - fed);
      buffered.append(wire.substr(fed, n));
      fed += n;
    }
    for (;;) {
      auto r = d.decode(buffered);
      out.body.append(r.data);
      buffered.erase(0, r.consumed);
      out.status = r.status;
      if (r.status != Status::data) break;
    }
    if (out.status == Status::done || out.status == Status::error) break;
    if (fed == wire.size()) break;
  }
  out.left = buffered.size() + (wire.size() - fed);
  return out;
}

TEST(ChunkedDecoder, DecodesWholeAndBytewise) {
  const std::string wire = "5\r\nhello\r\n7;ext=1;q=\"x\"\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
  for (std::size_t step : {1u, 2u, 3u, 7u, 1000u}) {
    auto d = run(wire, step);
    EXPECT_EQ(d.status, Status::done) << step;
    EXPECT_EQ(d.body, "hello, world") << step;
    EXPECT_EQ(d.left, 4u) << step;  // the pipelined bytes are not touched
  }
}

TEST(ChunkedDecoder, UpperAndLowerHexAndLeadingZeros) {
  auto d = run("000A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", 4);
  EXPECT_EQ(d.status, Status::done);
  EXPECT_EQ(d.body, "0123456789abcdefghij");
}

TEST(ChunkedDecoder, RejectsMalformedFraming) {
  for (std::string bad : {"\r\n", "g\r\n", "5\nhello\r\n0\r\n\r\n", "5\r\nhelloX\r\n", "5\r\nhello\n0\r\n\r\n",
                          "12345678901234567\r\n", "5\r\r\n", "5;a\x01\r\n", "0\r\nX: a\nb\r\n\r\n",
                          "0\r\nX: \x7f\r\n\r\n", "-1\r\n", "5 x\x01\r\n", "5 junk\r\n",
                          "0\r\nNoColon\r\n\r\n", "0\r\nX: a\r\n folded\r\n\r\n", "0\r\n: v\r\n\r\n"}) {
    auto d = run(bad, 1);
    EXPECT_EQ(d.status, Status::error) << testing::PrintToString(bad);
  }
}

TEST(ChunkedDecoder, SizeLineIsLimited) {
  // An endless extension never ends the line: refused once over the limit,
  // having consumed no more than the limit.
  ChunkedDecoder d({.max_line = 64, .max_trailers = 64});
  std::string line = "1;" + std::string(62, 'a');
  auto r = d.decode(line);
  EXPECT_EQ(r.status, Status::need_more);
  EXPECT_EQ(r.consumed, line.size());
  r = d.decode("a");
  EXPECT_EQ(r.status, Status::error);
  // Stays failed.
  EXPECT_EQ(d.decode("\r\n").status, Status::error);
  EXPECT_TRUE(d.failed());
}

TEST(ChunkedDecoder, TrailerSectionIsLimited) {
  std::string wire = "0\r\n";
  for (int i = 0; i < 100; ++i) wire += "X-Trailer: " + std::string(20, 'v') + "\r\n";
  wire += "\r\n";
  EXPECT_EQ(run(wire, 5, {.max_line = 4096, .max_trailers = 1024}).status, Status::error);
  EXPECT_EQ(run(wire, 5, {.max_line = 4096, .max_trailers = 8192}).status, Status::done);
}

TEST(ChunkedDecoder, WhitespaceBeforeAnExtensionAndLeadingZeros) {
  EXPECT_EQ(run("5 \t; a=b\r\nhello\r\n0\r\n\r\n", 1).body, "hello");
  EXPECT_EQ(run("00000000000000000005\r\nhello\r\n0\r\n\r\n", 3).status, Status::done);
}

TEST(ChunkedDecoder, DigitsBeyondSixtyFourBitsAreRefused) {
  EXPECT_EQ(run("ffffffffffffffff\r\n", 1).status, Status::need_more);  // 16 digits: fits
  EXPECT_EQ(run("10000000000000000\r\n", 1).status, Status::error);     // 17 digits
}

TEST(ChunkedDecoder, CountsBodyBytes) {
  ChunkedDecoder d;
  std::string wire = "3\r\nabc\r\n";
  std::size_t off = 0;
  while (off < wire.size()) off += d.decode(std::string_view(wire).substr(off)).consumed;
  EXPECT_EQ(d.body_bytes(), 3u);
  EXPECT_FALSE(d.done());
}

}  // namespace
}  // namespace frontdoor::http
