#include "frontdoor/core/log.hpp"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>
#include <time.h>

namespace frontdoor::core::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};

constexpr std::string_view level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}
}  // namespace

void set_level(Level level) noexcept { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }

bool enabled(Level level) noexcept {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

namespace {
// 0: copied as is; otherwise the character to write after a backslash ('u'
// for \u00XX). A table keeps the common case to one load per character.
constexpr auto kJsonEscape = [] {
  std::array<char, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = 'u';
  t['"'] = '"';
  t['\\'] = '\\';
  t['\n'] = 'n';
  t['\r'] = 'r';
  t['\t'] = 't';
  t[0x7f] = 'u';
  return t;
}();
}  // namespace

// Length of the valid UTF-8 sequence at s[i] (a byte >= 0x80), or 0 when
// it is not one: a stray continuation byte, a truncated sequence, an
// overlong form, a surrogate or a code point above U+10FFFF (RFC 3629 §4).
std::size_t utf8_sequence(std::string_view s, std::size_t i) noexcept {
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = at(i);
  std::size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() - i < len) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < len; ++k)
    if ((at(i + k) & 0xC0) != 0x80) return 0;
  return len;
}

char* write_json_string(char* p, std::string_view s) noexcept {
  static constexpr char kHex[] = "0123456789abcdef";
  *p++ = '"';
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    auto u = static_cast<unsigned char>(c);
    char e = kJsonEscape[u];
    if (e == 0) {
      if (u < 0x80) {
        *p++ = c;
        continue;
      }
      if (std::size_t len = utf8_sequence(s, i)) {
        std::memcpy(p, s.data() + i, len);
        p += len;
        i += len - 1;
        continue;
      }
      e = 'u';  // not UTF-8: this one byte as \u00XX (6 bytes of room, as for controls)
    }
    *p++ = '\\';
    *p++ = e;
    if (e == 'u') {
      *p++ = '0';
      *p++ = '0';
      *p++ = kHex[u >> 4];
      *p++ = kHex[u & 15];
    }
  }
  *p++ = '"';
  return p;
}

void append_json_string(std::string& out, std::string_view s) {
  auto old = out.size();
  out.resize(old + 2 + 6 * s.size());
  char* end = write_json_string(out.data() + old, s);
  out.resize(static_cast<std::size_t>(end - out.data()));
}

char* write_timestamp(char* p) noexcept {
  // Formatting the date costs more than the rest of an access-log line:
  // each thread formats it once per second and appends milliseconds.
  thread_local std::time_t cached_second = -1;
  thread_local char cached[64];  // roomy enough for any int the formatter may print
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached_second) {
    std::tm tm{};
    gmtime_r(&ts.tv_sec, &tm);
    std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_second = ts.tv_sec;
  }
  std::memcpy(p, cached, 20);
  p += 20;
  auto ms = static_cast<int>(ts.tv_nsec / 1000000);
  *p++ = static_cast<char>('0' + ms / 100);
  *p++ = static_cast<char>('0' + ms / 10 % 10);
  *p++ = static_cast<char>('0' + ms % 10);
  *p++ = 'Z';
  return p;
}

void append_timestamp(std::string& out) {
  char buf[32];
  char* end = write_timestamp(buf);
  out.append(buf, static_cast<std::size_t>(end - buf));
}

char* write_uint(char* p, std::uint64_t v) noexcept {
  return std::to_chars(p, p + 20, v).ptr;
}

char* LineBuffer::reserve(std::size_t n) {
  if (size_ + n > capacity_) {
    std::size_t cap = std::max<std::size_t>(capacity_ * 2, size_ + n);
    cap = std::max<std::size_t>(cap, 64 * 1024);
    auto bigger = std::make_unique<char[]>(cap);
    if (size_) std::memcpy(bigger.get(), data_.get(), size_);
    data_ = std::move(bigger);
    capacity_ = cap;
  }
  return data_.get() + size_;
}

void write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(128);
  line.append("{\"ts\":\"");
  append_timestamp(line);
  line.append("\",\"level\":\"").append(level_name(level)).append("\",\"msg\":");
  append_json_string(line, msg);
  for (const auto& f : fields) {
    line.push_back(',');
    append_json_string(line, f.key);
    line.push_back(':');
    if (f.raw)
      line.append(f.value);
    else
      append_json_string(line, f.value);
  }
  line.append("}\n");
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

// ---------------------------------------------------------------------------
// AsyncWriter
// ---------------------------------------------------------------------------

struct AsyncWriter::Impl {
  Impl(int fd, std::size_t max) : fd(fd), max_queued_bytes(max), sink(sink_of(fd)) {}

  // How a write to the fd can block. A regular file or a character device
  // that is not a terminal (/dev/null) takes a whole batch at once; a pipe,
  // socket or terminal can fill up and stay full.
  enum class Sink { file, stream };
  static Sink sink_of(int fd) noexcept {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return Sink::stream;
    if (S_ISREG(st.st_mode) || (S_ISCHR(st.st_mode) && !::isatty(fd))) return Sink::file;
    return Sink::stream;
  }

