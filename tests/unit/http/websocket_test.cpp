// FrameTracker and Close frames (RFC 6455 §5.2), without sockets.
#include "frontdoor/http/websocket.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace frontdoor::http {
namespace {

// One frame: opcode 2 (binary), FIN, payload of `n` bytes, masked or not.
std::string frame(std::uint64_t n, bool masked, char fill = 'x') {
  std::string f;
  f.push_back(static_cast<char>(0x82));
  const char mask_bit = masked ? static_cast<char>(0x80) : 0;
  if (n < 126) {
    f.push_back(static_cast<char>(mask_bit | static_cast<char>(n)));
  } else if (n <= 0xffff) {
    f.push_back(static_cast<char>(mask_bit | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xff));
  } else {
    f.push_back(static_cast<char>(mask_bit | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
  if (masked) f.append("\x01\x02\x03\x04", 4);
  f.append(n, fill);
  return f;
}

TEST(FrameTracker, FollowsWholeFramesOfEverySize) {
  for (bool masked : {false, true}) {
    for (std::uint64_t n : {0ull, 1ull, 125ull, 126ull, 65535ull, 65536ull, 200000ull}) {
      FrameTracker t;
      auto f = frame(n, masked);
      EXPECT_EQ(t.advance(f, false), f.size());
      EXPECT_TRUE(t.at_boundary()) << n << (masked ? " masked" : "");
    }
  }
}

TEST(FrameTracker, HeadersAndPayloadsSplitAnywhere) {
  const std::string stream = frame(300, true) + frame(0, true) + frame(70000, false) + frame(5, false);
  const std::size_t ends[] = {frame(300, true).size(), frame(300, true).size() + frame(0, true).size(),
                              stream.size() - frame(5, false).size(), stream.size()};
  for (std::size_t piece : {1u, 2u, 3u, 7u, 13u, 4096u}) {
    FrameTracker t;
    for (std::size_t at = 0; at < stream.size(); at += piece) {
      auto part = std::string_view(stream).substr(at, piece);
      EXPECT_EQ(t.advance(part, false), part.size());
      const std::size_t end = at + part.size();
      bool boundary = false;
      for (auto e : ends) boundary |= e == end;
      EXPECT_EQ(t.at_boundary(), boundary) << "piece " << piece << " at " << end;
    }
  }
}

TEST(FrameTracker, StopsAtTheNextBoundaryWhenAsked) {
  const std::string a = frame(10, false), b = frame(20, false);
  const std::string stream = a + b;
  FrameTracker t;
  EXPECT_EQ(t.advance(stream, true), 0u);  // already at one: nothing more may pass
  EXPECT_EQ(t.advance(std::string_view(stream).substr(0, 3), false), 3u);  // mid-frame now
  EXPECT_FALSE(t.at_boundary());
  EXPECT_EQ(t.advance(std::string_view(stream).substr(3), true), a.size() - 3);  // the rest of the first frame
  EXPECT_TRUE(t.at_boundary());
  EXPECT_EQ(t.advance(std::string_view(stream).substr(a.size()), true), 0u);
}

TEST(FrameTracker, AnEmptyFrameIsABoundaryRightAfterItsHeader) {
  const std::string stream = frame(0, true) + frame(4, true);
  FrameTracker t;
  EXPECT_EQ(t.advance(std::string_view(stream).substr(0, 1), false), 1u);
  EXPECT_EQ(t.advance(std::string_view(stream).substr(1), true), frame(0, true).size() - 1);
  EXPECT_TRUE(t.at_boundary());
}

TEST(FrameTracker, AFrameThatNeverEndsNeverGivesABoundary) {
  FrameTracker t;
  auto f = frame(1u << 20, false);
  EXPECT_EQ(t.advance(std::string_view(f).substr(0, 1), false), 1u);     // mid-header
  EXPECT_EQ(t.advance(std::string_view(f).substr(1, 99), true), 99u);    // no boundary in sight: all of it
  EXPECT_FALSE(t.at_boundary());
  // A length with the top bit set (invalid) is followed as given: no boundary.
  std::string bad("\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff", 10);
  FrameTracker u;
  EXPECT_EQ(u.advance(bad, false), bad.size());
  EXPECT_EQ(u.advance(std::string(1000, 'x'), true), 1000u);
  EXPECT_FALSE(u.at_boundary());
}

TEST(CloseFrame, UnmaskedToAClient) {
  std::string out;
  append_close_frame(out, kClosePolicyViolation, "api key revoked", false, 0);
  ASSERT_EQ(out.size(), 2u + 2u + 15u);
  EXPECT_EQ(static_cast<unsigned char>(out[0]), 0x88);
  EXPECT_EQ(static_cast<unsigned char>(out[1]), 17);
  EXPECT_EQ(static_cast<unsigned char>(out[2]), 1008 >> 8);
  EXPECT_EQ(static_cast<unsigned char>(out[3]), 1008 & 0xff);
  EXPECT_EQ(out.substr(4), "api key revoked");
  FrameTracker t;
  EXPECT_EQ(t.advance(out, false), out.size());
  EXPECT_TRUE(t.at_boundary());
}

TEST(CloseFrame, MaskedToAWorkerUnmasksToTheCodeAndReason) {
  std::string out;
  append_close_frame(out, kCloseGoingAway, "bye", true, 0xa1b2c3d4);
  ASSERT_EQ(out.size(), 2u + 4u + 5u);
  EXPECT_EQ(static_cast<unsigned char>(out[1]), 0x80 | 5);
  const unsigned char key[4] = {0xa1, 0xb2, 0xc3, 0xd4};
  std::string payload;
  for (std::size_t i = 0; i < 5; ++i) payload.push_back(static_cast<char>(out[6 + i] ^ key[i % 4]));
  EXPECT_EQ(static_cast<unsigned char>(payload[0]), 1001 >> 8);
  EXPECT_EQ(static_cast<unsigned char>(payload[1]), 1001 & 0xff);
  EXPECT_EQ(payload.substr(2), "bye");
  // A reason longer than a control frame allows is cut to 123 bytes.
  std::string long_one;
  append_close_frame(long_one, kCloseGoingAway, std::string(300, 'r'), false, 0);
  EXPECT_EQ(long_one.size(), 2u + 125u);
}

}  // namespace
}  // namespace frontdoor::http
