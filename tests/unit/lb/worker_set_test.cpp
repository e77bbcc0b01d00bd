// Live worker state across reloads (review M3, design note D5): a Runtime
// built for a new configuration and given the previous one through
// inherit() shares the previous one's in-flight counts, health and queue.
#include "frontdoor/lb/worker_set.hpp"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace frontdoor::lb {
namespace {

config::Worker worker(std::uint16_t port) {
  config::Worker w;
  w.url = "http://127.0.0.1:" + std::to_string(port);
  w.authority = "127.0.0.1:" + std::to_string(port);
  w.address = {boost::asio::ip::make_address("127.0.0.1"), port};
  return w;
}

struct EndpointSpec {
  std::string id = "ep1";
  std::vector<std::uint16_t> ports = {5001};
  std::uint64_t max_concurrency = 0;
  std::uint64_t queue_max = 1024;
  config::Balance balance = config::Balance::round_robin;
};

std::shared_ptr<Runtime> runtime(std::vector<EndpointSpec> specs) {
  auto c = std::make_shared<config::Config>();
  for (const auto& s : specs) {
    config::Endpoint e;
    e.id = s.id;
    for (auto p : s.ports) e.workers.push_back(worker(p));
    e.max_concurrency = s.max_concurrency;
    e.queue.max = s.queue_max;
    e.balance = s.balance;
    e.health.unhealthy_after = 2;
    e.health.healthy_after = 1;
    c->endpoints.push_back(std::move(e));
  }
  return std::make_shared<Runtime>(std::move(c));
}

// A reload: a new runtime for `specs` that takes over `previous`.
std::shared_ptr<Runtime> reload(const Runtime& previous, std::vector<EndpointSpec> specs) {
  auto next = runtime(std::move(specs));
  next->inherit(previous);
  return next;
}

WorkerState& worker_of(const Runtime& rt, std::uint16_t port, std::string_view ep = "ep1") {
  for (const auto& w : rt.find(ep)->workers())
    if (w->config.address.port() == port) return *w;
  throw std::logic_error("no such worker");
}

void make_ready(const Runtime& rt, std::string_view ep = "ep1") {
  auto* e = rt.find(ep);
  for (const auto& w : e->workers()) e->record(*w, ProbeResult::ready);
}

// A waiter whose grant is recorded when `io` runs.
struct RecordingWaiter {
  explicit RecordingWaiter(boost::asio::io_context& io) : waiter(std::make_shared<Waiter>()) {
    waiter->io = &io;
    waiter->on_grant = [this](WorkerState* w) {
      granted = w;
      ++grants;
    };
  }
  std::shared_ptr<Waiter> waiter;
  WorkerState* granted = nullptr;  // nullptr after a grant: sent back to admission
  int grants = 0;
};

TEST(WorkerSet, InheritKeepsInFlightCounts) {
  auto rt1 = runtime({{.max_concurrency = 1}});
  make_ready(*rt1);
  auto* ep1 = rt1->find("ep1");
  WorkerState* held = ep1->try_acquire(nullptr, 1);
  ASSERT_NE(held, nullptr);

  auto rt2 = reload(*rt1, {{.max_concurrency = 1}});
  auto* ep2 = rt2->find("ep1");
  auto& w2 = worker_of(*rt2, 5001);
  EXPECT_EQ(w2.in_flight.load(), 1u) << "the request admitted before the reload no longer counts";
  EXPECT_EQ(w2.health.load(), WorkerHealth::ready);
  EXPECT_EQ(ep2->try_acquire(nullptr, 1), nullptr) << "max_concurrency 1 exceeded after a reload";

  // Released on the runtime it started on: the new runtime sees the slot.
  ep1->release(*held);
  EXPECT_EQ(w2.in_flight.load(), 0u);
  EXPECT_EQ(ep2->try_acquire(nullptr, 1), &w2);
}

TEST(WorkerSet, HealthCountersCarryOver) {
  auto rt1 = runtime({{}});
  make_ready(*rt1);
  auto& w1 = worker_of(*rt1, 5001);
  EXPECT_EQ(rt1->find("ep1")->record(w1, ProbeResult::failed), WorkerHealth::ready);  // 1 of 2
  auto rt2 = reload(*rt1, {{}});
  auto& w2 = worker_of(*rt2, 5001);
  EXPECT_EQ(rt2->find("ep1")->record(w2, ProbeResult::failed), WorkerHealth::unhealthy)
      << "the failure counted before the reload was forgotten";
  EXPECT_EQ(w1.health.load(), WorkerHealth::unhealthy);
}

TEST(WorkerSet, LeastOutstandingSeesRequestsOfTheOldRuntime) {
  auto rt1 = runtime({{.ports = {5001, 5002}, .balance = config::Balance::least_outstanding}});
  make_ready(*rt1);
  auto* ep1 = rt1->find("ep1");
  // A long stream on 5001, started before the reload.
  WorkerState* stream = nullptr;
  for (int i = 0; i < 4 && !stream; ++i) {
    auto* w = ep1->try_acquire(nullptr, 1);
    if (w->config.address.port() == 5001) stream = w;
    else ep1->release(*w);
  }
  ASSERT_NE(stream, nullptr);
  auto rt2 = reload(*rt1, {{.ports = {5001, 5002}, .balance = config::Balance::least_outstanding}});
  auto* ep2 = rt2->find("ep1");
  for (int i = 0; i < 4; ++i) {
    auto* w = ep2->try_acquire(nullptr, static_cast<std::uint64_t>(i));
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->config.address.port(), 5002) << "the stream on 5001 is ignored after the reload";
    ep2->release(*w);
  }
  ep1->release(*stream);
}

