#include "frontdoor/lb/balancer.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

namespace frontdoor::lb {
namespace {

using config::Balance;

std::vector<Candidate> ready(std::initializer_list<std::uint32_t> in_flight) {
  std::vector<Candidate> c;
  for (auto n : in_flight) c.push_back({n, true});
  return c;
}

std::map<std::size_t, int> distribution(Balance b, const std::vector<Candidate>& c, int rounds,
                                        std::size_t avoid = kNoWorker) {
  std::map<std::size_t, int> hits;
  std::mt19937_64 rng(42);
  for (int i = 0; i < rounds; ++i) ++hits[select_worker(b, c, static_cast<std::uint64_t>(i), rng(), avoid)];
  return hits;
}

TEST(Balancer, NoWorkersOrNoneEligible) {
  EXPECT_EQ(select_worker(Balance::round_robin, {}, 0, 0, kNoWorker), kNoWorker);
  std::vector<Candidate> c{{0, false}, {0, false}};
  for (auto b : {Balance::round_robin, Balance::least_outstanding, Balance::power_of_two})
    EXPECT_EQ(select_worker(b, c, 3, 7, kNoWorker), kNoWorker);
}

TEST(Balancer, RoundRobinSpreadsEvenlyAndSkipsIneligible) {
  auto c = ready({0, 0, 0});
  auto hits = distribution(Balance::round_robin, c, 300);
  EXPECT_EQ(hits[0], 100);
  EXPECT_EQ(hits[1], 100);
  EXPECT_EQ(hits[2], 100);
  c[1].eligible = false;
  hits = distribution(Balance::round_robin, c, 300);
  EXPECT_EQ(hits.count(1), 0u);
  EXPECT_EQ(hits[0] + hits[2], 300);
  EXPECT_NEAR(hits[0], 150, 100);  // the skipped worker's turns go to the next one
}

TEST(Balancer, LeastOutstandingPicksTheLeastLoaded) {
  auto c = ready({5, 1, 3});
  for (std::uint64_t r = 0; r < 10; ++r) EXPECT_EQ(select_worker(Balance::least_outstanding, c, r, 0, kNoWorker), 1u);
}

TEST(Balancer, LeastOutstandingSharesTiesEvenly) {
  auto hits = distribution(Balance::least_outstanding, ready({2, 2, 7, 2}), 300);
  EXPECT_EQ(hits.count(2), 0u);
  EXPECT_EQ(hits[0] + hits[1] + hits[3], 300);
  for (std::size_t i : {0u, 1u, 3u}) EXPECT_GE(hits[i], 50) << i;
}

TEST(Balancer, PowerOfTwoNeverPicksTheMostLoadedOfTwo) {
  // With two workers both are always sampled: the less loaded always wins.
  auto c = ready({4, 1});
  auto hits = distribution(Balance::power_of_two, c, 200);
  EXPECT_EQ(hits[1], 200);
}

TEST(Balancer, PowerOfTwoFavoursLightWorkersAndUsesAll) {
  auto c = ready({0, 0, 0, 10});
  auto hits = distribution(Balance::power_of_two, c, 4000);
  // Worker 3 is always the more loaded of any pair it is drawn into.
  EXPECT_EQ(hits.count(3), 0u);
  for (std::size_t i : {0u, 1u, 2u}) EXPECT_GT(hits[i], 800) << i;
  // Equal loads: each of two sampled workers wins, so all are used about evenly.
  auto even = distribution(Balance::power_of_two, ready({0, 0, 0, 0}), 4000);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_NEAR(even[i], 1000, 250) << i;
}

TEST(Balancer, AvoidsTheFailedWorkerWhenAnotherIsEligible) {
  auto c = ready({0, 0});
  for (auto b : {Balance::round_robin, Balance::least_outstanding, Balance::power_of_two}) {
    auto hits = distribution(b, c, 50, 0);
    EXPECT_EQ(hits.count(0), 0u);
    EXPECT_EQ(hits[1], 50);
  }
  // ...but uses it when it is the only eligible one.
  c[1].eligible = false;
  EXPECT_EQ(select_worker(Balance::round_robin, c, 0, 0, 0), 0u);
}

TEST(Balancer, LeastOutstandingSendsLessToASlowWorker) {
  // A slow worker accumulates requests in flight; simulate a closed loop in
  // which worker 1 takes 5 times as long per request as worker 0.
  std::map<Balance, double> slow_share;
  for (auto b : {Balance::round_robin, Balance::least_outstanding, Balance::power_of_two}) {
    std::vector<Candidate> c = ready({0, 0});
    std::vector<int> sent(2, 0);
    std::vector<std::vector<int>> finishing(2);
    std::mt19937_64 rng(1);
    std::uint64_t rotation = 0;
    for (int t = 0; t < 2000; ++t) {
      // 8 requests in flight in total, as from 8 concurrent clients.
      while (c[0].in_flight + c[1].in_flight < 8) {
        auto i = select_worker(b, c, rotation++, rng(), kNoWorker);
        ++c[i].in_flight;
        ++sent[i];
        finishing[i].push_back(t + (i == 0 ? 1 : 5));
      }
      for (std::size_t i = 0; i < 2; ++i) {
        auto& f = finishing[i];
        for (auto it = f.begin(); it != f.end();)
          if (*it <= t) {
            --c[i].in_flight;
            it = f.erase(it);
          } else {
            ++it;
          }
      }
    }
    slow_share[b] = static_cast<double>(sent[1]) / (sent[0] + sent[1]);
  }
  EXPECT_NEAR(slow_share[Balance::round_robin], 0.5, 0.05);  // blind to load
  EXPECT_LT(slow_share[Balance::least_outstanding], 0.3);
  EXPECT_LT(slow_share[Balance::power_of_two], 0.3);
}

TEST(Health, FirstProbeDecidesAtOnce) {
  config::Health h;
  h.healthy_after = 3;
  h.unhealthy_after = 3;
  HealthCounters c;
  EXPECT_EQ(next_health(WorkerHealth::unknown, ProbeResult::ready, c, h), WorkerHealth::ready);
  HealthCounters d;
  EXPECT_EQ(next_health(WorkerHealth::unknown, ProbeResult::failed, d, h), WorkerHealth::unhealthy);
  HealthCounters e;
  EXPECT_EQ(next_health(WorkerHealth::unknown, ProbeResult::initializing, e, h), WorkerHealth::initializing);
}

TEST(Health, Thresholds) {
  config::Health h;
  h.healthy_after = 2;
  h.unhealthy_after = 3;
  HealthCounters c;
  auto s = WorkerHealth::ready;
  s = next_health(s, ProbeResult::failed, c, h);
  s = next_health(s, ProbeResult::failed, c, h);
  EXPECT_EQ(s, WorkerHealth::ready);
  s = next_health(s, ProbeResult::ready, c, h);  // a success resets the failures
  s = next_health(s, ProbeResult::failed, c, h);
  s = next_health(s, ProbeResult::failed, c, h);
  EXPECT_EQ(s, WorkerHealth::ready);
  s = next_health(s, ProbeResult::failed, c, h);
  EXPECT_EQ(s, WorkerHealth::unhealthy);
  s = next_health(s, ProbeResult::ready, c, h);
  EXPECT_EQ(s, WorkerHealth::unhealthy);
  s = next_health(s, ProbeResult::ready, c, h);
  EXPECT_EQ(s, WorkerHealth::ready);
}

TEST(Health, InitializingIsNotAFailureAndNotRouted) {
  config::Health h;
  HealthCounters c;
  auto s = next_health(WorkerHealth::ready, ProbeResult::initializing, c, h);
  EXPECT_EQ(s, WorkerHealth::initializing);
  s = next_health(s, ProbeResult::ready, c, h);  // healthy_after: 1 by default
  EXPECT_EQ(s, WorkerHealth::ready);
  EXPECT_EQ(next_health(WorkerHealth::draining, ProbeResult::ready, c, h), WorkerHealth::draining);
}

TEST(Health, ProbeStatus) {
  EXPECT_EQ(classify_probe_status(200), ProbeResult::ready);
  EXPECT_EQ(classify_probe_status(299), ProbeResult::ready);
  EXPECT_EQ(classify_probe_status(204), ProbeResult::initializing);
  EXPECT_EQ(classify_probe_status(301), ProbeResult::failed);
  EXPECT_EQ(classify_probe_status(503), ProbeResult::failed);
}

}  // namespace
}  // namespace frontdoor::lb
