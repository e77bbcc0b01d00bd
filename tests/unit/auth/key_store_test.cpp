#include "../temp_dir.hpp"
#include "frontdoor/auth/key_store.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace frontdoor::auth {
namespace {

namespace fs = std::filesystem;

using unit_test::TempDir;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::string kHashA = hash_form(sha256("token-a"));
const std::string kHashB = hash_form(sha256("token-b"));

// Loads `text` from a file called keys.yaml and returns the error message.
std::string load_error(const TempDir& dir, const std::string& text) {
  const std::string path = dir.file("keys.yaml");
  write_file(path, text);
  try {
    load_yaml_store(path);
  } catch (const StoreError& e) {
    std::string msg = e.what();
    const std::string prefix = dir.path().string() + "/";
    for (auto at = msg.find(prefix); at != std::string::npos; at = msg.find(prefix)) {
      msg.erase(at, prefix.size());
    }
    return msg;
  }
  return "(no error)";
}

TEST(KeyStore, LoadsSpecExample) {
  TempDir dir;
  const std::string path = dir.file("keys.yaml");
  write_file(path,
             "keys:\n"
             "  - id: key_2f8c1a9e                       # stable identifier, safe to log\n"
             "    name: ci-bot\n"
             "    hash: " +
                 kHashA +
                 "\n"
                 "    prefix: rpa_7Q2F\n"
                 "    enabled: true\n"
                 "    created_at: 2026-11-22T04:00:00Z\n"
                 "    last_used_at: null\n"
                 "    expires_at: null\n"
                 "    management: none\n"
                 "    endpoints:\n"
                 "      \"*\": none\n"
                 "      oc4qjlw7gp8i5f: read_write\n"
                 "  - id: key_legacy01\n"
                 "    name: old-integration\n"
                 "    hash: " +
                 kHashB +
                 "\n"
                 "    legacy_access: read_write\n");
  const auto keys = load_yaml_store(path);
  ASSERT_EQ(keys.size(), 2u);
  const Key& a = keys[0];
  EXPECT_EQ(a.id, "key_2f8c1a9e");
  EXPECT_EQ(a.name, "ci-bot");
  EXPECT_TRUE(digest_equal(a.hash, sha256("token-a")));
  EXPECT_EQ(a.prefix, "rpa_7Q2F");
  EXPECT_TRUE(a.enabled);
  EXPECT_EQ(a.created_at, core::parse_rfc3339("2026-11-22T04:00:00Z"));
  EXPECT_FALSE(a.last_used_at);
  EXPECT_FALSE(a.expires_at);
  EXPECT_EQ(a.management, Access::none);
  EXPECT_EQ(a.default_access, Access::none);
  ASSERT_EQ(a.endpoints.size(), 1u);
  EXPECT_EQ(a.endpoints[0].first, "oc4qjlw7gp8i5f");
  EXPECT_EQ(a.endpoints[0].second, Access::read_write);
  EXPECT_FALSE(a.legacy_access);
  EXPECT_FALSE(a.rate_limit);
  EXPECT_EQ(a.requests_total, 0u);

  const Key& b = keys[1];
  EXPECT_EQ(b.id, "key_legacy01");
  EXPECT_EQ(b.legacy_access, Access::read_write);
  EXPECT_TRUE(b.enabled);
  EXPECT_FALSE(b.created_at);
}

TEST(KeyStore, EmptyStores) {
  TempDir dir;
  for (const char* text : {"keys: []\n", "keys:\n", "keys: ~\n", "# comment\nkeys: []\n"}) {
    write_file(dir.file("k.yaml"), text);
    EXPECT_TRUE(load_yaml_store(dir.file("k.yaml")).empty()) << text;
  }
  EXPECT_EQ(to_yaml({}), "keys: []\n");
}

TEST(KeyStore, ToYamlExactLayout) {
  Key k;
  k.id = "key_2f8c1a9e";
  k.name = "ci-bot";
  k.hash = sha256("token-a");
  k.prefix = "rpa_7Q2F";
  k.created_at = core::parse_rfc3339("2026-11-22T04:00:00Z");
  k.endpoints = {{"oc4qjlw7gp8i5f", Access::read_write}};
  Key legacy;
  legacy.id = "key_legacy01";
  legacy.name = "old-integration";
  legacy.hash = sha256("token-b");
  legacy.prefix = "sk-12345";
  legacy.enabled = false;
  legacy.legacy_access = Access::read;
  legacy.requests_total = 42;
  legacy.rate_limit = RateLimit{50, 100, 8};
  EXPECT_EQ(to_yaml({k, legacy}),
            "keys:\n"
            "  - id: key_2f8c1a9e\n"
            "    name: ci-bot\n"
            "    hash: " +
                kHashA +
                "\n"
                "    prefix: rpa_7Q2F\n"
                "    enabled: true\n"
                "    created_at: 2026-11-22T04:00:00Z\n"
                "    last_used_at: null\n"
                "    expires_at: null\n"
                "    management: none\n"
                "    endpoints:\n"
                "      \"*\": none\n"
                "      oc4qjlw7gp8i5f: read_write\n"
                "  - id: key_legacy01\n"
                "    name: old-integration\n"
                "    hash: " +
                kHashB +
                "\n"
                "    prefix: sk-12345\n"
                "    enabled: false\n"
                "    created_at: null\n"
                "    last_used_at: null\n"
                "    expires_at: null\n"
                "    management: none\n"
                "    legacy_access: read\n"
                "    rate_limit: { rps: 50, burst: 100, max_concurrent: 8 }\n"
                "    requests_total: 42\n");
}

TEST(KeyStore, RoundTripThroughFile) {
  TempDir dir;
  std::vector<Key> keys;
  Key a;
  a.id = "key_00000001";
  a.name = "needs \"quotes\": and \\ backslash\nand newline\ttab \x01 caf\xC3\xA9";
  a.hash = sha256("one");
  a.prefix = "rpa_AbCd";
  a.enabled = false;
  a.created_at = 1'700'000'000;
  a.last_used_at = 1'700'000'100;
  a.expires_at = 1'900'000'000;
  a.management = Access::read_write;
  a.default_access = Access::read;
  a.endpoints = {{"123", Access::read_write}, {"ep-1", Access::none}, {"true", Access::read}};
  a.requests_total = 7;
  keys.push_back(a);
  for (const char* name : {"", "true", "null", "123", "- dash", "#hash", "x: y", " padded "}) {
    Key k;
    k.id = "key_n" + std::to_string(keys.size());
    k.name = name;
    k.hash = sha256(k.id);
    k.prefix = name;
    keys.push_back(k);
  }
  Key legacy;
  legacy.id = "key_legacy01";
  legacy.name = "old";
  legacy.hash = sha256("legacy");
  legacy.legacy_access = Access::read_write;
  keys.push_back(legacy);

  const std::string path = dir.file("keys.yaml");
  write_yaml_store_atomic(path, keys);
  const auto loaded = load_yaml_store(path);
  ASSERT_EQ(loaded.size(), keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const Key& x = keys[i];
    const Key& y = loaded[i];
    EXPECT_EQ(x.id, y.id);
    EXPECT_EQ(x.name, y.name);
    EXPECT_TRUE(digest_equal(x.hash, y.hash));
    EXPECT_EQ(x.prefix, y.prefix);
    EXPECT_EQ(x.enabled, y.enabled);
    EXPECT_EQ(x.created_at, y.created_at);
    EXPECT_EQ(x.last_used_at, y.last_used_at);
    EXPECT_EQ(x.expires_at, y.expires_at);
    EXPECT_EQ(x.management, y.management);
    EXPECT_EQ(x.legacy_access, y.legacy_access);
    EXPECT_EQ(x.default_access, y.default_access);
    EXPECT_EQ(x.endpoints, y.endpoints);
    EXPECT_EQ(x.requests_total, y.requests_total);
  }
  // Writing what was read gives the same bytes.
  EXPECT_EQ(to_yaml(loaded), read_file(path));
}

TEST(KeyStore, ErrorsNameFileLineAndField) {
  TempDir dir;
  const std::string head = "keys:\n  - id: key_a\n    hash: " + kHashA + "\n";
  EXPECT_EQ(load_error(dir, head + "    colour: blue\n"),
            "keys.yaml:4: keys[0].colour: unknown field");
  EXPECT_EQ(load_error(dir, "keys:\n  - id: key_a\n    hash: sha256:abc\n"),
            "keys.yaml:3: keys[0].hash: expected sha256:<64 hex>");
  EXPECT_EQ(load_error(dir, "keys:\n  - id: key_a\n    hash: rpa_secretTokenPastedHere\n"),
            "keys.yaml:3: keys[0].hash: expected sha256:<64 hex>");
  EXPECT_EQ(load_error(dir, head + "    created_at: yesterday\n"),
            "keys.yaml:4: keys[0].created_at: expected an RFC 3339 timestamp like "
            "2026-11-22T04:00:00Z, or null");
  EXPECT_EQ(load_error(dir, head + "    management: admin\n"),
            "keys.yaml:4: keys[0].management: expected none, read or read_write, got \"admin\"");
  EXPECT_EQ(load_error(dir, head + "    endpoints:\n      \"*\": none\n      ep1: write\n"),
            "keys.yaml:6: keys[0].endpoints.ep1: expected none, read or read_write, got \"write\"");
  EXPECT_EQ(load_error(dir, head + "    enabled: yes\n"),
            "keys.yaml:4: keys[0].enabled: expected true or false");
  EXPECT_EQ(load_error(dir, head + "  - name: no-id\n    hash: " + kHashB + "\n"),
            "keys.yaml:4: keys[1].id: required field missing");
  EXPECT_EQ(load_error(dir, "keys:\n  - id: key_a\n"),
            "keys.yaml:2: keys[0].hash: required field missing");
  EXPECT_EQ(load_error(dir, head + "  - id: key_a\n    hash: " + kHashB + "\n"),
            "keys.yaml:4: keys[1].id: duplicate id key_a (also keys[0])");
  EXPECT_EQ(load_error(dir, head + "  - id: key_b\n    hash: " + kHashA + "\n"),
            "keys.yaml:5: keys[1].hash: duplicate hash (same token as keys[0])");
  EXPECT_EQ(load_error(dir, head + "    legacy_access: read\n    endpoints: { \"*\": read }\n"),
            "keys.yaml:4: keys[0].legacy_access: a legacy key has no endpoints map; set either "
            "legacy_access or endpoints");
  EXPECT_EQ(load_error(dir, head + "    rate_limit: { rps: 50, brust: 100 }\n"),
            "keys.yaml:4: keys[0].rate_limit.brust: unknown field");
  EXPECT_EQ(load_error(dir, "keys: []\nendpoints: {}\n"), "keys.yaml:2: endpoints: unknown field");
  EXPECT_EQ(load_error(dir, "keys: []\nkeys: []\n"), "keys.yaml:2: keys: duplicate field");
  EXPECT_EQ(load_error(dir, head + "    id: key_b\n"), "keys.yaml:4: keys[0].id: duplicate field");
  EXPECT_EQ(load_error(dir, head + "    endpoints:\n      ep1: read\n      ep1: none\n"),
            "keys.yaml:6: keys[0].endpoints.ep1: duplicate endpoint");
  EXPECT_EQ(load_error(dir, "keys: {}\n"), "keys.yaml:1: keys: expected a list of keys");
  EXPECT_EQ(load_error(dir, "- a\n"), "keys.yaml:1: expected a mapping with a \"keys\" list");
  EXPECT_EQ(load_error(dir, ""),
            "keys.yaml:1: expected a mapping with a \"keys\" list (empty file)");
  EXPECT_EQ(load_error(dir, "other: 1\n"),
            "keys.yaml:1: other: unknown field\nkeys.yaml:1: keys: required field missing");
}

TEST(KeyStore, SeveralErrorsAreReportedTogether) {
  TempDir dir;
  EXPECT_EQ(load_error(dir, "keys:\n  - id: key_a\n    hash: x\n  - id: key_b\n    hash: " +
                                kHashB + "\n    expires_at: soon\n"),
            "keys.yaml:3: keys[0].hash: expected sha256:<64 hex>\n"
            "keys.yaml:6: keys[1].expires_at: expected an RFC 3339 timestamp like "
            "2026-11-22T04:00:00Z, or null");
}

TEST(KeyStore, SyntaxErrorsAndMissingFile) {
  TempDir dir;
  const std::string err = load_error(dir, "keys:\n  - id: key_a\n    hash: [unclosed\n");
  EXPECT_TRUE(err.starts_with("keys.yaml:")) << err;
  EXPECT_EQ(load_error(dir, "a: &x 1\nkeys: *x\n"),
            "keys.yaml:1: a: unknown field\nkeys.yaml:2: aliases (*name) are not supported in a "
            "key store");
  EXPECT_EQ(load_error(dir, "keys: &x []\nb: *x\n"),
            "keys.yaml:2: b: unknown field\nkeys.yaml:2: aliases (*name) are not supported in a "
            "key store");
  try {
    load_yaml_store(dir.file("missing.yaml"));
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_EQ(std::string(e.what()),
              dir.file("missing.yaml") + ": cannot open: No such file or directory");
  }
}

std::vector<std::string> dir_entries(const TempDir& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path()))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(KeyStore, AtomicWriteLeavesNoTemporaryFilesAndKeepsMode) {
  TempDir dir;
  const std::string path = dir.file("keys.yaml");
  Key k;
  k.id = "key_a";
  k.hash = sha256("a");
  write_yaml_store_atomic(path, {k});
  EXPECT_EQ(dir_entries(dir), std::vector<std::string>{"keys.yaml"});
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  write_yaml_store_atomic(path, {});
  EXPECT_EQ(dir_entries(dir), std::vector<std::string>{"keys.yaml"});
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(read_file(path), "keys: []\n");

  EXPECT_THROW(write_yaml_store_atomic(dir.file("no/such/dir/keys.yaml"), {}), StoreError);
}

