#include "support/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

extern char** environ;

namespace frontdoor::test {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

ChildProcess::~ChildProcess() {
  stop();
  if (reader_.joinable()) reader_.join();
  if (pidfd_ >= 0) ::close(pidfd_);
}

bool ChildProcess::spawn(const std::vector<std::string>& argv, const std::string& log_dir) {
  if (argv.empty() || pid_ > 0) {
    error_ = "nothing to spawn";
    return false;
  }
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    error_ = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    error_ = std::string("pipe: ") + std::strerror(errno);
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return false;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, args[0].c_str(), &fa, nullptr, cargs.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    error_ = "posix_spawn " + args[0] + ": " + std::strerror(rc);
    return false;
  }
  pid_ = pid;
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  reader_ = std::thread(
      [this, o = out_pipe[0], e = err_pipe[0], log_dir] { reader_loop(o, e, log_dir); });
  return true;
}

void ChildProcess::reader_loop(int out_fd, int err_fd, std::string log_dir) {
  std::ofstream files[2];
  if (!log_dir.empty()) {
    files[0].open(log_dir + "/stdout.log");
    files[1].open(log_dir + "/stderr.log");
  }
  pollfd p[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open_count = 2;
  char buf[65536];
  while (open_count > 0) {
    int rc = ::poll(p, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || !p[i].revents) continue;
      ssize_t n = ::read(p[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(p[i].fd);
        p[i].fd = -1;  // poll ignores negative fds
        --open_count;
        continue;
      }
      if (files[i].is_open()) files[i].write(buf, n).flush();
      {
        std::lock_guard lk(mu_);
        (i == 0 ? out_ : err_).append(buf, static_cast<std::size_t>(n));
      }
      cv_.notify_all();
    }
  }
  for (int i = 0; i < 2; ++i)
    if (p[i].fd >= 0) ::close(p[i].fd);
  {
    std::lock_guard lk(mu_);
    streams_closed_ = true;
  }
  cv_.notify_all();
}

std::string ChildProcess::stdout_text() const {
  std::lock_guard lk(mu_);
  return out_;
}

std::string ChildProcess::stderr_text() const {
  std::lock_guard lk(mu_);
  return err_;
}

bool ChildProcess::wait_for_stderr(std::string_view needle, milliseconds timeout) const {
  return wait_output([&](const std::string&,
                         const std::string& err) { return err.find(needle) != std::string::npos; },
                     timeout);
}

bool ChildProcess::wait_streams_closed(milliseconds timeout) const {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return streams_closed_; });
}

bool ChildProcess::running() { return pid_ > 0 && !wait_exit(milliseconds(0)); }

bool ChildProcess::send_signal(int sig) const {
  return pid_ > 0 && !exit_status_ && ::kill(pid_, sig) == 0;
}

std::optional<int> ChildProcess::wait_exit(milliseconds timeout) {
  if (exit_status_ || pid_ <= 0) return exit_status_;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_status_;
    }
    if (r < 0 && errno != EINTR) return std::nullopt;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};  // readable once the child has exited
      ::poll(&p, 1, static_cast<int>(left));
    } else {
      std::this_thread::sleep_for(
          milliseconds(std::min<long long>(left, 10)));  // no pidfd: poll waitpid
    }
  }
}

void ChildProcess::stop(milliseconds grace) {
  if (pid_ <= 0 || exit_status_) return;
  if (send_signal(SIGTERM) && wait_exit(grace)) return;
  ::kill(pid_, SIGKILL);
  wait_exit(milliseconds(5000));
}

void ChildProcess::reset(milliseconds grace) {
  stop(grace);
  if (reader_.joinable()) reader_.join();
  if (pidfd_ >= 0) ::close(pidfd_);
  pidfd_ = -1;
  pid_ = -1;
  exit_status_.reset();
  error_.clear();
  std::lock_guard lk(mu_);
  out_.clear();
  err_.clear();
  streams_closed_ = false;
}

}  // namespace frontdoor::test
