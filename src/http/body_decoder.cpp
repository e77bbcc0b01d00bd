#include "frontdoor/http/body_decoder.hpp"

namespace frontdoor::http {

namespace {

int hex_value(unsigned char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Field content and chunk extensions: visible characters, SP, HTAB and
// obs-text; never another control character (RFC 9110 §5.5).
bool field_byte(unsigned char c) noexcept { return c == '\t' || (c >= 0x20 && c != 0x7f); }

}  // namespace

ChunkedDecoder::Result ChunkedDecoder::decode(std::string_view in) noexcept {
  Result r;
  std::size_t i = 0;
  auto fail = [&] {
    state_ = State::error;
    r.status = Status::error;
    r.consumed = i;
    return r;
  };
  while (i < in.size()) {
    const auto c = static_cast<unsigned char>(in[i]);
    // The chunk-size line, extensions and its CR, is bounded as a whole.
    if ((state_ == State::size || state_ == State::size_ws || state_ == State::ext) && ++line_ > limits_.max_line)
      return fail();
    switch (state_) {
      case State::size: {
        int v = hex_value(c);
        if (v >= 0) {
          saw_digit_ = true;
          if ((remaining_ != 0 || v != 0) && ++digits_ > 16) return fail();  // would overflow 64 bits
          remaining_ = (remaining_ << 4) | static_cast<unsigned>(v);
        } else if (!saw_digit_) {
          return fail();
        } else if (c == '\r') {
          state_ = State::size_lf;
        } else if (c == ';') {
          state_ = State::ext;  // chunk-ext, ignored (RFC 9112 §7.1.1)
        } else if (c == ' ' || c == '\t') {
          state_ = State::size_ws;  // BWS before ";"
        } else {
          return fail();
        }
        ++i;
        break;
      }
      case State::size_ws:
        if (c == ';') {
          state_ = State::ext;
        } else if (c != ' ' && c != '\t') {
          return fail();  // only whitespace, then ";", may follow the size
        }
        ++i;
        break;
      case State::ext:
        if (c == '\r') {
          state_ = State::size_lf;
        } else if (!field_byte(c)) {
          return fail();
        }
        ++i;
        break;
      case State::size_lf:
        if (c != '\n') return fail();
        ++i;
        line_ = 0;
        digits_ = 0;
        saw_digit_ = false;
        state_ = remaining_ == 0 ? State::trailer : State::data;
        break;
      case State::data: {
        const auto n = static_cast<std::size_t>(
            remaining_ < in.size() - i ? remaining_ : static_cast<std::uint64_t>(in.size() - i));
        remaining_ -= n;
        body_bytes_ += n;
        if (remaining_ == 0) state_ = State::data_cr;
        r.status = Status::data;
        r.data = in.substr(i, n);
        r.consumed = i + n;
        return r;
      }
      case State::data_cr:
        if (c != '\r') return fail();
        ++i;
        state_ = State::data_lf;
        break;
      case State::data_lf:
        if (c != '\n') return fail();
        ++i;
        state_ = State::size;
        break;
      case State::trailer:
        if (c == '\r') {
          // A field line needs its name and ':' (RFC 9110 §5); the empty
          // line ends the section.
          if (trailer_line_ != 0 && !trailer_colon_) return fail();
          state_ = State::trailer_lf;
        } else if (!field_byte(c) || (trailer_line_ == 0 && (c == ' ' || c == '\t' || c == ':'))) {
          return fail();  // a control, obs-fold, or an empty name
        } else {
          if (c == ':') trailer_colon_ = true;
          ++trailer_line_;
        }
        if (++trailer_bytes_ > limits_.max_trailers) return fail();
        ++i;
        break;
      case State::trailer_lf:
        if (c != '\n') return fail();
        ++i;
        if (++trailer_bytes_ > limits_.max_trailers) return fail();
        if (trailer_line_ == 0) {  // the empty line ends the message
          state_ = State::done;
          r.status = Status::done;
          r.consumed = i;
          return r;
        }
        trailer_line_ = 0;
        trailer_colon_ = false;
        state_ = State::trailer;
        break;
      case State::done:
        r.status = Status::done;
        r.consumed = 0;
        return r;
      case State::error:
        r.status = Status::error;
        r.consumed = 0;
        return r;
    }
  }
  if (state_ == State::done) r.status = Status::done;
  else if (state_ == State::error) r.status = Status::error;
  r.consumed = i;
  return r;
}

}  // namespace frontdoor::http
