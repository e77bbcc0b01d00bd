#include "frontdoor/lb/worker_set.hpp"

#include <boost/asio/post.hpp>

#include <sstream>

namespace frontdoor::lb {

WorkerState::WorkerState(const config::Worker& w, std::size_t i) : config(w), index(i) {
  std::ostringstream s;
  s << w.address;
  address_text = s.str();
}

EndpointState::EndpointState(const config::Endpoint& e) : config_(&e) {
  workers_.reserve(e.workers.size());
  for (std::size_t i = 0; i < e.workers.size(); ++i)
    workers_.push_back(std::make_unique<WorkerState>(e.workers[i], i));
}

WorkerState* EndpointState::pick(const WorkerState* avoid, std::uint64_t random) {
  // A small endpoint fits on the stack; the candidate list is rebuilt per
  // pick from the shared atomics so every thread sees the whole load.
  constexpr std::size_t kInline = 32;
  Candidate inline_buf[kInline];
  std::vector<Candidate> heap;
  std::span<Candidate> c;
  if (workers_.size() <= kInline) {
    c = std::span<Candidate>(inline_buf, workers_.size());
  } else {
    heap.resize(workers_.size());
    c = heap;
  }
  const auto max = config_->max_concurrency;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const auto& w = *workers_[i];
    auto in_flight = w.in_flight.load(std::memory_order_relaxed);
    c[i].in_flight = in_flight;
    c[i].eligible = w.health.load(std::memory_order_relaxed) == WorkerHealth::ready && (max == 0 || in_flight < max);
  }
  auto rotation = rotation_.fetch_add(1, std::memory_order_relaxed);
  auto i = select_worker(config_->balance, c, rotation, random, avoid ? avoid->index : kNoWorker);
  if (i == kNoWorker) return nullptr;
  workers_[i]->in_flight.fetch_add(1, std::memory_order_relaxed);
  return workers_[i].get();
}

WorkerState* EndpointState::try_acquire(const WorkerState* avoid, std::uint64_t random) {
  // Without a concurrency limit and with nobody waiting, the only shared
  // state is atomic: no lock. A miss falls through to admit(), which
  // re-checks under the lock; a worker that turns ready dispatches under the
  // same lock, so no wake-up is lost. With a limit, pick-and-count must be
  // one step against release(), so it is taken under the lock (cheap next
  // to a GPU request).
  if (config_->max_concurrency == 0 && queued_.load(std::memory_order_acquire) == 0) return pick(avoid, random);
  std::lock_guard lock(mutex_);
  return queue_.empty() ? pick(avoid, random) : nullptr;
}

EndpointState::AdmitResult EndpointState::admit(const std::shared_ptr<Waiter>& waiter, std::uint64_t random) {
  std::lock_guard lock(mutex_);
  if (queue_.empty()) {
    if (auto* w = pick(waiter->avoid, random)) return {Admission::granted, w};
  }
  if (queue_.size() >= config_->queue.max) return {Admission::queue_full, nullptr};
  queue_.push_back(waiter);
  queued_.store(queue_.size(), std::memory_order_release);
  return {Admission::queued, nullptr};
}

bool EndpointState::cancel(Waiter& waiter) {
  std::lock_guard lock(mutex_);
  if (waiter.done) return false;
  waiter.done = true;
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->get() == &waiter) {
      queue_.erase(it);
      break;
    }
  }
  queued_.store(queue_.size(), std::memory_order_release);
  return true;
}

void EndpointState::release(WorkerState& w) {
  if (config_->max_concurrency == 0) {
    w.in_flight.fetch_sub(1, std::memory_order_relaxed);
    // Without a limit, waiters wait only for a ready worker, which the
    // health path dispatches; a free slot changes nothing for them.
    return;
  }
  std::lock_guard lock(mutex_);
  w.in_flight.fetch_sub(1, std::memory_order_relaxed);
  dispatch_locked();
}

void EndpointState::dispatch_locked() {
  while (!queue_.empty()) {
    auto& front = queue_.front();
    if (front->done) {
      queue_.pop_front();
      continue;
    }
    dispatch_random_ ^= dispatch_random_ << 13;
    dispatch_random_ ^= dispatch_random_ >> 7;
    dispatch_random_ ^= dispatch_random_ << 17;
    auto* w = pick(front->avoid, dispatch_random_);
    if (!w) break;
    auto waiter = std::move(front);
    queue_.pop_front();
    waiter->done = true;
    boost::asio::post(*waiter->io, [waiter, w] { waiter->on_grant(w); });
  }
  queued_.store(queue_.size(), std::memory_order_release);
}

WorkerHealth EndpointState::record(WorkerState& w, ProbeResult result) {
  std::lock_guard lock(mutex_);
  auto before = w.health.load(std::memory_order_relaxed);
  auto after = next_health(before, result, w.counters, config_->health);
  if (after != before) {
    w.health.store(after, std::memory_order_relaxed);
    if (after == WorkerHealth::ready) dispatch_locked();
  }
  return after;
}

std::size_t EndpointState::queue_length() const { return queued_.load(std::memory_order_relaxed); }

Runtime::Runtime(std::shared_ptr<const config::Config> c) : config(std::move(c)) {
  endpoints.reserve(config->endpoints.size());
  for (const auto& e : config->endpoints) {
    endpoints.push_back(std::make_unique<EndpointState>(e));
    by_id_.emplace(e.id, endpoints.back().get());
  }
}

void Runtime::inherit(const Runtime& previous) {
  for (const auto& old_ep : previous.endpoints) {
    EndpointState* now = find(old_ep->config().id);
    for (const auto& old_w : old_ep->workers()) {
      WorkerState* match = nullptr;
      if (now)
        for (const auto& w : now->workers())
          if (w->config.address == old_w->config.address) match = w.get();
      if (match) {
        match->health.store(old_w->health.load());
      } else {
        old_w->health.store(WorkerHealth::draining);
      }
    }
  }
}

EndpointState* Runtime::find(std::string_view id) const noexcept {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

}  // namespace frontdoor::lb
