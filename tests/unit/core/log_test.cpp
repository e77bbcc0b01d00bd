#include "frontdoor/core/log.hpp"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace frontdoor::core::log {
namespace {

using namespace std::chrono_literals;

std::string json(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

TEST(JsonString, EscapesWhatRfc8259Requires) {
  EXPECT_EQ(json("plain /path?q=1"), R"("plain /path?q=1")");
  EXPECT_EQ(json("a\"b\\c\n\r\t"), R"("a\"b\\c\n\r\t")");
  EXPECT_EQ(json(std::string("\x01\x1f\x7f", 3)), R"("\u0001\u001f\u007f")");
  EXPECT_EQ(json(std::string("\0", 1)), R"("\u0000")");
}

TEST(JsonString, ValidUtf8IsKept) {
  // 2, 3 and 4 byte forms, the edges of each range, U+0080..U+00FF as UTF-8.
  for (const char* s : {"caf\xC3\xA9", "\xC2\x80", "\xC3\xBF", "\xE0\xA0\x80", "\xED\x9F\xBF", "\xEE\x80\x80",
                        "\xEF\xBF\xBD", "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF", "\xE2\x82\xAC 5"}) {
    EXPECT_EQ(json(s), std::string("\"") + s + "\"") << s;
  }
}

// L6: bytes of a request path that are not UTF-8 must not make the log line
// invalid UTF-8; each such byte becomes \u00XX, valid neighbours stay.
TEST(JsonString, InvalidUtf8BytesAreEscapedOneByOne) {
  EXPECT_EQ(json("/a\xFF" "b"), R"("/a\u00ffb")");
  EXPECT_EQ(json("\x80"), R"("\u0080")");                          // stray continuation
  EXPECT_EQ(json("\xC3"), R"("\u00c3")");                          // truncated at the end
  EXPECT_EQ(json("\xC3(x"), R"("\u00c3(x")");                      // bad continuation
  EXPECT_EQ(json("\xC0\xAF"), R"("\u00c0\u00af")");                // overlong "/"
  EXPECT_EQ(json("\xE0\x80\xAF"), R"("\u00e0\u0080\u00af")");      // overlong 3-byte
  EXPECT_EQ(json("\xED\xA0\x80"), R"("\u00ed\u00a0\u0080")");      // surrogate U+D800
  EXPECT_EQ(json("\xF4\x90\x80\x80"), R"("\u00f4\u0090\u0080\u0080")");  // above U+10FFFF
  EXPECT_EQ(json("\xF5\x80"), R"("\u00f5\u0080")");
  EXPECT_EQ(json("\xE2\x82"), R"("\u00e2\u0082")");                // truncated 3-byte
  EXPECT_EQ(json("\xFF\xC3\xA9"), "\"\\u00ff\xC3\xA9\"");           // valid after invalid
}

TEST(JsonString, WorstCaseFitsTheDocumentedRoom) {
  std::string s(100, '\xFF');
  std::string out;
  append_json_string(out, s);
  EXPECT_EQ(out.size(), 2 + 6 * s.size());
}

// M6: the access-log writer never blocks its callers on a reader that does
// not read; what does not fit in the queue is dropped and counted.
TEST(AsyncWriter, FullPipeNeverBlocksSubmitAndDropsAreCounted) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  {
    AsyncWriter w(p[1], 256 * 1024);  // more than the pipe holds: the rest waits
    const std::string line(99, 'x');
    const std::string batch = [&] {
      std::string b;
      for (int i = 0; i < 100; ++i) b += line + "\n";
      return b;
    }();  // 10 000 bytes, 100 lines
    auto start = std::chrono::steady_clock::now();
    int accepted = 0;
    for (int i = 0; i < 200; ++i) accepted += w.submit(batch) ? 1 : 0;  // 2 MB into a 64 KiB pipe
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
    EXPECT_GT(accepted, 0);
    EXPECT_LT(accepted, 200);
    EXPECT_GE(w.dropped_lines(), static_cast<std::uint64_t>(200 - accepted) * 100);
    EXPECT_FALSE(w.drain(200ms));  // nobody reads
    // The destructor gives up within its bound (about 2 s) and joins.
  }
  ::close(p[1]);
  // What reached the pipe is whole lines.
  std::string got;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(p[0]);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), '\n');
  EXPECT_EQ(got.size() % 100, 0u);
}

TEST(AsyncWriter, WritesEverythingToAReader) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  std::string want;
  {
    AsyncWriter w(p[1], 1 << 20);
    for (int i = 0; i < 50; ++i) {
      std::string b = "line " + std::to_string(i) + "\n";
      want += b;
      ASSERT_TRUE(w.submit(b));
    }
    EXPECT_TRUE(w.drain(2s));
    EXPECT_EQ(w.dropped_lines(), 0u);
  }
  ::close(p[1]);
  std::string got;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(p[0]);
  EXPECT_EQ(got, want);
}

// A pipe is written as much as it has room for at once; a slow reader
// still gets every line, whole and in order.
TEST(AsyncWriter, SlowPipeReaderGetsEveryLineInOrder) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  std::string want;
  std::string got;
  std::thread reader([&] {
    char buf[3000];  // odd sizes: partly read pages
    for (;;) {
      ssize_t n = ::read(p[0], buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
      if (got.size() % 7 == 0) std::this_thread::sleep_for(1ms);
    }
  });
  {
    AsyncWriter w(p[1], 8 << 20);
    for (int b = 0; b < 64; ++b) {
      std::string batch;
      for (int i = 0; i < 300; ++i) batch += "batch " + std::to_string(b) + " line " + std::to_string(i) + "\n";
      want += batch;
      ASSERT_TRUE(w.submit(batch));
    }
    EXPECT_TRUE(w.drain(10s));
    EXPECT_EQ(w.dropped_lines(), 0u);
  }
  ::close(p[1]);
  reader.join();
  ::close(p[0]);
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want);
}

// A regular file takes whole batches.
TEST(AsyncWriter, WritesEverythingToAFile) {
  char path[] = "/tmp/fd_log_test_XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string want;
  {
    AsyncWriter w(fd, 8 << 20);
    for (int b = 0; b < 32; ++b) {
      std::string batch(32 * 1024 - 1, static_cast<char>('a' + b % 26));
      batch += '\n';
      want += batch;
      ASSERT_TRUE(w.submit(batch));
    }
    EXPECT_TRUE(w.drain(10s));
    EXPECT_EQ(w.dropped_lines(), 0u);
  }
  std::string got(want.size() + 1, '\0');
  const ssize_t n = ::pread(fd, got.data(), got.size(), 0);
  ::close(fd);
  ::unlink(path);
  ASSERT_EQ(n, static_cast<ssize_t>(want.size()));
  got.resize(static_cast<std::size_t>(n));
  EXPECT_TRUE(got == want);
}

TEST(AsyncWriter, ClosedReaderDropsInsteadOfHanging) {
  ::signal(SIGPIPE, SIG_IGN);  // as frontdoor does: EPIPE, not death
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  ::close(p[0]);
  AsyncWriter w(p[1], 1 << 20);
  EXPECT_TRUE(w.submit("a\nb\n"));
  EXPECT_TRUE(w.drain(2s));
  EXPECT_EQ(w.dropped_lines(), 2u);
  ::close(p[1]);
}

}  // namespace
}  // namespace frontdoor::core::log
