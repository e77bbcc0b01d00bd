// SPEC §5 admin key API against the real binary: list (paged), get, create,
// patch, delete, rotate and reload; changes hold on the proxy listener from
// the very next request, kept-alive connections included (SPEC §3); bodies
// that do not validate are refused naming the field; no answer ever carries
// a stored hash or a token other than the one it issues.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Replaces a file the way an editor that saves atomically would.
void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".edit";
  std::ofstream(tmp) << text;
  std::rename(tmp.c_str(), path.c_str());
}

json::object parse_object(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return {};
  return v.as_object();
}

class AdminKeysTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();  // key_rw: ep1 read_write, management none
    admin_token_ = proxy_.add_key({.id = "key_admin", .name = "admin", .management = "read_write"});
    read_token_ = proxy_.add_key({.id = "key_mread", .name = "auditor", .management = "read"});
    known_tokens_ = {token_, admin_token_, read_token_};
    start();
  }

  // One admin request on a fresh connection. Every answer is checked: no
  // stored hash, no token but the one it issues.
  HttpResponse api(std::string_view method, std::string_view target, std::string_view body = {},
                   std::optional<std::string> token = std::nullopt) {
    Headers h{{"Host", "admin"}};
    const std::string t = token ? *token : admin_token_;
    if (!t.empty()) h.push_back(bearer(t));
    if (!body.empty()) h.emplace_back("Content-Type", "application/json");
    auto r = do_request(proxy_.admin_port(), method, target, h, body);
    check_no_secrets(r);
    return r;
  }

  void check_no_secrets(const HttpResponse& r) {
    const std::string issued = json_str(parse_object(r.body), "token");
    if (!issued.empty()) known_tokens_.push_back(issued);
    EXPECT_EQ(r.raw.find("sha256"), std::string::npos) << r.raw;
    for (const auto& t : known_tokens_) {
      if (t != issued) {
        EXPECT_EQ(r.raw.find(t), std::string::npos) << "a token other than the issued one:\n"
                                                    << r.raw;
      }
      EXPECT_EQ(r.raw.find(sha256_hex(t)), std::string::npos) << "a token hash:\n" << r.raw;
    }
  }

  // POST /v1/keys; returns {id, token} (empty on failure, with a test failure).
  std::pair<std::string, std::string> create(const std::string& body) {
    auto r = api("POST", "/v1/keys", body);
    EXPECT_EQ(r.status, 201) << r.raw;
    auto o = parse_object(r.body);
    auto* key = o.if_contains("key");
    if (!key || !key->is_object()) return {};
    return {json_str(key->as_object(), "id"), json_str(o, "token")};
  }

  HttpResponse proxy_get(const std::string& token, std::string_view target = "/ep1/x") const {
    return proxy_.request("GET", target, {{"Host", "client.test"}, bearer(token)});
  }
  HttpResponse proxy_post(const std::string& token) const {
    return proxy_.request("POST", "/ep1/x", {{"Host", "client.test"}, bearer(token)}, "hello");
  }

  std::string admin_token_;
  std::string read_token_;
  std::vector<std::string> known_tokens_;
};

// A 400/404/405 of the key API: {"error":{"code","message"[,"field"]}}.
::testing::AssertionResult IsApiError(const HttpResponse& r, int status, std::string_view code,
                                      std::optional<std::string_view> field = std::nullopt) {
  auto fail = [&](const std::string& what) {
    return ::testing::AssertionFailure() << what << "\n--- response:\n" << r.raw.substr(0, 2000);
  };
  if (r.status != status) return fail("status " + std::to_string(r.status));
  auto ct = r.header("Content-Type");
  if (!ct || ct->find("application/json") == std::string::npos) return fail("not JSON");
  auto o = parse_object(r.body);
  auto* e = o.if_contains("error");
  if (!e || !e->is_object()) return fail("no error object");
  if (json_str(e->as_object(), "code") != code) return fail("error.code");
  if (json_str(e->as_object(), "message").empty()) return fail("error.message");
  if (field && json_str(e->as_object(), "field") != *field) return fail("error.field");
  return ::testing::AssertionSuccess();
}

