#include "frontdoor/proxy/thread_context.hpp"

#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <exception>

namespace frontdoor::proxy {

ThreadContext::ThreadContext(Shared& shared, unsigned index)
    : shared_(shared), index_(index), runtime_(shared.runtime), keys_(shared.keys) {
  std::uint64_t seed = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1)
    seed = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) ^ index;
  rng_state_ = seed ? seed : 0x9e3779b97f4a7c15ull;
}

ThreadContext::~ThreadContext() {
  // Pending handlers own sessions whose destructors use this context (the
  // session list, the buffers, the pools): they go first, while all of it
  // is still alive.
  shutdown();
  flush_access_log();
}

void ThreadContext::shutdown() {
  sweeping_ = false;
  boost::system::error_code ignored;
  sweep_timer_.cancel();
  io_.stop();
  // Requests still in progress are cut and logged (SPEC §6), while the
  // context is whole; a session may go away here, never another one.
  for (Sweepable* s = sessions_; s;) {
    Sweepable* next = s->next_;
    try {
      s->on_shutdown();
    } catch (...) {
    }
    s = next;
  }
  io_.destroy_pending();
  for (auto& [address, pool] : pools_)
    for (auto& c : pool.idle) c->socket.close(ignored);
  pools_.clear();
  spare_buffers_.clear();
}

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
    // Re-armed first: whatever the sweep throws, this thread keeps
    // enforcing its timeouts (M5).
    start_sweep();
    sweep();
  });
}

// One handler that throws must not cost the others their sweep: the error
// is logged (at most once a second per thread, with a count) and the sweep
// goes on.
void ThreadContext::sweep_failed(const char* what) noexcept {
  ++sweep_errors_;
  auto now = Clock::now();
  if (now - last_sweep_error_log_ < std::chrono::seconds(1)) return;
  last_sweep_error_log_ = now;
  try {
    core::log::error("sweep: handler failed",
                     {{"error", what}, {"thread", std::to_string(index_), true},
                      {"errors", std::to_string(sweep_errors_), true}});
  } catch (...) {
  }
  sweep_errors_ = 0;
}

void ThreadContext::stop_sweep() {
  sweeping_ = false;
  sweep_timer_.cancel();
}

void ThreadContext::drain_sessions() {
  for (Sweepable* s = sessions_; s;) {
    Sweepable* next = s->next_;
    try {
      s->on_drain();  // may remove s from the list, never another session
    } catch (const std::exception& e) {
      sweep_failed(e.what());
    }
    s = next;
  }
}

void ThreadContext::sweep() {
  auto now = Clock::now();
  for (Sweepable* s = sessions_; s;) {
    Sweepable* next = s->next_;  // on_sweep only cancels; nothing is freed here
    try {
      s->on_sweep(now);
    } catch (const std::exception& e) {
      sweep_failed(e.what());
    }
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
  for (auto& hook : sweep_hooks_) {
    try {
      hook();
    } catch (const std::exception& e) {
      sweep_failed(e.what());
    }
  }
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
  // pool.max_idle is per worker (SPEC §2) and every thread has its own pool:
  // each keeps its share, rounded up (so at most max_idle + threads - 1 in all).
  const std::size_t threads = std::max(1u, shared_.thread_count);
  if (pool.idle.size() >= (max_idle + threads - 1) / threads) {
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
  // Handed to the writer thread: a slow stdout drops lines (counted in
  // frontdoor_access_log_dropped_total), it never blocks this thread (M6).
  try {
    core::log::access_log_writer().submit(std::string_view(access_log_.data(), access_log_.size()));
  } catch (const std::exception&) {
    // bad_alloc or no thread: the batch is lost, the proxy goes on
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