TEST(StoreLock, CreatesMissingStore) {
  TempDir dir;
  const std::string path = dir.file("new.yaml");
  { StoreLock lock(path); }
  EXPECT_EQ(read_file(path), "keys: []\n");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(dir_entries(dir), std::vector<std::string>{"new.yaml"});
}

TEST(StoreLock, ExcludesASecondLocker) {
  TempDir dir;
  const std::string path = dir.file("keys.yaml");
  std::atomic<bool> acquired{false};
  std::thread other;
  {
    StoreLock first(path);
    other = std::thread([&] {
      StoreLock second(path);
      acquired = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(acquired.load());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!acquired && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(acquired.load());
  other.join();
}

// Review M4: a writer that holds the lock forever (a `keys` command stopped
// with Ctrl-Z) must not hold the server's store thread forever.
TEST(StoreLock, GivesUpAtItsDeadlineHavingWrittenNothing) {
  TempDir dir;
  const std::string path = dir.file("keys.yaml");
  StoreLock first(path);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    StoreLock second(path, std::chrono::milliseconds(300));
    ADD_FAILURE() << "took a lock that another holds";
  } catch (const StoreUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find("locked by another writer for more than 300 ms"), std::string::npos)
        << e.what();
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, std::chrono::milliseconds(300));
  EXPECT_LT(waited, std::chrono::milliseconds(1500));
  EXPECT_EQ(read_file(path), "keys: []\n");
}

TEST(StoreLock, WaiterRelocksAfterAnAtomicRewrite) {
  TempDir dir;
  const std::string path = dir.file("keys.yaml");
  std::atomic<int> stage{0};
  std::thread other;
  {
    StoreLock first(path);
    other = std::thread([&] {
      StoreLock second(path);  // waits on the old inode, must retake on the new one
      stage = 1;
      // While we hold it, a third locker must still be excluded.
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      stage = 2;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    Key k;
    k.id = "key_a";
    k.hash = sha256("a");
    write_yaml_store_atomic(path, {k});
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (stage == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(stage.load(), 1);
  {
    StoreLock third(path);
    EXPECT_EQ(stage.load(), 2);  // got it only after the second released
  }
  other.join();
}

// A store written as text (not through to_yaml), so lookups are checked
// against an independent writer.
std::string generated_store(int n) {
  std::string out = "keys:\n";
  for (int i = 0; i < n; ++i) {
    out += "  - id: key_" + std::to_string(i) + "\n    name: bot-" + std::to_string(i) +
           "\n    hash: " + hash_form(sha256("token-" + std::to_string(i))) +
           "\n    prefix: rpa_abcd\n    enabled: true\n    created_at: 2026-11-22T04:00:00Z\n"
           "    last_used_at: null\n    expires_at: null\n    management: none\n"
           "    endpoints:\n      \"*\": read_write\n";
  }
  return out;
}

TEST(KeyStore, FiveThousandKeysLookups) {
  TempDir dir;
  const std::string path = dir.file("keys.yaml");
  write_file(path, generated_store(5000));
  const KeySet set(load_yaml_store(path));
  ASSERT_EQ(set.size(), 5000u);
  for (int i = 0; i < 5000; i += 7) {
    const Key* k = set.find_by_hash(sha256("token-" + std::to_string(i)));
    ASSERT_NE(k, nullptr) << i;
    EXPECT_EQ(k->id, "key_" + std::to_string(i));
    EXPECT_EQ(set.find_by_id(k->id), k);
    EXPECT_EQ(k->access_for("anything"), Access::read_write);
  }
  EXPECT_EQ(set.find_by_hash(sha256("token-5000")), nullptr);
}

// Benchmark: run with --gtest_also_run_disabled_tests --gtest_filter='*HundredThousand*'.
TEST(KeyStore, DISABLED_HundredThousandKeysLoadTimeAndMemory) {
  TempDir dir;
  const std::string path = dir.file("keys.yaml");
  const std::string script = dir.file("gen.py");
  write_file(script,
             "import hashlib, sys\n"
             "with open(sys.argv[1], 'w') as f:\n"
             "    f.write('keys:\\n')\n"
             "    for i in range(100000):\n"
             "        h = hashlib.sha256(('token-%d' % i).encode()).hexdigest()\n"
             "        f.write('  - id: key_%08x\\n    name: bot-%d\\n    hash: sha256:%s\\n'\n"
             "                '    prefix: rpa_abcd\\n    enabled: true\\n'\n"
             "                '    created_at: 2026-11-22T04:00:00Z\\n    last_used_at: null\\n'\n"
             "                '    expires_at: null\\n    management: none\\n'\n"
             "                '    endpoints:\\n      \"*\": read_write\\n' % (i, i, h))\n");
  ASSERT_EQ(std::system(("python3 " + script + " " + path).c_str()), 0);

  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  const auto t0 = std::chrono::steady_clock::now();
  auto keys = load_yaml_store(path);
  const auto t1 = std::chrono::steady_clock::now();
  const KeySet set(std::move(keys));
  const auto t2 = std::chrono::steady_clock::now();
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);

  const auto ms = [](auto d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  std::printf(
      "100000 keys (%lld bytes): load %lld ms, KeySet %lld ms, total %lld ms; max RSS %ld MB "
      "(before %ld MB)\n",
      static_cast<long long>(fs::file_size(path)), static_cast<long long>(ms(t1 - t0)),
      static_cast<long long>(ms(t2 - t1)), static_cast<long long>(ms(t2 - t0)),
      after.ru_maxrss / 1024, before.ru_maxrss / 1024);
  ASSERT_EQ(set.size(), 100000u);
  EXPECT_NE(set.find_by_hash(sha256("token-99999")), nullptr);
  EXPECT_LT(ms(t2 - t0), 2000);
  EXPECT_LT(after.ru_maxrss / 1024, 300);
}

}  // namespace
}  // namespace frontdoor::auth