TEST_F(AdminKeysTest, ListPagesThroughEveryKeyInIdOrder) {
  std::set<std::string> expected = {"key_admin", "key_mread", "key_rw"};
  for (int i = 0; i < 5; ++i) {
    auto [id, token] = create(R"({"name":"bulk-)" + std::to_string(i) + R"("})");
    ASSERT_FALSE(id.empty());
    expected.insert(id);
  }
  ASSERT_EQ(expected.size(), 8u);

  std::vector<std::string> seen;
  std::string after;
  int pages = 0;
  for (; pages < 10; ++pages) {
    auto r = api("GET", "/v1/keys?limit=2" + (after.empty() ? "" : "&after=" + after));
    ASSERT_EQ(r.status, 200) << r.raw;
    auto o = parse_object(r.body);
    ASSERT_TRUE(o.contains("keys") && o.at("keys").is_array()) << r.body;
    ASSERT_TRUE(o.contains("next")) << r.body;
    const auto& keys = o.at("keys").as_array();
    ASSERT_LE(keys.size(), 2u);
    for (const auto& k : keys) {
      seen.push_back(json_str(k.as_object(), "id"));
      EXPECT_FALSE(k.as_object().contains("hash")) << r.body;
    }
    if (o.at("next").is_null()) break;
    ASSERT_TRUE(o.at("next").is_string()) << r.body;
    ASSERT_FALSE(keys.empty());
    EXPECT_EQ(json_str(o, "next"), seen.back());
    after = json_str(o, "next");
  }
  EXPECT_EQ(pages, 3);  // 4 pages of 2, the last one without "next"
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);
  EXPECT_EQ(seen.size(), expected.size());

  // Default limit: everything at once.
  auto r = api("GET", "/v1/keys");
  ASSERT_EQ(r.status, 200) << r.raw;
  auto o = parse_object(r.body);
  EXPECT_EQ(o.at("keys").as_array().size(), 8u);
  EXPECT_TRUE(o.at("next").is_null());

  EXPECT_TRUE(IsApiError(api("GET", "/v1/keys?limit=0"), 400, "invalid_query", "limit"));
  EXPECT_TRUE(IsApiError(api("GET", "/v1/keys?limit=ten"), 400, "invalid_query", "limit"));
}

TEST_F(AdminKeysTest, GetOneKey) {
  auto r = api("GET", "/v1/keys/key_rw");
  ASSERT_EQ(r.status, 200) << r.raw;
  auto o = parse_object(r.body);
  ASSERT_TRUE(o.contains("key") && o.at("key").is_object()) << r.body;
  const auto& k = o.at("key").as_object();
  EXPECT_EQ(json_str(k, "id"), "key_rw");
  EXPECT_EQ(json_str(k, "name"), "test-key");
  EXPECT_EQ(json_str(k, "prefix"), token_.substr(0, 8));
  EXPECT_EQ(k.at("enabled"), true);
  EXPECT_EQ(json_str(k, "created_at"), "2026-01-01T00:00:00Z");
  EXPECT_TRUE(k.at("expires_at").is_null());
  EXPECT_TRUE(k.contains("last_used_at"));
  EXPECT_EQ(json_str(k, "management"), "none");
  EXPECT_EQ(k.at("endpoints"), (json::object{{"*", "none"}, {"ep1", "read_write"}}));
  EXPECT_TRUE(k.at("rate_limit").is_null());
  EXPECT_TRUE(k.contains("requests_total"));
  EXPECT_FALSE(k.contains("hash"));

  // The read key may read.
  EXPECT_EQ(api("GET", "/v1/keys/key_rw", {}, read_token_).status, 200);
  // HEAD like GET, without a body.
  auto h = api("HEAD", "/v1/keys/key_rw");
  EXPECT_EQ(h.status, 200) << h.raw;
}