TEST(WorkerSet, WaiterQueuedBeforeReloadGetsTheSlotFreedAfterIt) {
  boost::asio::io_context io;
  auto rt1 = runtime({{.max_concurrency = 1}});
  make_ready(*rt1);
  auto* ep1 = rt1->find("ep1");
  auto* held = ep1->try_acquire(nullptr, 1);
  ASSERT_NE(held, nullptr);
  RecordingWaiter old_waiter(io);
  ASSERT_EQ(ep1->admit(old_waiter.waiter, 1).admission, EndpointState::Admission::queued);

  auto rt2 = reload(*rt1, {{.max_concurrency = 1}});
  auto* ep2 = rt2->find("ep1");
  EXPECT_EQ(ep2->queue_length(), 1u) << "the new runtime does not see the waiter";
  // A request arriving after the reload queues behind it.
  RecordingWaiter new_waiter(io);
  EXPECT_EQ(ep2->try_acquire(nullptr, 1), nullptr);
  ASSERT_EQ(ep2->admit(new_waiter.waiter, 1).admission, EndpointState::Admission::queued);
  EXPECT_EQ(ep2->queue_length(), 2u);

  ep1->release(*held);
  io.run();
  io.restart();
  ASSERT_EQ(old_waiter.granted, held) << "the old waiter gets a worker of its own runtime";
  EXPECT_EQ(new_waiter.granted, nullptr) << "FIFO: the second waiter must wait";
  EXPECT_EQ(worker_of(*rt2, 5001).in_flight.load(), 1u);

  ep1->release(*old_waiter.granted);
  io.run();
  ASSERT_EQ(new_waiter.granted, &worker_of(*rt2, 5001));
  EXPECT_EQ(ep2->queue_length(), 0u);
  ep2->release(*new_waiter.granted);
  EXPECT_EQ(worker_of(*rt2, 5001).in_flight.load(), 0u);
}

