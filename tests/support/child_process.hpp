#pragma once
// A child process for tests (the frontdoor binary, the demo worker): spawned
// with posix_spawn, stdin from /dev/null, stdout and stderr captured by a
// reader thread into memory (and, if a directory is given, into
// stdout.log / stderr.log there). Waits are event-driven and bounded; the
// destructor sends SIGTERM, then SIGKILL after 5 s, to this child's PID only.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace frontdoor::test {

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // argv[0] is the binary path. false (and error()) when it cannot be spawned.
  bool spawn(const std::vector<std::string>& argv, const std::string& log_dir = {});
  const std::string& error() const noexcept { return error_; }

  pid_t pid() const noexcept { return pid_; }
  bool running();

  std::string stdout_text() const;
  std::string stderr_text() const;
  // Waits until `pred(stdout, stderr)` holds, the streams close, or the timeout.
  template <class Pred>
  bool wait_output(Pred pred, std::chrono::milliseconds timeout) const {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return pred(out_, err_) || streams_closed_; }) &&
           pred(out_, err_);
  }
  bool wait_for_stderr(std::string_view needle, std::chrono::milliseconds timeout) const;
  // Waits until the child's stdout and stderr are closed (it exited and the
  // reader thread has every byte it wrote); false on timeout.
  bool wait_streams_closed(std::chrono::milliseconds timeout) const;

  bool send_signal(int sig) const;
  // Exit status (0..255), or 128 + signal number; nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  // The exit status once it is known (wait_exit() or running() saw it).
  std::optional<int> exit_status() const noexcept { return exit_status_; }
  // SIGTERM, then SIGKILL if still running after `grace`.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));
  // stop(), then forgets the child and its captured output, so that spawn()
  // may start a new one (e.g. the same server again on the same files).
  void reset(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

 private:
  void reader_loop(int out_fd, int err_fd, std::string log_dir);

  std::string error_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> exit_status_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::string out_;
  std::string err_;
  bool streams_closed_ = false;
  std::thread reader_;
};

}  // namespace frontdoor::test
