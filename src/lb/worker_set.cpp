#include "frontdoor/lb/worker_set.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>

namespace frontdoor::lb {

namespace {

std::string address_text_of(const config::Worker& w) {
  std::ostringstream s;
  s << w.address;
  return s.str();
}

}  // namespace

// The endpoint's state that outlives configurations. Every field but the
// atomics is guarded by `mutex`; the atomics are readable without it (the
// request path's lock-free check, the admin API).
struct EndpointLive {
  explicit EndpointLive(std::string endpoint_id) : id(std::move(endpoint_id)) {}
  const std::string id;
  mutable std::mutex mutex;
  std::deque<std::shared_ptr<Waiter>> queue;
  std::atomic<std::size_t> queued{0};  // queue.size()
  std::atomic<std::uint64_t> rotation{0};
  std::uint64_t dispatch_random = 0x9e3779b97f4a7c15ull;
  // The settings of the newest configuration: a reload changes them for
  // requests admitted on older configurations too.
  std::atomic<std::uint64_t> max_concurrency{0};
  std::atomic<std::uint64_t> queue_max{0};
  std::atomic<config::Balance> balance{config::Balance::round_robin};
  config::Health health;
  // The newest configuration's view; nullptr once a reload removed the
  // endpoint (nothing is granted then: its workers all drain).
  EndpointState* current = nullptr;
  // Every worker with live state, by address. Weak: a worker that left the
  // configuration lives while an older Runtime (and so a request on it)
  // still holds it.
  std::map<std::string, std::weak_ptr<WorkerLive>> workers;

  void set_settings(const config::Endpoint& e) {
    max_concurrency.store(e.max_concurrency);
    queue_max.store(e.queue.max);
    balance.store(e.balance);
    health = e.health;
  }

  // Requests in flight or waiting: the state is worth keeping.
  bool busy() const {
    if (!queue.empty()) return true;
    for (const auto& [address, weak] : workers)
      if (auto w = weak.lock(); w && w->in_flight.load() > 0) return true;
    return false;
  }

  void drain(WorkerLive& w) {
    auto h = w.health.load();
    if (h == WorkerHealth::draining) return;
    w.before_drain = h;
    w.counters = {};
    w.health.store(WorkerHealth::draining);
  }
};

WorkerState::WorkerState(const config::Worker& w, std::size_t i, std::shared_ptr<WorkerLive> l)
    : config(w),
      index(i),
      address_text(l->address_text),
      live(std::move(l)),
      in_flight(live->in_flight),
      health(live->health) {}

EndpointState::EndpointState(const config::Endpoint& e) : EndpointState(e, std::make_shared<EndpointLive>(e.id)) {}

EndpointState::EndpointState(const config::Endpoint& e, std::shared_ptr<EndpointLive> live)
    : config_(&e), live_(std::move(live)) {
  auto& l = *live_;
  std::lock_guard lock(l.mutex);
  l.set_settings(e);
  workers_.reserve(e.workers.size());
  std::vector<const WorkerLive*> mine;
  for (std::size_t i = 0; i < e.workers.size(); ++i) {
    auto text = address_text_of(e.workers[i]);
    auto& slot = l.workers[text];
    auto w = slot.lock();
    if (!w) {
      w = std::make_shared<WorkerLive>(text);
      slot = w;
    } else if (w->health.load() == WorkerHealth::draining) {
      // Back after a reload removed it: the same live state, its last
      // known health (its in-flight requests never stopped counting).
      w->health.store(w->before_drain);
    }
    w->url = e.workers[i].url;
    mine.push_back(w.get());
    workers_.push_back(std::make_unique<WorkerState>(e.workers[i], i, std::move(w)));
  }
  for (auto it = l.workers.begin(); it != l.workers.end();) {
    auto w = it->second.lock();
    if (!w) {
      it = l.workers.erase(it);
      continue;
    }
    if (std::find(mine.begin(), mine.end(), w.get()) == mine.end()) l.drain(*w);
    ++it;
  }
  l.current = this;
  // New settings or new workers may let waiters through at once.
  dispatch_locked(l);
}

EndpointState::~EndpointState() {
  auto& l = *live_;
  // Destroyed after the lock is released: a waiter may hold the last
  // reference to a session, and so to another Runtime of this endpoint,
  // whose views lock the same mutex when they go.
  std::vector<std::shared_ptr<Waiter>> dropped;
  std::lock_guard lock(l.mutex);
  if (l.current == this) l.current = nullptr;
  // A waiter of this view can no longer be granted (its workers die with
  // it); its session has let go of the Runtime, so nobody waits for it.
  for (auto it = l.queue.begin(); it != l.queue.end();) {
    if ((*it)->endpoint == this) {
      (*it)->done = true;
      dropped.push_back(std::move(*it));
      it = l.queue.erase(it);
    } else {
      ++it;
    }
  }
  l.queued.store(l.queue.size());
}

bool EndpointState::any_eligible() const {
  const auto max = live_->max_concurrency.load(std::memory_order_relaxed);
  for (const auto& w : workers_) {
    if (w->health.load(std::memory_order_relaxed) != WorkerHealth::ready) continue;
    if (max == 0 || w->in_flight.load(std::memory_order_relaxed) < max) return true;
  }
  return false;
}

std::size_t EndpointState::free_slots() const {
  const auto max = live_->max_concurrency.load(std::memory_order_relaxed);
  std::size_t free = 0;
  for (const auto& w : workers_) {
    if (w->health.load(std::memory_order_relaxed) != WorkerHealth::ready) continue;
    if (max == 0) return std::numeric_limits<std::size_t>::max();
    const auto n = w->in_flight.load(std::memory_order_relaxed);
    if (n < max) free += max - n;
  }
  return free;
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
  auto& l = *live_;
  const auto max = l.max_concurrency.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const auto& w = *workers_[i];
    auto in_flight = w.in_flight.load(std::memory_order_relaxed);
    c[i].in_flight = in_flight;
    c[i].eligible = w.health.load(std::memory_order_relaxed) == WorkerHealth::ready && (max == 0 || in_flight < max);
  }
  // `avoid` is one of ours unless a caller mixed configurations: then it
  // cannot be told apart by position, and avoiding nothing is safe.
  std::size_t avoid_index = kNoWorker;
  if (avoid && avoid->index < workers_.size() && workers_[avoid->index].get() == avoid) avoid_index = avoid->index;
  auto rotation = l.rotation.fetch_add(1, std::memory_order_relaxed);
  auto i = select_worker(l.balance.load(std::memory_order_relaxed), c, rotation, random, avoid_index);
  if (i == kNoWorker) return nullptr;
  workers_[i]->in_flight.fetch_add(1, std::memory_order_relaxed);
  return workers_[i].get();
}