TEST(WorkerSet, WaiterQueuedBeforeReloadGetsAWorkerTurningReadyAfterIt) {
  boost::asio::io_context io;
  auto rt1 = runtime({{}});  // no limit: waiting is for a ready worker
  auto* ep1 = rt1->find("ep1");
  ep1->record(worker_of(*rt1, 5001), ProbeResult::failed);
  EXPECT_EQ(ep1->try_acquire(nullptr, 1), nullptr);
  RecordingWaiter waiter(io);
  ASSERT_EQ(ep1->admit(waiter.waiter, 1).admission, EndpointState::Admission::queued);

  auto rt2 = reload(*rt1, {{}});
  // The health checker probes the new runtime.
  rt2->find("ep1")->record(worker_of(*rt2, 5001), ProbeResult::ready);
  io.run();
  EXPECT_EQ(waiter.granted, &worker_of(*rt1, 5001));
  EXPECT_EQ(rt2->find("ep1")->queue_length(), 0u);
}

// rt1: one ready worker (5001) with max_concurrency 1, its slot `held`, and
// `old_waiter` queued behind it.
struct HeldAndQueued {
  boost::asio::io_context io;
  std::shared_ptr<Runtime> rt1 = runtime({{.max_concurrency = 1}});
  EndpointState* ep1 = nullptr;
  WorkerState* held = nullptr;
  RecordingWaiter old_waiter{io};
  HeldAndQueued() {
    make_ready(*rt1);
    ep1 = rt1->find("ep1");
    held = ep1->try_acquire(nullptr, 1);
    EXPECT_EQ(ep1->admit(old_waiter.waiter, 1).admission, EndpointState::Admission::queued);
  }
};

// The reload adds 5002; it turns ready. The old waiter cannot be given a
// worker that its runtime does not hold (its WorkerState would die with the
// new runtime): it is sent back to admission with on_grant(nullptr), and the
// session admits it again on the newest runtime, instead of leaving it to
// sit until queue.timeout while 5002 is idle.
TEST(WorkerSet, OldWaiterIsSentBackForAWorkerOnlyTheNewRuntimeHas) {
  HeldAndQueued f;
  auto& [io, rt1, ep1, held, old_waiter] = f;

  auto rt2 = reload(*rt1, {{.ports = {5001, 5002}, .max_concurrency = 1}});
  auto* ep2 = rt2->find("ep1");
  ep2->record(worker_of(*rt2, 5002), ProbeResult::ready);
  io.run();
  io.restart();
  EXPECT_EQ(old_waiter.grants, 1);
  EXPECT_EQ(old_waiter.granted, nullptr) << "sent back, with no slot taken";
  EXPECT_EQ(ep2->queue_length(), 0u);
  EXPECT_EQ(worker_of(*rt2, 5002).in_flight.load(), 0u);

  // Admitted again on the newest runtime, as the session does.
  RecordingWaiter again(io);
  auto admitted = ep2->admit(again.waiter, 1);
  ASSERT_EQ(admitted.admission, EndpointState::Admission::granted);
  EXPECT_EQ(admitted.worker, &worker_of(*rt2, 5002));

  ep1->release(*held);
  io.run();
  EXPECT_EQ(old_waiter.grants, 1);
  EXPECT_EQ(worker_of(*rt2, 5001).in_flight.load(), 0u);
}

// Only as many old waiters are sent back as the new workers have free
// slots, oldest first; the others keep their place in the queue.
TEST(WorkerSet, OldWaitersSentBackNoMoreThanTheNewWorkersCanTake) {
  boost::asio::io_context io;
  auto rt1 = runtime({{.max_concurrency = 1}});
  make_ready(*rt1);
  auto* ep1 = rt1->find("ep1");
  auto* held = ep1->try_acquire(nullptr, 1);
  RecordingWaiter first(io), second(io), third(io);
  for (auto* w : {&first, &second, &third})
    ASSERT_EQ(ep1->admit(w->waiter, 1).admission, EndpointState::Admission::queued);

  auto rt2 = reload(*rt1, {{.ports = {5001, 5002}, .max_concurrency = 1}});
  auto* ep2 = rt2->find("ep1");
  ep2->record(worker_of(*rt2, 5002), ProbeResult::ready);
  io.run();
  io.restart();
  EXPECT_EQ(first.grants, 1) << "the oldest goes first";
  EXPECT_EQ(second.grants, 0);
  EXPECT_EQ(third.grants, 0);
  EXPECT_EQ(ep2->queue_length(), 2u);
  ep1->release(*held);
  io.run();
  EXPECT_EQ(second.grants, 1);
  EXPECT_EQ(second.granted, held) << "5001 freed: granted on its own configuration";
  EXPECT_EQ(third.grants, 1) << "5002 is still free (nobody admitted the first again here)";
  EXPECT_EQ(third.granted, nullptr);
  EXPECT_EQ(ep2->queue_length(), 0u);
  ep1->release(*second.granted);
}

