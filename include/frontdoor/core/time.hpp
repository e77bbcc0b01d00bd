#pragma once
// Wall-clock timestamps (RFC 3339, UTC, whole seconds) and config durations.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace frontdoor::core {

// Seconds since the Unix epoch, UTC.
using UnixSeconds = std::int64_t;

UnixSeconds now_unix() noexcept;

// Parses "2026-11-22T04:00:00Z", also with fractional seconds and with a
// numeric offset ("+02:00"); nullopt when malformed.
std::optional<UnixSeconds> parse_rfc3339(std::string_view s) noexcept;

// Formats as "2026-11-22T04:00:00Z".
std::string format_rfc3339(UnixSeconds t);

// Parses a duration: a number (decimals allowed) with exactly one unit of
// ms, s, m or h ("250ms", "1.5s", "2m"); nullopt when malformed or negative.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) noexcept;

}  // namespace frontdoor::core