WorkerState* EndpointState::try_acquire(const WorkerState* avoid, std::uint64_t random) {
  // Without a concurrency limit and with nobody waiting, the only shared
  // state is atomic: no lock. A miss falls through to admit(), which
  // re-checks under the lock; a worker that turns ready dispatches under the
  // same lock, so no wake-up is lost. With a limit, check-and-count must be
  // one step against every other pick, so it is taken under the lock
  // (cheap next to a GPU request).
  auto& l = *live_;
  if (l.max_concurrency.load() == 0 && l.queued.load() == 0) return pick(avoid, random);
  std::lock_guard lock(l.mutex);
  return l.queue.empty() ? pick(avoid, random) : nullptr;
}

EndpointState::AdmitResult EndpointState::admit(const std::shared_ptr<Waiter>& waiter, std::uint64_t random) {
  auto& l = *live_;
  std::lock_guard lock(l.mutex);
  // Waiters first: those that queued on an older configuration may be
  // unable to use a worker this one has; once they took what they can, a
  // free slot left is fair game for this request.
  if (!l.queue.empty()) dispatch_locked(l);
  if (auto* w = pick(waiter->avoid, random)) return {Admission::granted, w};
  if (l.queue.size() >= l.queue_max.load()) return {Admission::queue_full, nullptr};
  waiter->endpoint = this;
  l.queue.push_back(waiter);
  l.queued.store(l.queue.size());
  return {Admission::queued, nullptr};
}

bool EndpointState::cancel(Waiter& waiter) {
  auto& l = *live_;
  std::lock_guard lock(l.mutex);
  if (waiter.done) return false;
  waiter.done = true;
  for (auto it = l.queue.begin(); it != l.queue.end(); ++it) {
    if (it->get() == &waiter) {
      l.queue.erase(it);
      break;
    }
  }
  l.queued.store(l.queue.size());
  return true;
}

EndpointState::ProbeSlot EndpointState::take_probe_slot(WorkerState& w) {
  auto& l = *live_;
  const auto max = l.max_concurrency.load();
  if (max == 0) return ProbeSlot::no_limit;
  std::lock_guard lock(l.mutex);
  if (w.in_flight.load() >= max) return ProbeSlot::busy;
  w.in_flight.fetch_add(1);
  return ProbeSlot::taken;
}

void EndpointState::release(WorkerState& w) {
  auto& l = *live_;
  // The decrement comes first and both loads after it (all sequentially
  // consistent): a reload that raises the limit from 0 stores it, then
  // dispatches under the lock, so either this release sees the limit and
  // dispatches, or that dispatch sees the freed slot.
  w.in_flight.fetch_sub(1);
  // Without a limit and without waiters, a free slot changes nothing for
  // anybody: waiters wait only for a ready worker, which record() dispatches.
  if (l.max_concurrency.load() == 0 && l.queued.load() == 0) return;
  std::lock_guard lock(l.mutex);
  dispatch_locked(l);
}

