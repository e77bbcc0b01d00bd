// The admin key API's pure parts: request bodies and queries to values (with
// the offending field named), keys to JSON (never a hash).
#include "frontdoor/admin/keys_api.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "frontdoor/auth/token.hpp"
#include "frontdoor/core/time.hpp"

namespace frontdoor::admin {
namespace {

namespace json = boost::json;
using auth::Access;

// --------------------------------------------------------------- key_to_json

auth::Key scoped_key() {
  auth::Key k;
  k.id = "key_2f8c1a9e";
  k.name = "ci-bot";
  k.hash = auth::sha256("rpa_secret");
  k.prefix = "rpa_7Q2F";
  k.enabled = true;
  k.created_at = *core::parse_rfc3339("2026-11-22T04:00:00Z");
  k.management = Access::read;
  k.default_access = Access::none;
  k.endpoints = {{"ep1", Access::read_write}, {"ep2", Access::read}};
  k.requests_total = 7;
  return k;
}

TEST(KeyToJson, ScopedKeyHasEveryFieldAndNoHash) {
  const auth::Key k = scoped_key();
  const json::object o = key_to_json(k);
  EXPECT_EQ(o.at("id"), "key_2f8c1a9e");
  EXPECT_EQ(o.at("name"), "ci-bot");
  EXPECT_EQ(o.at("prefix"), "rpa_7Q2F");
  EXPECT_EQ(o.at("enabled"), true);
  EXPECT_EQ(o.at("created_at"), "2026-11-22T04:00:00Z");
  EXPECT_TRUE(o.at("last_used_at").is_null());
  EXPECT_TRUE(o.at("expires_at").is_null());
  EXPECT_EQ(o.at("management"), "read");
  EXPECT_EQ(o.at("endpoints"),
            (json::object{{"*", "none"}, {"ep1", "read_write"}, {"ep2", "read"}}));
  EXPECT_FALSE(o.contains("legacy_access"));
  EXPECT_TRUE(o.at("rate_limit").is_null());
  EXPECT_EQ(o.at("requests_total"), 7u);
  EXPECT_FALSE(o.contains("hash"));
  const std::string text = json::serialize(o);
  EXPECT_EQ(text.find("sha256"), std::string::npos) << text;
  EXPECT_EQ(text.find(auth::hash_form(k.hash).substr(7)), std::string::npos) << text;
  EXPECT_EQ(o.size(), 11u) << text;
}

TEST(KeyToJson, LegacyKeyShowsLegacyAccessInsteadOfEndpoints) {
  auth::Key k;
  k.id = "key_legacy01";
  k.name = "old";
  k.legacy_access = Access::read_write;
  k.last_used_at = *core::parse_rfc3339("2026-01-02T03:04:05Z");
  k.expires_at = *core::parse_rfc3339("2027-01-01T00:00:00Z");
  const json::object o = key_to_json(k);
  EXPECT_EQ(o.at("legacy_access"), "read_write");
  EXPECT_FALSE(o.contains("endpoints"));
  EXPECT_TRUE(o.at("prefix").is_null());
  EXPECT_TRUE(o.at("created_at").is_null());
  EXPECT_EQ(o.at("last_used_at"), "2026-01-02T03:04:05Z");
  EXPECT_EQ(o.at("expires_at"), "2027-01-01T00:00:00Z");
}

TEST(KeyToJson, RateLimitIntegralRpsIsAnInteger) {
  auth::Key k = scoped_key();
  k.rate_limit = auth::RateLimit{50, 100, 8};
  EXPECT_EQ(json::serialize(key_to_json(k).at("rate_limit")),
            R"({"rps":50,"burst":100,"max_concurrent":8})");
  k.rate_limit->rps = 2.5;
  EXPECT_EQ(key_to_json(k).at("rate_limit").at("rps"), 2.5);
}

// --------------------------------------------------------------- POST body

TEST(ParseNewKey, MinimalBodyGetsDefaults) {
  auto p = parse_new_key(R"({"name":"bot"})");
  ASSERT_TRUE(p) << p.error.field << ": " << p.error.message;
  EXPECT_EQ(p.value->name, "bot");
  EXPECT_TRUE(p.value->enabled);
  EXPECT_EQ(p.value->management, Access::none);
  EXPECT_EQ(p.value->default_access, Access::none);
  EXPECT_TRUE(p.value->endpoints.empty());
  EXPECT_FALSE(p.value->legacy_access);
  EXPECT_FALSE(p.value->expires_at);
  EXPECT_FALSE(p.value->rate_limit);
}

TEST(ParseNewKey, FullBody) {
  auto p = parse_new_key(R"({"name":"bot","enabled":false,"management":"read_write",
      "endpoints":{"zz":"read","*":"read","ep1":"read_write","ep_2":"none"},
      "expires_at":"2027-01-01T00:00:00Z","rate_limit":null})");
  ASSERT_TRUE(p) << p.error.field << ": " << p.error.message;
  EXPECT_FALSE(p.value->enabled);
  EXPECT_EQ(p.value->management, Access::read_write);
  EXPECT_EQ(p.value->default_access, Access::read);
  using E = std::vector<std::pair<std::string, Access>>;
  EXPECT_EQ(p.value->endpoints,
            (E{{"ep1", Access::read_write}, {"ep_2", Access::none}, {"zz", Access::read}}));
  EXPECT_EQ(p.value->expires_at, core::parse_rfc3339("2027-01-01T00:00:00Z"));
  EXPECT_FALSE(p.value->rate_limit);
}

TEST(ParseNewKey, RateLimit) {
  auto p = parse_new_key(R"({"name":"b","rate_limit":{"rps":2.5,"burst":10,"max_concurrent":4}})");
  ASSERT_TRUE(p) << p.error.field << ": " << p.error.message;
  ASSERT_TRUE(p.value->rate_limit);
  EXPECT_EQ(p.value->rate_limit->rps, 2.5);
  EXPECT_EQ(p.value->rate_limit->burst, 10u);
  EXPECT_EQ(p.value->rate_limit->max_concurrent, 4u);
  p = parse_new_key(R"({"name":"b","rate_limit":{"rps":1,"burst":1}})");
  ASSERT_TRUE(p) << p.error.field << ": " << p.error.message;
  EXPECT_EQ(p.value->rate_limit->max_concurrent, 0u);  // unlimited
}

TEST(ParseNewKey, LegacyKey) {
  auto p = parse_new_key(R"({"name":"old","legacy_access":"read","expires_at":null})");
  ASSERT_TRUE(p) << p.error.field << ": " << p.error.message;
  EXPECT_EQ(p.value->legacy_access, Access::read);
  EXPECT_FALSE(p.value->expires_at);
}

struct BadBody {
  const char* body;
  const char* field;
  const char* message_part;
};

void PrintTo(const BadBody& b, std::ostream* os) { *os << b.body; }

class ParseNewKeyRefuses : public ::testing::TestWithParam<BadBody> {};

TEST_P(ParseNewKeyRefuses, NamingTheField) {
  auto p = parse_new_key(GetParam().body);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error.field, GetParam().field);
  EXPECT_NE(p.error.message.find(GetParam().message_part), std::string::npos) << p.error.message;
}