  const int fd;
  const std::size_t max_queued_bytes;
  const Sink sink;
  std::mutex mu;
  std::condition_variable wake;  // a batch was queued, or stop
  std::condition_variable idle;  // queued_bytes went down
  std::deque<std::string> queue;
  std::size_t queued_bytes = 0;  // includes the batch being written
  bool stopping = false;
  std::atomic<bool> give_up{false};  // the exit deadline passed: drop the rest
  std::atomic<std::uint64_t> dropped{0};
  std::thread thread;

  static std::uint64_t lines_in(std::string_view s) noexcept {
    return static_cast<std::uint64_t>(std::count(s.begin(), s.end(), '\n'));
  }

  void run() {
    std::unique_lock lock(mu);
    for (;;) {
      wake.wait(lock, [&] { return !queue.empty() || stopping; });
      if (queue.empty()) return;
      std::string batch = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      const std::size_t written = write_batch(batch);
      if (written < batch.size())
        dropped.fetch_add(lines_in(std::string_view(batch).substr(written)), std::memory_order_relaxed);
      lock.lock();
      queued_bytes -= batch.size();
      idle.notify_all();
    }
  }

  std::size_t write_batch(std::string_view batch) {
    // Never a write(2) that can block for long, so that the exit deadline
    // can give up: to a pipe, socket or terminal at most one page, after
    // POLLOUT (which on a pipe means a free page: Linux then never blocks,
    // and a write of at most PIPE_BUF is never interleaved with another
    // writer's, e.g. stderr on the same pipe); cut after a newline when
    // there is one, so that giving up never splits a line. A file or
    // /dev/null takes the whole batch.
    constexpr std::size_t kPage = 4096;
    std::size_t off = 0;
    bool wait = sink == Sink::stream;
    while (off < batch.size()) {
      if (give_up.load(std::memory_order_relaxed)) break;
      std::size_t n = batch.size() - off;
      if (wait) {
        pollfd p{fd, POLLOUT, 0};
        int rc = ::poll(&p, 1, 100);
        if (rc < 0 && errno != EINTR) break;
        if (rc <= 0) continue;
        if (p.revents & (POLLERR | POLLNVAL)) break;
        n = std::min(n, kPage);
      }
      wait = sink == Sink::stream;
      if (off + n < batch.size()) {
        auto nl = batch.substr(off, n).rfind('\n');
        if (nl != std::string_view::npos) n = nl + 1;
      }
      ssize_t w = ::write(fd, batch.data() + off, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {  // a non-blocking fd someone else set up: wait for room
          wait = true;
          continue;
        }
        break;  // EPIPE (SIGPIPE is ignored), EBADF...: the reader is gone
      }
      off += static_cast<std::size_t>(w);
    }
    return off;
  }
};

AsyncWriter::AsyncWriter(int fd, std::size_t max_queued_bytes)
    : impl_(std::make_unique<Impl>(fd, max_queued_bytes)) {}

AsyncWriter::~AsyncWriter() {
  drain(std::chrono::seconds(2));
  impl_->give_up = true;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    for (const auto& b : impl_->queue) impl_->dropped.fetch_add(Impl::lines_in(b), std::memory_order_relaxed);
    impl_->queue.clear();
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool AsyncWriter::submit(std::string_view lines) {
  if (lines.empty()) return true;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping || impl_->queued_bytes + lines.size() > impl_->max_queued_bytes) {
      impl_->dropped.fetch_add(Impl::lines_in(lines), std::memory_order_relaxed);
      return false;
    }
    if (!impl_->thread.joinable()) impl_->thread = std::thread([this] { impl_->run(); });
    impl_->queue.emplace_back(lines);
    impl_->queued_bytes += lines.size();
  }
  impl_->wake.notify_one();
  return true;
}

std::uint64_t AsyncWriter::dropped_lines() const noexcept { return impl_->dropped.load(std::memory_order_relaxed); }

bool AsyncWriter::drain(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  return impl_->idle.wait_for(lock, timeout, [&] { return impl_->queued_bytes == 0; });
}

namespace {
std::atomic<AsyncWriter*> g_access_writer{nullptr};
}  // namespace

AsyncWriter& access_log_writer() {
  // A function-local static: made on first use, and at exit it writes what
  // is queued (bounded) and joins its thread before the process ends.
  static AsyncWriter writer(STDOUT_FILENO, 8u << 20);
  g_access_writer.store(&writer, std::memory_order_release);
  return writer;
}

std::uint64_t access_log_dropped() noexcept {
  auto* w = g_access_writer.load(std::memory_order_acquire);
  return w ? w->dropped_lines() : 0;
}

}  // namespace frontdoor::core::log