// A waiter whose runtime still has a free worker is granted it, not sent
// back, even though a newer runtime exists.
TEST(WorkerSet, OldWaiterIsGrantedAWorkerBothRuntimesHave) {
  HeldAndQueued f;
  auto& [io, rt1, ep1, held, old_waiter] = f;
  auto rt2 = reload(*rt1, {{.max_concurrency = 1}});
  rt2->dispatch();  // as the server does once rt2 is published: nothing free yet
  io.run();
  io.restart();
  EXPECT_EQ(old_waiter.grants, 0);
  ep1->release(*held);
  io.run();
  EXPECT_EQ(old_waiter.grants, 1);
  EXPECT_EQ(old_waiter.granted, held);
}

TEST(WorkerSet, RemovedWorkerDrainsAndKeepsItsCount) {
  auto rt1 = runtime({{.ports = {5001, 5002}, .max_concurrency = 1}});
  make_ready(*rt1);
  auto* ep1 = rt1->find("ep1");
  auto& a1 = worker_of(*rt1, 5001);
  // Take both slots, then free 5002.
  auto* x = ep1->try_acquire(nullptr, 1);
  auto* y = ep1->try_acquire(nullptr, 2);
  ASSERT_TRUE(x && y);
  ep1->release(x == &a1 ? *y : *x);
  EXPECT_EQ(a1.in_flight.load(), 1u);

  auto rt2 = reload(*rt1, {{.ports = {5002}, .max_concurrency = 1}});
  EXPECT_EQ(a1.health.load(), WorkerHealth::draining);
  EXPECT_EQ(a1.in_flight.load(), 1u);
  auto draining = rt2->find("ep1")->draining_workers();
  ASSERT_EQ(draining.size(), 1u);
  EXPECT_EQ(draining[0].address_text, "127.0.0.1:5001");
  EXPECT_EQ(draining[0].url, "http://127.0.0.1:5001");
  EXPECT_EQ(draining[0].in_flight, 1u);
  // Nothing new goes to it, from either runtime.
  for (int i = 0; i < 4; ++i) {
    auto* w = ep1->try_acquire(nullptr, static_cast<std::uint64_t>(i));
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->config.address.port(), 5002);
    ep1->release(*w);
  }
  // A probe result on the draining worker does not bring it back.
  EXPECT_EQ(ep1->record(a1, ProbeResult::ready), WorkerHealth::draining);

  // It comes back while its request still runs: the same live state.
  auto rt3 = reload(*rt2, {{.ports = {5001, 5002}, .max_concurrency = 1}});
  auto& a3 = worker_of(*rt3, 5001);
  EXPECT_EQ(a3.live, a1.live);
  EXPECT_EQ(a3.in_flight.load(), 1u);
  EXPECT_EQ(a3.health.load(), WorkerHealth::ready) << "its health before it was removed";
  EXPECT_TRUE(rt3->find("ep1")->draining_workers().empty());
  EXPECT_EQ(rt3->find("ep1")->try_acquire(nullptr, 1), &worker_of(*rt3, 5002));
  ep1->release(a1);
  EXPECT_EQ(a3.in_flight.load(), 0u);
}

TEST(WorkerSet, DrainingWorkerLeavesTheListWhenItsRequestsEnd) {
  auto rt1 = runtime({{.ports = {5001}}});
  make_ready(*rt1);
  auto* ep1 = rt1->find("ep1");
  auto* w = ep1->try_acquire(nullptr, 1);
  auto rt2 = reload(*rt1, {{.ports = {5002}}});
  EXPECT_EQ(rt2->find("ep1")->draining_workers().size(), 1u);
  ep1->release(*w);
  EXPECT_TRUE(rt2->find("ep1")->draining_workers().empty());
}

