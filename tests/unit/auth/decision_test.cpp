#include "frontdoor/auth/decision.hpp"

#include <gtest/gtest.h>

namespace frontdoor::auth {
namespace {

using core::Reason;

constexpr core::UnixSeconds kNow = 1'800'000'000;

Key scoped_key() {
  Key k;
  k.id = "key_00000001";
  k.hash = sha256("t");
  k.default_access = Access::none;
  k.endpoints = {{"ep_read", Access::read}, {"ep_rw", Access::read_write}};
  return k;
}

TEST(Decision, ReadMethodsAreExactAndCaseSensitive) {
  EXPECT_TRUE(is_read_method("GET"));
  EXPECT_TRUE(is_read_method("HEAD"));
  EXPECT_TRUE(is_read_method("OPTIONS"));
  EXPECT_FALSE(is_read_method("get"));
  EXPECT_FALSE(is_read_method("POST"));
  EXPECT_FALSE(is_read_method("GETX"));
  EXPECT_FALSE(is_read_method(""));
}

TEST(Decision, UnknownKey) {
  EXPECT_EQ(decide(nullptr, kNow, "ep_rw", true, "GET"), Reason::invalid_api_key);
  EXPECT_EQ(decide(nullptr, kNow, "nope", false, "GET"), Reason::invalid_api_key);
}

TEST(Decision, DisabledComesBeforeExpiredAndScope) {
  Key k = scoped_key();
  k.enabled = false;
  k.expires_at = kNow - 10;
  EXPECT_EQ(decide(&k, kNow, "ep_rw", true, "GET"), Reason::api_key_disabled);
  EXPECT_EQ(decide(&k, kNow, "nope", false, "POST"), Reason::api_key_disabled);
}

TEST(Decision, Expired) {
  Key k = scoped_key();
  k.expires_at = kNow;  // expiry instant itself is expired
  EXPECT_EQ(decide(&k, kNow, "ep_rw", true, "GET"), Reason::api_key_expired);
  k.expires_at = kNow + 1;
  EXPECT_EQ(decide(&k, kNow, "ep_rw", true, "GET"), Reason::none);
}

TEST(Decision, ReadAccessAllowsOnlyReadMethods) {
  const Key k = scoped_key();
  for (auto m : {"GET", "HEAD", "OPTIONS"})
    EXPECT_EQ(decide(&k, kNow, "ep_read", true, m), Reason::none) << m;
  for (auto m : {"POST", "PUT", "DELETE", "PATCH", "get"}) {
    EXPECT_EQ(decide(&k, kNow, "ep_read", true, m), Reason::insufficient_scope) << m;
  }
}

TEST(Decision, ReadWriteAllowsEveryMethod) {
  const Key k = scoped_key();
  for (auto m : {"GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"}) {
    EXPECT_EQ(decide(&k, kNow, "ep_rw", true, m), Reason::none) << m;
  }
}

TEST(Decision, StarDefaultAppliesToUnlistedEndpoints) {
  Key k = scoped_key();
  EXPECT_EQ(decide(&k, kNow, "other", true, "GET"), Reason::insufficient_scope);
  k.default_access = Access::read;
  EXPECT_EQ(decide(&k, kNow, "other", true, "GET"), Reason::none);
  EXPECT_EQ(decide(&k, kNow, "other", true, "POST"), Reason::insufficient_scope);
  k.default_access = Access::read_write;
  EXPECT_EQ(decide(&k, kNow, "other", true, "POST"), Reason::none);
}

TEST(Decision, ExplicitNoneOverridesStar) {
  Key k = scoped_key();
  k.default_access = Access::read_write;
  k.endpoints = {{"blocked", Access::none}};
  EXPECT_EQ(decide(&k, kNow, "blocked", true, "GET"), Reason::insufficient_scope);
  EXPECT_EQ(decide(&k, kNow, "other", true, "GET"), Reason::none);
}

TEST(Decision, LegacyAccessAppliesEverywhere) {
  Key k;
  k.id = "key_legacy01";
  k.legacy_access = Access::read;
  k.endpoints = {{"ep", Access::read_write}};  // ignored for a legacy key
  EXPECT_EQ(decide(&k, kNow, "ep", true, "GET"), Reason::none);
  EXPECT_EQ(decide(&k, kNow, "ep", true, "POST"), Reason::insufficient_scope);
  EXPECT_EQ(decide(&k, kNow, "any", true, "HEAD"), Reason::none);
  EXPECT_EQ(decide(&k, kNow, "unknown", false, "POST"), Reason::endpoint_not_found);
  k.legacy_access = Access::read_write;
  EXPECT_EQ(decide(&k, kNow, "any", true, "DELETE"), Reason::none);
}

TEST(Decision, UnknownEndpointIs404OnlyForKeysThatReachEverything) {
  Key k = scoped_key();  // "*": none
  EXPECT_EQ(decide(&k, kNow, "nope", false, "GET"), Reason::insufficient_scope);
  EXPECT_EQ(decide(&k, kNow, "", false, "GET"), Reason::insufficient_scope);
  k.default_access = Access::read;
  // "whatever the method": a read-only key asking POST still learns 404.
  EXPECT_EQ(decide(&k, kNow, "nope", false, "GET"), Reason::endpoint_not_found);
  EXPECT_EQ(decide(&k, kNow, "nope", false, "POST"), Reason::endpoint_not_found);
  EXPECT_EQ(decide(&k, kNow, "", false, "GET"), Reason::endpoint_not_found);
  k.default_access = Access::read_write;
  EXPECT_EQ(decide(&k, kNow, "nope", false, "DELETE"), Reason::endpoint_not_found);
}

TEST(Decision, AccessForUsesSortedEndpoints) {
  Key k;
  k.default_access = Access::read;
  k.endpoints = {{"a", Access::none}, {"b", Access::read_write}, {"c", Access::none}};
  EXPECT_EQ(k.access_for("a"), Access::none);
  EXPECT_EQ(k.access_for("b"), Access::read_write);
  EXPECT_EQ(k.access_for("c"), Access::none);
  EXPECT_EQ(k.access_for("bb"), Access::read);
  EXPECT_EQ(k.access_for(""), Access::read);
}

TEST(Access, StringRoundTrip) {
  for (Access a : {Access::none, Access::read, Access::read_write}) {
    EXPECT_EQ(parse_access(to_string(a)), a);
  }
  EXPECT_FALSE(parse_access("READ"));
  EXPECT_FALSE(parse_access("write"));
  EXPECT_FALSE(parse_access(""));
}

TEST(KeySet, LookupsAndDuplicates) {
  std::vector<Key> keys(3);
  for (int i = 0; i < 3; ++i) {
    keys[i].id = "key_" + std::to_string(i);
    keys[i].hash = sha256("token" + std::to_string(i));
  }
  keys[2].endpoints = {{"z", Access::read}, {"a", Access::read_write}};  // unsorted on input
  const KeySet set(keys);
  ASSERT_EQ(set.size(), 3u);
  ASSERT_NE(set.find_by_hash(sha256("token1")), nullptr);
  EXPECT_EQ(set.find_by_hash(sha256("token1"))->id, "key_1");
  EXPECT_EQ(set.find_by_hash(sha256("token9")), nullptr);
  EXPECT_EQ(set.find_by_id("key_2")->hash, sha256("token2"));
  EXPECT_EQ(set.find_by_id("key_9"), nullptr);
  EXPECT_EQ(set.find_by_id("key_2")->access_for("a"), Access::read_write);
  EXPECT_EQ(set.find_by_id("key_2")->access_for("z"), Access::read);

  // A copy has its own index, valid after the original is gone.
  auto original = std::make_unique<KeySet>(keys);
  const KeySet copy = *original;
  original.reset();
  ASSERT_NE(copy.find_by_id("key_0"), nullptr);
  EXPECT_EQ(copy.find_by_id("key_0")->id, "key_0");

  auto dup_id = keys;
  dup_id[1].id = "key_0";
  EXPECT_THROW(KeySet{dup_id}, std::invalid_argument);
  auto dup_hash = keys;
  dup_hash[1].hash = dup_hash[0].hash;
  EXPECT_THROW(KeySet{dup_hash}, std::invalid_argument);
}

}  // namespace
}  // namespace frontdoor::auth