void EndpointState::dispatch_locked(EndpointLive& l) {
  std::size_t sent_back = 0;
  // One pass in arrival order: each waiter takes a worker of its own
  // configuration if one is eligible (so the WorkerState it gets lives as
  // long as its session's Runtime); a waiter whose configuration has none
  // of the free workers lets the next one try. The newest view decides
  // whether anything at all is free: every eligible worker is in it.
  for (auto it = l.queue.begin(); it != l.queue.end();) {
    if (!l.current || !l.current->any_eligible()) break;
    auto& waiter = *it;
    if (waiter->done) {
      it = l.queue.erase(it);
      continue;
    }
    l.dispatch_random ^= l.dispatch_random << 13;
    l.dispatch_random ^= l.dispatch_random >> 7;
    l.dispatch_random ^= l.dispatch_random << 17;
    auto* w = waiter->endpoint->pick(waiter->avoid, l.dispatch_random);
    // Queued on an older configuration that has no worker free while the
    // newest has one (a reload added it): back to admission, on the newest
    // (review: such waiters used to sit until queue.timeout). As many as
    // the newest has free slots, oldest first: the others keep their place.
    const bool send_back = !w && waiter->endpoint != l.current && sent_back < l.current->free_slots();
    if (!w && !send_back) {
      ++it;
      continue;
    }
    if (send_back) ++sent_back;
    auto granted = std::move(waiter);
    it = l.queue.erase(it);
    granted->done = true;
    boost::asio::post(*granted->io, [granted, w] { granted->on_grant(w); });
  }
  l.queued.store(l.queue.size());
}

WorkerHealth EndpointState::record(WorkerState& w, ProbeResult result) {
  auto& l = *live_;
  std::lock_guard lock(l.mutex);
  auto& live = *w.live;
  auto before = live.health.load(std::memory_order_relaxed);
  auto after = next_health(before, result, live.counters, l.health);
  if (after != before) {
    live.health.store(after, std::memory_order_relaxed);
    if (after == WorkerHealth::ready) dispatch_locked(l);
  }
  return after;
}

void EndpointState::dispatch() {
  auto& l = *live_;
  std::lock_guard lock(l.mutex);
  dispatch_locked(l);
}

std::size_t EndpointState::queue_length() const { return live_->queued.load(std::memory_order_relaxed); }

std::vector<DrainingWorker> EndpointState::draining_workers() const {
  auto& l = *live_;
  std::lock_guard lock(l.mutex);
  std::vector<DrainingWorker> out;
  for (const auto& [address, weak] : l.workers) {
    auto w = weak.lock();
    if (!w || w->health.load() != WorkerHealth::draining) continue;
    if (auto n = w->in_flight.load(); n > 0) out.push_back({w->url, w->address_text, n});
  }
  return out;
}

Runtime::Runtime(std::shared_ptr<const config::Config> c) : config(std::move(c)) {
  endpoints.reserve(config->endpoints.size());
  for (const auto& e : config->endpoints) {
    endpoints.push_back(std::make_unique<EndpointState>(e));
    by_id_.emplace(e.id, endpoints.back().get());
  }
}

void Runtime::inherit(const Runtime& previous) {
  std::unordered_map<std::string_view, std::shared_ptr<EndpointLive>> earlier;
  for (const auto& e : previous.endpoints) earlier.emplace(e->live()->id, e->live());
  for (const auto& l : previous.retired_) earlier.emplace(l->id, l);
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    const auto& e = config->endpoints[i];
    auto it = earlier.find(e.id);
    if (it == earlier.end()) continue;
    // The view built by the constructor had fresh live state; the one
    // that replaces it takes over the endpoint's.
    endpoints[i] = std::make_unique<EndpointState>(e, it->second);
    by_id_[e.id] = endpoints[i].get();
    earlier.erase(it);
  }
  // Endpoints this configuration no longer has: their workers drain, their
  // waiters can no longer be served (they time out), and their live state
  // is kept while busy in case the endpoint comes back.
  for (auto& [id, l] : earlier) {
    std::lock_guard lock(l->mutex);
    l->current = nullptr;
    for (const auto& [address, weak] : l->workers)
      if (auto w = weak.lock()) l->drain(*w);
    if (l->busy()) retired_.push_back(l);
  }
}

void Runtime::dispatch() const {
  for (const auto& e : endpoints) e->dispatch();
  // Endpoints this configuration removed: nothing can be granted there any
  // more, so their waiters go back to admission (which answers 503 at once)
  // rather than wait for queue.timeout.
  for (const auto& l : retired_) {
    std::vector<std::shared_ptr<Waiter>> sent;  // destroyed after the lock: see ~EndpointState
    std::lock_guard lock(l->mutex);
    if (l->current) continue;
    for (auto& waiter : l->queue) {
      if (!waiter->done) {
        waiter->done = true;
        boost::asio::post(*waiter->io, [waiter] { waiter->on_grant(nullptr); });
      }
      sent.push_back(std::move(waiter));
    }
    l->queue.clear();
    l->queued.store(0);
  }
}

EndpointState* Runtime::find(std::string_view id) const noexcept {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

}  // namespace frontdoor::lb