TEST_F(AdminKeysTest, CreateWorksAtOnceAndStoresOnlyTheHash) {
  auto r = api("POST", "/v1/keys",
               R"({"name":"new-bot","endpoints":{"*":"none","ep1":"read"},"expires_at":null})");
  ASSERT_EQ(r.status, 201) << r.raw;
  auto o = parse_object(r.body);
  const std::string token = json_str(o, "token");
  ASSERT_EQ(token.size(), 44u) << r.body;
  EXPECT_EQ(token.rfind("rpa_", 0), 0u);
  const auto& k = o.at("key").as_object();
  const std::string id = json_str(k, "id");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(json_str(k, "name"), "new-bot");
  EXPECT_EQ(json_str(k, "prefix"), token.substr(0, 8));
  EXPECT_EQ(k.at("enabled"), true);
  EXPECT_FALSE(json_str(k, "created_at").empty());
  EXPECT_EQ(json_str(k, "management"), "none");
  EXPECT_EQ(k.at("endpoints"), (json::object{{"*", "none"}, {"ep1", "read"}}));

  // Works at once, with exactly the scope granted.
  EXPECT_EQ(proxy_get(token).status, 200);
  EXPECT_TRUE(IsFrontdoorError(proxy_post(token), 403, "insufficient_scope"));
  // No management access.
  EXPECT_EQ(api("GET", "/v1/keys", {}, token).status, 403);

  // Durable in the store: the hash, never the token.
  const std::string store = read_file(proxy_.keys_path());
  EXPECT_NE(store.find(id), std::string::npos) << store;
  EXPECT_NE(store.find("sha256:" + sha256_hex(token)), std::string::npos) << store;
  EXPECT_EQ(store.find(token), std::string::npos) << store;
  EXPECT_EQ(store.find(token.substr(8)), std::string::npos) << store;

  // GET shows it; the token is never shown again.
  auto g = api("GET", "/v1/keys/" + id);
  EXPECT_EQ(g.status, 200);
  EXPECT_EQ(g.body.find(token), std::string::npos);

  // A legacy-style key with one access level for every endpoint.
  auto legacy = api("POST", "/v1/keys", R"({"name":"all-read","legacy_access":"read"})");
  ASSERT_EQ(legacy.status, 201) << legacy.raw;
  auto lo = parse_object(legacy.body);
  EXPECT_EQ(json_str(lo.at("key").as_object(), "legacy_access"), "read");
  EXPECT_FALSE(lo.at("key").as_object().contains("endpoints"));
  EXPECT_EQ(proxy_get(json_str(lo, "token")).status, 200);
}

TEST_F(AdminKeysTest, PatchTakesEffectAtOnceEvenOnAKeptAliveConnection) {
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.connected());
  const auto req = build_request("GET", "/ep1/x", {{"Host", "client.test"}, bearer(token_)});
  ASSERT_TRUE(c.send(req));
  auto first = c.read_response();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200) << first->raw;

  auto r = api("PATCH", "/v1/keys/key_rw", R"({"enabled":false})");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(parse_object(r.body).at("key").at("enabled"), false);

  ASSERT_TRUE(c.send(req));
  auto second = c.read_response();
  ASSERT_TRUE(second) << "the kept-alive connection gave no answer";
  EXPECT_TRUE(IsFrontdoorError(*second, 401, "api_key_disabled"));
  EXPECT_TRUE(IsFrontdoorError(proxy_get(token_), 401, "api_key_disabled"));

  // Enable again, narrow the scope (the map is replaced whole), rename.
  r = api("PATCH", "/v1/keys/key_rw",
          R"({"enabled":true,"endpoints":{"*":"read"},"name":"renamed","management":"read"})");
  ASSERT_EQ(r.status, 200) << r.raw;
  auto k = parse_object(r.body).at("key").as_object();
  EXPECT_EQ(k.at("endpoints"), (json::object{{"*", "read"}}));
  EXPECT_EQ(json_str(k, "name"), "renamed");
  EXPECT_EQ(json_str(k, "management"), "read");
  EXPECT_EQ(proxy_get(token_).status, 200);
  EXPECT_TRUE(IsFrontdoorError(proxy_post(token_), 403, "insufficient_scope"));
  EXPECT_EQ(api("GET", "/v1/keys", {}, token_).status, 200);  // management read now

  // Expiry in the past, then removed.
  r = api("PATCH", "/v1/keys/key_rw", R"({"expires_at":"2020-01-01T00:00:00Z"})");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(json_str(parse_object(r.body).at("key").as_object(), "expires_at"),
            "2020-01-01T00:00:00Z");
  EXPECT_TRUE(IsFrontdoorError(proxy_get(token_), 401, "api_key_expired"));
  r = api("PATCH", "/v1/keys/key_rw", R"({"expires_at":null})");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(proxy_get(token_).status, 200);

  // Persisted.
  const std::string store = read_file(proxy_.keys_path());
  EXPECT_NE(store.find("renamed"), std::string::npos) << store;
}

