#include "frontdoor/http/websocket.hpp"

#include <algorithm>
#include <cstring>

namespace frontdoor::http {

namespace {

// The size of a frame header once its first two bytes are known.
std::size_t header_size(unsigned char second) noexcept {
  const unsigned len7 = second & 0x7f;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((second & 0x80) ? 4 : 0);
}

std::uint64_t payload_length(const unsigned char* h) noexcept {
  const unsigned len7 = h[1] & 0x7f;
  if (len7 < 126) return len7;
  std::uint64_t n = 0;
  const std::size_t bytes = len7 == 126 ? 2 : 8;
  for (std::size_t i = 0; i < bytes; ++i) n = (n << 8) | h[2 + i];
  return n;
}

}  // namespace

std::size_t FrameTracker::advance(std::string_view data, bool stop_at_boundary) noexcept {
  std::size_t used = 0;
  while (used < data.size()) {
    if (payload_left_ > 0) {
      const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(payload_left_, data.size() - used));
      payload_left_ -= take;
      used += take;
      if (payload_left_ == 0 && stop_at_boundary) return used;
      continue;
    }
    if (header_have_ == 0 && stop_at_boundary) return used;  // at a boundary: stop before the next frame
    // A header, possibly in pieces.
    header_[header_have_++] = static_cast<unsigned char>(data[used++]);
    if (header_have_ < 2 || header_have_ < header_size(header_[1])) continue;
    payload_left_ = payload_length(header_);
    header_have_ = 0;
    if (payload_left_ == 0 && stop_at_boundary) return used;
  }
  return used;
}

void append_close_frame(std::string& out, std::uint16_t code, std::string_view reason, bool masked,
                        std::uint32_t mask_key) {
  reason = reason.substr(0, 123);  // control frames carry at most 125 bytes
  unsigned char payload[125];
  payload[0] = static_cast<unsigned char>(code >> 8);
  payload[1] = static_cast<unsigned char>(code & 0xff);
  std::memcpy(payload + 2, reason.data(), reason.size());
  const std::size_t n = 2 + reason.size();
  out.push_back(static_cast<char>(0x88));  // FIN, opcode 8 (Close)
  out.push_back(static_cast<char>((masked ? 0x80 : 0) | n));
  if (masked) {
    const unsigned char key[4] = {static_cast<unsigned char>(mask_key >> 24), static_cast<unsigned char>(mask_key >> 16),
                                  static_cast<unsigned char>(mask_key >> 8), static_cast<unsigned char>(mask_key)};
    out.append(reinterpret_cast<const char*>(key), 4);
    for (std::size_t i = 0; i < n; ++i) payload[i] ^= key[i % 4];
  }
  out.append(reinterpret_cast<const char*>(payload), n);
}

}  // namespace frontdoor::http