INSTANTIATE_TEST_SUITE_P(
    Bodies, ParseNewKeyRefuses,
    ::testing::Values(
        BadBody{"", "", "not valid JSON"}, BadBody{"{", "", "not valid JSON"},
        BadBody{"[1]", "", "JSON object"}, BadBody{R"("name")", "", "JSON object"},
        BadBody{"{}", "name", "required"}, BadBody{R"({"enabled":true})", "name", "required"},
        BadBody{R"({"name":""})", "name", "non-empty"}, BadBody{R"({"name":5})", "name", "string"},
        BadBody{R"({"name":null})", "name", "string"},
        BadBody{R"({"name":"a\nb"})", "name", "control"},
        BadBody{R"({"name":"b","enabled":"yes"})", "enabled", "true or false"},
        BadBody{R"({"name":"b","management":"admin"})", "management", "read_write"},
        BadBody{R"({"name":"b","management":null})", "management", "read_write"},
        BadBody{R"({"name":"b","endpoints":["ep1"]})", "endpoints", "object"},
        BadBody{R"({"name":"b","endpoints":{"ep1":"write"}})", "endpoints.ep1", "read_write"},
        BadBody{R"({"name":"b","endpoints":{"*":true}})", "endpoints.*", "read_write"},
        BadBody{R"({"name":"b","endpoints":{"bad id":"read"}})", "endpoints.bad id", "endpoint id"},
        BadBody{R"({"name":"b","endpoints":{"":"read"}})", "endpoints.", "endpoint id"},
        BadBody{R"({"name":"b","legacy_access":"none"})", "legacy_access", "read_write"},
        BadBody{R"({"name":"b","legacy_access":"read","endpoints":{"*":"read"}})", "legacy_access",
                "either"},
        BadBody{R"({"name":"b","expires_at":"tomorrow"})", "expires_at", "RFC 3339"},
        BadBody{R"({"name":"b","expires_at":1700000000})", "expires_at", "RFC 3339"},
        BadBody{R"({"name":"b","rate_limit":5})", "rate_limit", "object"},
        BadBody{R"({"name":"b","rate_limit":{"rps":0,"burst":1}})", "rate_limit.rps",
                "greater than 0"},
        BadBody{R"({"name":"b","rate_limit":{"rps":"5","burst":1}})", "rate_limit.rps",
                "greater than 0"},
        BadBody{R"({"name":"b","rate_limit":{"burst":1}})", "rate_limit.rps", "required"},
        BadBody{R"({"name":"b","rate_limit":{"rps":5}})", "rate_limit.burst", "required"},
        BadBody{R"({"name":"b","rate_limit":{"rps":5,"burst":0}})", "rate_limit.burst",
                "at least 1"},
        BadBody{R"({"name":"b","rate_limit":{"rps":5,"burst":1.5}})", "rate_limit.burst",
                "integer"},
        BadBody{R"({"name":"b","rate_limit":{"rps":5,"burst":2,"max_concurrent":-1}})",
                "rate_limit.max_concurrent", "non-negative"},
        BadBody{R"({"name":"b","rate_limit":{"rps":5,"burst":2,"rsp":1}})", "rate_limit.rsp",
                "unknown"},
        BadBody{R"({"name":"b","colour":"red"})", "colour", "unknown field"},
        BadBody{R"({"name":"b","id":"key_x"})", "id", "set by frontdoor"},
        BadBody{R"({"name":"b","hash":"sha256:00"})", "hash", "set by frontdoor"},
        BadBody{R"({"name":"b","prefix":"rpa_"})", "prefix", "set by frontdoor"},
        BadBody{R"({"name":"b","created_at":null})", "created_at", "set by frontdoor"},
        BadBody{R"({"name":"b","requests_total":1})", "requests_total", "set by frontdoor"}));