TEST_F(AdminKeysTest, DeleteRevokesAtOnce) {
  auto [id, token] = create(R"({"name":"short-lived","endpoints":{"ep1":"read_write"}})");
  ASSERT_FALSE(id.empty());
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.connected());
  const auto req = build_request("GET", "/ep1/x", {{"Host", "client.test"}, bearer(token)});
  ASSERT_TRUE(c.send(req));
  auto first = c.read_response();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200) << first->raw;

  auto r = api("DELETE", "/v1/keys/" + id);
  EXPECT_EQ(r.status, 204) << r.raw;
  EXPECT_TRUE(r.body.empty());

  ASSERT_TRUE(c.send(req));
  auto second = c.read_response();
  ASSERT_TRUE(second) << "the kept-alive connection gave no answer";
  EXPECT_TRUE(IsFrontdoorError(*second, 401, "invalid_api_key"));
  EXPECT_TRUE(IsFrontdoorError(proxy_get(token), 401, "invalid_api_key"));

  EXPECT_TRUE(IsApiError(api("GET", "/v1/keys/" + id), 404, "key_not_found"));
  EXPECT_TRUE(IsApiError(api("DELETE", "/v1/keys/" + id), 404, "key_not_found"));
  const std::string store = read_file(proxy_.keys_path());
  EXPECT_EQ(store.find(id), std::string::npos) << store;
  EXPECT_EQ(store.find(sha256_hex(token)), std::string::npos) << store;
}

TEST_F(AdminKeysTest, RotateReplacesTheToken) {
  auto [id, old_token] =
      create(R"({"name":"rotating","endpoints":{"ep1":"read_write"},"management":"read"})");
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(proxy_get(old_token).status, 200);

  auto r = api("POST", "/v1/keys/" + id + "/rotate");
  ASSERT_EQ(r.status, 200) << r.raw;
  auto o = parse_object(r.body);
  const std::string token = json_str(o, "token");
  ASSERT_EQ(token.size(), 44u) << r.body;
  EXPECT_NE(token, old_token);
  const auto& k = o.at("key").as_object();
  EXPECT_EQ(json_str(k, "id"), id);
  EXPECT_EQ(json_str(k, "prefix"), token.substr(0, 8));
  EXPECT_EQ(json_str(k, "management"), "read");
  EXPECT_EQ(k.at("endpoints"), (json::object{{"*", "none"}, {"ep1", "read_write"}}));

  EXPECT_TRUE(IsFrontdoorError(proxy_get(old_token), 401, "invalid_api_key"));
  EXPECT_EQ(proxy_get(token).status, 200);
  EXPECT_EQ(proxy_post(token).status, 200);

  const std::string store = read_file(proxy_.keys_path());
  EXPECT_NE(store.find(sha256_hex(token)), std::string::npos) << store;
  EXPECT_EQ(store.find(sha256_hex(old_token)), std::string::npos) << store;
  EXPECT_EQ(store.find(token), std::string::npos) << store;

  EXPECT_TRUE(IsApiError(api("POST", "/v1/keys/key_nope/rotate"), 404, "key_not_found"));
}

TEST_F(AdminKeysTest, BadBodiesAre400NamingTheField) {
  struct Case {
    const char* method;
    const char* target;
    const char* body;
    const char* field;
  };
  const Case cases[] = {
      {"POST", "/v1/keys", "{}", "name"},
      {"POST", "/v1/keys", R"({"name":""})", "name"},
      {"POST", "/v1/keys", R"({"name":"x","enabled":"yes"})", "enabled"},
      {"POST", "/v1/keys", R"({"name":"x","management":"admin"})", "management"},
      {"POST", "/v1/keys", R"({"name":"x","endpoints":{"ep1":"write"}})", "endpoints.ep1"},
      {"POST", "/v1/keys", R"({"name":"x","expires_at":"soon"})", "expires_at"},
      {"POST", "/v1/keys", R"({"name":"x","rate_limit":{"rps":0,"burst":1}})", "rate_limit.rps"},
      {"POST", "/v1/keys", R"({"name":"x","rate_limit":{"rps":1,"burst":0}})", "rate_limit.burst"},
      {"POST", "/v1/keys", R"({"name":"x","colour":"red"})", "colour"},
      {"POST", "/v1/keys", R"({"name":"x","id":"key_mine"})", "id"},
      {"POST", "/v1/keys", R"({"name":"x","hash":"sha256:00"})", "hash"},
      {"POST", "/v1/keys", R"({"name":"x","legacy_access":"read","endpoints":{}})",
       "legacy_access"},
      {"PATCH", "/v1/keys/key_rw", R"({"id":"key_other"})", "id"},
      {"PATCH", "/v1/keys/key_rw", R"({"hash":"sha256:00"})", "hash"},
      {"PATCH", "/v1/keys/key_rw", R"({"prefix":"rpa_abcd"})", "prefix"},
      {"PATCH", "/v1/keys/key_rw", R"({"created_at":null})", "created_at"},
      {"PATCH", "/v1/keys/key_rw", R"({"token":"rpa_x"})", "token"},
      {"PATCH", "/v1/keys/key_rw", R"({"enabled":null})", "enabled"},
      {"PATCH", "/v1/keys/key_rw", R"({"endpoints":{"ep1":"rw"}})", "endpoints.ep1"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.method) + " " + c.body);
    EXPECT_TRUE(IsApiError(api(c.method, c.target, c.body), 400, "invalid_body", c.field));
  }
  // Not JSON at all.
  EXPECT_TRUE(IsApiError(api("POST", "/v1/keys", "name=x"), 400, "invalid_body"));
  EXPECT_TRUE(IsApiError(api("PATCH", "/v1/keys/key_rw", "[]"), 400, "invalid_body"));
  // Nothing was created or changed.
  auto r = api("GET", "/v1/keys");
  EXPECT_EQ(parse_object(r.body).at("keys").as_array().size(), 3u) << r.body;
  EXPECT_EQ(proxy_get(token_).status, 200);
}