TEST(WorkerSet, NewSettingsApplyFromTheReloadOn) {
  boost::asio::io_context io;
  auto rt1 = runtime({{.max_concurrency = 1, .queue_max = 1}});
  make_ready(*rt1);
  auto* ep1 = rt1->find("ep1");
  auto* first = ep1->try_acquire(nullptr, 1);
  ASSERT_NE(first, nullptr);
  RecordingWaiter waiter(io);
  ASSERT_EQ(ep1->admit(waiter.waiter, 1).admission, EndpointState::Admission::queued);

  // Raised to 2: the waiter is let through by the reload itself.
  auto rt2 = reload(*rt1, {{.max_concurrency = 2, .queue_max = 1}});
  io.run();
  io.restart();
  EXPECT_EQ(waiter.granted, first);
  EXPECT_EQ(first->in_flight.load(), 2u);

  // Lowered to 1 with 2 in flight: nothing more, even on the old runtime.
  auto rt3 = reload(*rt2, {{.max_concurrency = 1, .queue_max = 2}});
  EXPECT_EQ(ep1->try_acquire(nullptr, 1), nullptr);
  EXPECT_EQ(rt3->find("ep1")->try_acquire(nullptr, 1), nullptr);
  RecordingWaiter a(io), b(io), c(io);
  EXPECT_EQ(rt3->find("ep1")->admit(a.waiter, 1).admission, EndpointState::Admission::queued);
  EXPECT_EQ(ep1->admit(b.waiter, 1).admission, EndpointState::Admission::queued) << "queue.max 2 applies";
  EXPECT_EQ(rt3->find("ep1")->admit(c.waiter, 1).admission, EndpointState::Admission::queue_full);
  ep1->release(*first);
  io.run();
  io.restart();
  EXPECT_EQ(a.granted, nullptr) << "2 in flight → 1 still over the new limit of 1";
  ep1->release(*first);
  io.run();
  io.restart();
  ASSERT_NE(a.granted, nullptr);
  EXPECT_EQ(b.granted, nullptr);
  EXPECT_TRUE(ep1->cancel(*b.waiter));
  rt3->find("ep1")->release(*a.granted);
}

TEST(WorkerSet, EndpointRemovedAndBackKeepsItsLiveState) {
  auto rt1 = runtime({{}});
  make_ready(*rt1);
  auto* w = rt1->find("ep1")->try_acquire(nullptr, 1);
  ASSERT_NE(w, nullptr);
  auto rt2 = reload(*rt1, {{.id = "other", .ports = {6001}}});
  EXPECT_EQ(rt2->find("ep1"), nullptr);
  EXPECT_EQ(w->health.load(), WorkerHealth::draining);
  auto rt3 = reload(*rt2, {{}});
  auto& back = worker_of(*rt3, 5001);
  EXPECT_EQ(back.live, w->live);
  EXPECT_EQ(back.in_flight.load(), 1u);
  EXPECT_EQ(back.health.load(), WorkerHealth::ready);
  rt1->find("ep1")->release(*w);
}

TEST(WorkerSet, WaitersOfARuntimeThatGoesAreDropped) {
  boost::asio::io_context io;
  auto rt1 = runtime({{.max_concurrency = 1}});
  make_ready(*rt1);
  auto* held = rt1->find("ep1")->try_acquire(nullptr, 1);
  RecordingWaiter waiter(io);
  ASSERT_EQ(rt1->find("ep1")->admit(waiter.waiter, 1).admission, EndpointState::Admission::queued);
  auto rt2 = reload(*rt1, {{.max_concurrency = 1}});
  EXPECT_EQ(rt2->find("ep1")->queue_length(), 1u);
  held->live->in_flight.fetch_sub(1);  // what rt1's release would do, without touching rt1 after it goes
  rt1.reset();
  EXPECT_EQ(rt2->find("ep1")->queue_length(), 0u) << "a waiter nothing can grant stays queued";
  EXPECT_TRUE(waiter.waiter->done);
  EXPECT_NE(rt2->find("ep1")->try_acquire(nullptr, 1), nullptr);
}