TEST(ParseNewKey, NeverEchoesATokenUsedAsAFieldName) {
  const std::string token = auth::generate_token();
  auto p = parse_new_key(R"({"name":"b",")" + token + R"(":1})");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error.field.find(token), std::string::npos);
  EXPECT_EQ(p.error.message.find(token), std::string::npos);
  p = parse_new_key(R"({"name":"b","endpoints":{")" + token + R"(":"write"}})");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error.field.find(token), std::string::npos);
}

// --------------------------------------------------------------- PATCH body

TEST(ParseKeyPatch, EmptyObjectChangesNothing) {
  auto p = parse_key_patch("{}");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p.value->empty());
}

TEST(ParseKeyPatch, EveryFieldAndApply) {
  auto p = parse_key_patch(R"({"name":"renamed","enabled":false,"management":"none",
      "endpoints":{"ep9":"read"},"expires_at":"2030-05-06T07:08:09Z","rate_limit":null})");
  ASSERT_TRUE(p) << p.error.field << ": " << p.error.message;
  auth::Key k = scoped_key();
  EXPECT_FALSE(p.value->conflicts_with(k));
  p.value->apply(k);
  EXPECT_EQ(k.name, "renamed");
  EXPECT_FALSE(k.enabled);
  EXPECT_EQ(k.management, Access::none);
  EXPECT_EQ(k.default_access, Access::none);  // "*" absent: none
  ASSERT_EQ(k.endpoints.size(), 1u);          // the whole map is replaced
  EXPECT_EQ(k.endpoints[0].first, "ep9");
  EXPECT_EQ(k.expires_at, core::parse_rfc3339("2030-05-06T07:08:09Z"));
  EXPECT_FALSE(k.rate_limit);
  // Untouched fields stay.
  EXPECT_EQ(k.id, "key_2f8c1a9e");
  EXPECT_EQ(k.prefix, "rpa_7Q2F");
  EXPECT_EQ(k.requests_total, 7u);
}

TEST(ParseKeyPatch, SetsARateLimit) {
  auto p = parse_key_patch(R"({"rate_limit":{"rps":50,"burst":100,"max_concurrent":8}})");
  ASSERT_TRUE(p) << p.error.field << ": " << p.error.message;
  auth::Key k = scoped_key();
  p.value->apply(k);
  ASSERT_TRUE(k.rate_limit);
  EXPECT_EQ(k.rate_limit->rps, 50);
  EXPECT_EQ(k.rate_limit->burst, 100u);
  EXPECT_EQ(k.rate_limit->max_concurrent, 8u);
}

TEST(ParseKeyPatch, NullsRemove) {
  auto p = parse_key_patch(R"({"expires_at":null,"rate_limit":null})");
  ASSERT_TRUE(p);
  auth::Key k = scoped_key();
  k.expires_at = 5;
  k.rate_limit = auth::RateLimit{1, 1, 0};
  p.value->apply(k);
  EXPECT_FALSE(k.expires_at);
  EXPECT_FALSE(k.rate_limit);
  EXPECT_EQ(k.name, "ci-bot");
}