TEST_F(AdminKeysTest, UnknownIdIs404AndWrongMethodIs405) {
  EXPECT_TRUE(IsApiError(api("GET", "/v1/keys/key_nope"), 404, "key_not_found"));
  EXPECT_TRUE(
      IsApiError(api("PATCH", "/v1/keys/key_nope", R"({"enabled":false})"), 404, "key_not_found"));
  EXPECT_TRUE(IsApiError(api("DELETE", "/v1/keys/key_nope"), 404, "key_not_found"));

  auto r = api("PUT", "/v1/keys");
  EXPECT_TRUE(IsApiError(r, 405, "method_not_allowed"));
  EXPECT_TRUE(r.header("Allow").has_value()) << r.raw;
  EXPECT_TRUE(IsApiError(api("DELETE", "/v1/keys"), 405, "method_not_allowed"));
  EXPECT_TRUE(IsApiError(api("POST", "/v1/keys/key_rw"), 405, "method_not_allowed"));
  EXPECT_TRUE(IsApiError(api("GET", "/v1/keys/key_rw/rotate"), 405, "method_not_allowed"));
  EXPECT_TRUE(IsApiError(api("GET", "/v1/reload"), 405, "method_not_allowed"));
  // Not key-API paths.
  EXPECT_EQ(api("GET", "/v1/keys/key_rw/other").status, 404);
  EXPECT_EQ(api("GET", "/v1/keyss").status, 404);
}

TEST_F(AdminKeysTest, ManagementLevelsAreEnforced) {
  // No key, unknown key.
  auto r = api("GET", "/v1/keys", {}, std::string());
  EXPECT_EQ(r.status, 401) << r.raw;
  EXPECT_EQ(r.header("X-Frontdoor-Error"), "missing_api_key") << r.raw;
  r = api("GET", "/v1/keys", {}, fresh_rpa_token());
  EXPECT_EQ(r.status, 401) << r.raw;
  EXPECT_EQ(r.header("X-Frontdoor-Error"), "invalid_api_key") << r.raw;
  EXPECT_EQ(api("POST", "/v1/keys", R"({"name":"x"})", std::string()).status, 401);
  // Management none: nothing.
  EXPECT_EQ(api("GET", "/v1/keys", {}, token_).status, 403);
  EXPECT_EQ(api("GET", "/v1/keys/key_rw", {}, token_).status, 403);
  // Management read: reads only.
  EXPECT_EQ(api("GET", "/v1/keys", {}, read_token_).status, 200);
  EXPECT_EQ(api("POST", "/v1/keys", R"({"name":"x"})", read_token_).status, 403);
  EXPECT_EQ(api("PATCH", "/v1/keys/key_rw", R"({"enabled":false})", read_token_).status, 403);
  EXPECT_EQ(api("DELETE", "/v1/keys/key_rw", {}, read_token_).status, 403);
  EXPECT_EQ(api("POST", "/v1/keys/key_rw/rotate", {}, read_token_).status, 403);
  EXPECT_EQ(api("POST", "/v1/reload", {}, read_token_).status, 403);
  // Nothing changed.
  EXPECT_EQ(proxy_get(token_).status, 200);
  EXPECT_EQ(parse_object(api("GET", "/v1/keys").body).at("keys").as_array().size(), 3u);
  // A disabled admin key loses its access at once.
  ASSERT_EQ(api("PATCH", "/v1/keys/key_mread", R"({"enabled":false})").status, 200);
  EXPECT_EQ(api("GET", "/v1/keys", {}, read_token_).status, 401);
}