// A reload that removes an endpoint sends its waiters back to admission
// once the new runtime is published: there they find no endpoint (503 at
// once), instead of waiting for queue.timeout.
TEST(WorkerSet, WaitersOfARemovedEndpointAreSentBack) {
  boost::asio::io_context io;
  auto rt1 = runtime({{.max_concurrency = 1}});
  make_ready(*rt1);
  auto* held = rt1->find("ep1")->try_acquire(nullptr, 1);
  RecordingWaiter waiter(io);
  ASSERT_EQ(rt1->find("ep1")->admit(waiter.waiter, 1).admission, EndpointState::Admission::queued);
  auto rt2 = reload(*rt1, {{.id = "other", .ports = {6001}}});
  io.run();
  io.restart();
  EXPECT_EQ(waiter.grants, 0) << "sent back before the new runtime was published";
  rt2->dispatch();
  io.run();
  EXPECT_EQ(waiter.grants, 1);
  EXPECT_EQ(waiter.granted, nullptr);
  EXPECT_EQ(rt1->find("ep1")->queue_length(), 0u);
  rt1->find("ep1")->release(*held);
}

// Concurrent clients on several threads, max_concurrency 1, with reloads
// all along: the worker never has two requests admitted at once.
TEST(WorkerSet, LimitHoldsUnderConcurrencyAndReloads) {
  std::mutex published_mu;
  std::shared_ptr<Runtime> published = runtime({{.max_concurrency = 1}});
  make_ready(*published);
  auto current = [&] {
    std::lock_guard lk(published_mu);
    return published;
  };
  std::atomic<int> holding{0}, max_holding{0}, served{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      boost::asio::io_context io;
      auto busy = boost::asio::make_work_guard(io);  // run_one_for waits for a grant
      std::uint64_t r = static_cast<std::uint64_t>(t) + 1;
      for (int i = 0; i < 2000; ++i) {
        auto rt = current();  // the session's runtime, held until the request ends
        auto* ep = rt->find("ep1");
        WorkerState* w = nullptr;
        while (!w) {
          w = ep->try_acquire(nullptr, ++r);
          if (w) break;
          RecordingWaiter waiter(io);
          auto a = ep->admit(waiter.waiter, ++r);
          if (a.admission == EndpointState::Admission::granted) {
            w = a.worker;
            break;
          }
          ASSERT_EQ(a.admission, EndpointState::Admission::queued);
          while (waiter.grants == 0) {
            io.run_one_for(std::chrono::milliseconds(50));
            ASSERT_FALSE(stop.load()) << "a waiter was never granted";
          }
          w = waiter.granted;
          if (!w) {  // sent back: admitted again on the newest runtime, as a session does
            rt = current();
            ep = rt->find("ep1");
          }
        }
        int now = ++holding;
        int seen = max_holding.load();
        while (now > seen && !max_holding.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::yield();
        --holding;
        ep->release(*w);
        ++served;
      }
    });
  }
  std::thread reloader([&] {
    while (served.load() < 8000 && !stop.load()) {
      auto next = reload(*current(), {{.max_concurrency = 1}});
      std::lock_guard lk(published_mu);
      published = std::move(next);
    }
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (served.load() < 8000 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  stop = true;
  for (auto& c : clients) c.join();
  reloader.join();
  EXPECT_EQ(served.load(), 8000);
  EXPECT_EQ(max_holding.load(), 1);
  EXPECT_EQ(worker_of(*current(), 5001).in_flight.load(), 0u);
  EXPECT_EQ(current()->find("ep1")->queue_length(), 0u);
}

}  // namespace
}  // namespace frontdoor::lb