TEST(ParseKeyPatch, PartialLeavesTheRest) {
  auto p = parse_key_patch(R"({"enabled":false})");
  ASSERT_TRUE(p);
  auth::Key k = scoped_key();
  const auth::Key before = k;
  p.value->apply(k);
  EXPECT_FALSE(k.enabled);
  EXPECT_EQ(k.endpoints, before.endpoints);
  EXPECT_EQ(k.management, before.management);
  EXPECT_EQ(k.name, before.name);
}

TEST(ParseKeyPatch, EndpointsConflictWithALegacyKey) {
  auto p = parse_key_patch(R"({"endpoints":{"*":"read"}})");
  ASSERT_TRUE(p);
  auth::Key k;
  k.legacy_access = Access::read;
  auto c = p.value->conflicts_with(k);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->field, "endpoints");
}

class ParseKeyPatchRefuses : public ::testing::TestWithParam<BadBody> {};

TEST_P(ParseKeyPatchRefuses, NamingTheField) {
  auto p = parse_key_patch(GetParam().body);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error.field, GetParam().field);
  EXPECT_NE(p.error.message.find(GetParam().message_part), std::string::npos) << p.error.message;
}

INSTANTIATE_TEST_SUITE_P(
    Bodies, ParseKeyPatchRefuses,
    ::testing::Values(BadBody{"", "", "not valid JSON"}, BadBody{"null", "", "JSON object"},
                      BadBody{R"({"id":"key_2"})", "id", "cannot be changed"},
                      BadBody{R"({"hash":"sha256:ab"})", "hash", "cannot be changed"},
                      BadBody{R"({"prefix":"rpa_x"})", "prefix", "cannot be changed"},
                      BadBody{R"({"created_at":null})", "created_at", "cannot be changed"},
                      BadBody{R"({"last_used_at":null})", "last_used_at", "cannot be changed"},
                      BadBody{R"({"requests_total":0})", "requests_total", "cannot be changed"},
                      BadBody{R"({"token":"rpa_x"})", "token", "rotate"},
                      BadBody{R"({"legacy_access":"read"})", "legacy_access", "cannot be changed"},
                      BadBody{R"({"nmae":"x"})", "nmae", "unknown field"},
                      BadBody{R"({"name":""})", "name", "non-empty"},
                      BadBody{R"({"enabled":null})", "enabled", "true or false"},
                      BadBody{R"({"enabled":0})", "enabled", "true or false"},
                      BadBody{R"({"management":"write"})", "management", "read_write"},
                      BadBody{R"({"endpoints":null})", "endpoints", "object"},
                      BadBody{R"({"endpoints":{"ep1":"rw"}})", "endpoints.ep1", "read_write"},
                      BadBody{R"({"expires_at":"2026-13-01T00:00:00Z"})", "expires_at", "RFC 3339"},
                      BadBody{R"({"rate_limit":{"rps":-1,"burst":1}})", "rate_limit.rps",
                              "greater than 0"}));

// --------------------------------------------------------------- list query

TEST(ParseListQuery, DefaultsAndValues) {
  auto q = parse_list_query("");
  ASSERT_TRUE(q);
  EXPECT_EQ(q.value->limit, kDefaultListLimit);
  EXPECT_EQ(q.value->after, "");
  q = parse_list_query("limit=2&after=key_3");
  ASSERT_TRUE(q);
  EXPECT_EQ(q.value->limit, 2u);
  EXPECT_EQ(q.value->after, "key_3");
  q = parse_list_query("after=key%2Ex&&limit=1000");
  ASSERT_TRUE(q);
  EXPECT_EQ(q.value->after, "key.x");
  EXPECT_EQ(q.value->limit, 1000u);
  q = parse_list_query("limit=5000");
  ASSERT_TRUE(q);
  EXPECT_EQ(q.value->limit, kMaxListLimit);
}

TEST(ParseListQuery, Refuses) {
  for (const char* bad : {"limit=0", "limit=", "limit=-1", "limit=abc", "limit=1.5", "limit",
                          "limit=99999999999999999999"}) {
    auto q = parse_list_query(bad);
    ASSERT_FALSE(q) << bad;
    EXPECT_EQ(q.error.field, "limit") << bad;
  }
  auto q = parse_list_query("after=%zz");
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error.field, "after");
  q = parse_list_query("after=%4");
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error.field, "after");
  q = parse_list_query("page=2");
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error.field, "page");
}

}  // namespace
}  // namespace frontdoor::admin
