#pragma once
// WebSocket framing as far as a tunnel needs it (RFC 6455 §5.2): where the
// frames of one direction begin and end, and a Close frame of our own. Pure;
// payloads are never unmasked, copied or interpreted.
//
// A tunnel relays bytes, not frames. To close it cleanly (a revoked key,
// shutdown: SPEC §4 step 6) frontdoor must insert its Close frame between two
// frames of each direction, never inside one; FrameTracker follows each
// direction's frame boundaries for that, at the cost of a header parse per
// frame.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace frontdoor::http {

class FrameTracker {
 public:
  // Follows `data`, the next bytes of the stream, in order; returns how many
  // of them it took. With stop_at_boundary it takes them only up to the
  // first frame boundary (none at all when already at one), so that a Close
  // frame can follow; otherwise all of them.
  std::size_t advance(std::string_view data, bool stop_at_boundary) noexcept;
  // The bytes followed so far end exactly where a frame ends (or nothing
  // was followed yet).
  bool at_boundary() const noexcept { return header_have_ == 0 && payload_left_ == 0; }

 private:
  std::uint64_t payload_left_ = 0;  // payload bytes of the current frame still to come
  unsigned char header_[14]{};      // a frame header, while it arrives in pieces
  std::size_t header_have_ = 0;
};

// Close status codes frontdoor sends (RFC 6455 §7.4.1).
inline constexpr std::uint16_t kClosePolicyViolation = 1008;  // the key was revoked
inline constexpr std::uint16_t kCloseGoingAway = 1001;        // shutdown

// Appends a Close frame with `code` and `reason` (at most 123 bytes). A frame
// to a server (masked = true) is masked with `mask_key`, as RFC 6455 §5.3
// requires of a client; a frame to a client is not.
void append_close_frame(std::string& out, std::uint16_t code, std::string_view reason, bool masked,
                        std::uint32_t mask_key);

}  // namespace frontdoor::http
