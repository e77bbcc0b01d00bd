#include "frontdoor/proxy/thread_context.hpp"

#include <openssl/rand.h>
#include <unistd.h>

#include <mutex>

namespace frontdoor::proxy {

namespace {
// Access-log batches from several threads must not interleave on a pipe.
std::mutex g_stdout_mutex;
}  // namespace

ThreadContext::ThreadContext(Shared& shared, unsigned index)
    : shared_(shared), index_(index), runtime_(shared.runtime), keys_(shared.keys) {
  std::uint64_t seed = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1)
    seed = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) ^ index;
  rng_state_ = seed ? seed : 0x9e3779b97f4a7c15ull;
}

ThreadContext::~ThreadContext() { flush_access_log(); }

void ThreadContext::add(Sweepable* s) noexcept {
  s->prev_ = nullptr;
  s->next_ = sessions_;
  if (sessions_) sessions_->prev_ = s;
  sessions_ = s;
}

void ThreadContext::remove(Sweepable* s) noexcept {
  if (s->prev_)
    s->prev_->next_ = s->next_;
  else if (sessions_ == s)
    sessions_ = s->next_;
  if (s->next_) s->next_->prev_ = s->prev_;
  s->prev_ = s->next_ = nullptr;
}

void ThreadContext::start_sweep() {
  sweeping_ = true;
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || !sweeping_) return;
    sweep();
    start_sweep();
  });
}

void ThreadContext::stop_sweep() {
  sweeping_ = false;
  sweep_timer_.cancel();
}

void ThreadContext::drain_sessions() {
  for (Sweepable* s = sessions_; s;) {
    Sweepable* next = s->next_;
    s->on_drain();  // may remove s from the list, never another session
    s = next;
  }
}

void ThreadContext::sweep() {
  auto now = Clock::now();
  for (Sweepable* s = sessions_; s;) {
    Sweepable* next = s->next_;  // on_sweep only cancels; nothing is freed here
    s->on_sweep(now);
    s = next;
  }
  for (auto& [worker, pool] : pools_) {
    auto& idle = pool.idle;
    // Oldest first: stop at the first one still fresh.
    std::size_t expired = 0;
    while (expired < idle.size() && now - idle[expired]->idle_since > pool.max_age) ++expired;
    if (expired) {
      for (std::size_t i = 0; i < expired; ++i) {
        boost::system::error_code ignored;
        idle[i]->socket.close(ignored);
      }
      idle.erase(idle.begin(), idle.begin() + static_cast<std::ptrdiff_t>(expired));
    }
  }
  for (auto& hook : sweep_hooks_) hook();
  flush_access_log();
}

std::unique_ptr<UpstreamConn> ThreadContext::take(const lb::WorkerState* w, Clock::duration max_idle_age) {
  auto it = pools_.find(w->config.address);
  if (it == pools_.end()) return nullptr;
  auto& idle = it->second.idle;
  auto now = Clock::now();
  while (!idle.empty()) {
    auto c = std::move(idle.back());
    idle.pop_back();
    if (now - c->idle_since <= max_idle_age) return c;
    boost::system::error_code ignored;
    c->socket.close(ignored);
  }
  return nullptr;
}

void ThreadContext::give_back(const lb::WorkerState* w, std::unique_ptr<UpstreamConn> c,
                              std::size_t max_idle, Clock::duration max_idle_age) {
  auto& pool = pools_[w->config.address];
  pool.max_age = max_idle_age;
  if (pool.idle.size() >= max_idle) {
    boost::system::error_code ignored;
    c->socket.close(ignored);
    return;
  }
  c->idle_since = Clock::now();
  pool.idle.push_back(std::move(c));
}

boost::beast::flat_buffer ThreadContext::take_buffer() {
  if (spare_buffers_.empty()) return {};
  auto b = std::move(spare_buffers_.back());
  spare_buffers_.pop_back();
  return b;
}

void ThreadContext::return_buffer(boost::beast::flat_buffer&& b) {
  constexpr std::size_t kMaxSpares = 256;
  if (b.capacity() == 0 || spare_buffers_.size() >= kMaxSpares) return;
  b.clear();
  spare_buffers_.push_back(std::move(b));
}

void ThreadContext::flush_access_log() {
  if (access_log_.empty()) return;
  {
    std::lock_guard lock(g_stdout_mutex);
    const char* p = access_log_.data();
    std::size_t left = access_log_.size();
    while (left > 0) {
      ssize_t n = ::write(STDOUT_FILENO, p, left);
      if (n <= 0) break;  // stdout closed: drop the batch rather than block the proxy
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  access_log_.clear();
}

void ThreadContext::make_request_id(char out[32]) noexcept {
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t a = random(), b = random();
  for (int i = 0; i < 16; ++i) {
    out[i] = kHex[a & 15];
    out[16 + i] = kHex[b & 15];
    a >>= 4;
    b >>= 4;
  }
}

}  // namespace frontdoor::proxy