TEST_F(AdminKeysTest, ReloadPicksUpHandEditsAndKeepsTheRunningStoreOnError) {
  const std::string hand_token = fresh_rpa_token();
  known_tokens_.push_back(hand_token);
  std::string store = read_file(proxy_.keys_path());
  store +=
      "  - id: key_hand\n"
      "    name: hand-made\n"
      "    hash: " +
      stored_hash(hand_token) +
      "\n"
      "    enabled: true\n"
      "    management: none\n"
      "    endpoints:\n"
      "      \"*\": none\n"
      "      ep1: read\n";
  write_file_atomic(proxy_.keys_path(), store);

  auto r = api("POST", "/v1/reload");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(json_str(parse_object(r.body), "status"), "reloaded");
  EXPECT_EQ(proxy_get(hand_token).status, 200);
  EXPECT_EQ(api("GET", "/v1/keys/key_hand").status, 200);

  // A store that does not load: an error saying why, the running keys stay.
  write_file_atomic(proxy_.keys_path(), "keys:\n  - id: [broken\n");
  r = api("POST", "/v1/reload");
  EXPECT_NE(r.status, 200) << r.raw;
  EXPECT_GE(r.status, 400) << r.raw;
  auto o = parse_object(r.body);
  ASSERT_TRUE(o.contains("error") && o.at("error").is_object()) << r.raw;
  EXPECT_FALSE(json_str(o.at("error").as_object(), "message").empty()) << r.raw;
  EXPECT_EQ(proxy_get(hand_token).status, 200);
  EXPECT_EQ(proxy_get(token_).status, 200);
  EXPECT_EQ(api("GET", "/v1/keys/key_hand").status, 200);
}

// Review M4: a key store that does not answer (here a YAML store whose lock
// another writer holds, as a `keys` command stopped with Ctrl-Z would) gets
// admin writes 503 key_store_unavailable within the 5 s deadline, and
// nothing else waits for it: probes, metrics, the endpoint list and the
// proxy answer at once. Once the lock is free, writes work again.
TEST_F(AdminKeysTest, AStuckStoreAnswers503AndNothingElseWaits) {
  const int fd = ::open(proxy_.keys_path().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  const auto t0 = std::chrono::steady_clock::now();
  HttpResponse write;
  std::thread writer([&] { write = api("POST", "/v1/keys", R"({"name":"late","endpoints":{"ep1":"read"}})"); });
  // While the write waits on the store thread:
  for (int round = 0; round < 3; ++round) {
    for (const char* path : {"/healthz", "/readyz", "/metrics", "/v1/endpoints"}) {
      const auto s = std::chrono::steady_clock::now();
      auto r = api("GET", path);
      EXPECT_EQ(r.status, 200) << path << r.raw;
      EXPECT_LT(std::chrono::steady_clock::now() - s, 1s) << path << " waited for the store";
    }
    const auto s = std::chrono::steady_clock::now();
    EXPECT_EQ(proxy_get(token_).status, 200);
    EXPECT_LT(std::chrono::steady_clock::now() - s, 1s) << "a proxied request waited for the store";
    std::this_thread::sleep_for(300ms);  // spread the probes over the wait
  }
  writer.join();
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(write.status, 503) << write.raw;
  EXPECT_EQ(json_str(parse_object(write.body).at("error").as_object(), "code"), "key_store_unavailable") << write.raw;
  EXPECT_EQ(write.header("X-Frontdoor-Error").value_or(""), "key_store_unavailable") << write.raw;
  EXPECT_LT(waited, 7s);
  ::flock(fd, LOCK_UN);
  ::close(fd);
  auto r = api("POST", "/v1/keys", R"({"name":"after","endpoints":{"ep1":"read"}})");
  EXPECT_EQ(r.status, 201) << r.raw;
  // The write answered 503 was not made later, when the lock came free.
  auto l = api("GET", "/v1/keys?limit=1000");
  EXPECT_EQ(l.body.find("\"name\":\"late\""), std::string::npos) << l.body;
  EXPECT_NE(l.body.find("\"name\":\"after\""), std::string::npos) << l.body;
}

}  // namespace
}  // namespace frontdoor::test
