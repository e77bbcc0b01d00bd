// The CLI lives in fd_server, which this test target does not link; the
// source is compiled in here directly (it needs only fd_auth and fd_core).
#include "../temp_dir.hpp"
#include "../../../src/server/keys_cli.cpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "frontdoor/auth/key_store.hpp"
#include "frontdoor/auth/token.hpp"

namespace frontdoor::auth {
namespace {

namespace fs = std::filesystem;

using unit_test::TempDir;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CliResult {
  int code;
  std::string out;
  std::string err;
};

// Runs `frontdoor keys <args>` in-process with stdin/stdout/stderr captured.
CliResult run(std::vector<std::string> args, const std::string& input = "") {
  args.insert(args.begin(), "keys");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::istringstream in(input);
  std::ostringstream out;
  std::ostringstream err;
  auto* old_in = std::cin.rdbuf(in.rdbuf());
  auto* old_out = std::cout.rdbuf(out.rdbuf());
  auto* old_err = std::cerr.rdbuf(err.rdbuf());
  const int code = server::run_keys_cli(static_cast<int>(args.size()), argv.data());
  std::cin.rdbuf(old_in);
  std::cout.rdbuf(old_out);
  std::cerr.rdbuf(old_err);
  std::cin.clear();
  return {code, out.str(), err.str()};
}

std::string create(const std::string& store, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"create", "--store", store, "--name", "bot"};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto r = run(args);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.out.ends_with("\n"));
  return r.out.substr(0, r.out.size() - 1);
}

TEST(KeysCli, CreatePrintsAWorkingTokenAndStoresOnlyItsHash) {
  TempDir dir;
  const std::string store = dir.file("keys.yaml");
  const std::string token =
      create(store, {"--endpoint", "ep1=read", "--endpoint", "*=read", "--management", "read",
                     "--expires", "2099-01-01T00:00:00Z"});
  EXPECT_TRUE(rpa_token_well_formed(token));
  EXPECT_EQ(token.size(), kTokenLength);
  EXPECT_TRUE(token.starts_with("rpa_"));

  const std::string text = read_file(store);
  EXPECT_EQ(text.find(token), std::string::npos);
  EXPECT_EQ(text.find(token.substr(8)), std::string::npos);
  EXPECT_NE(text.find(hash_form(sha256(token))), std::string::npos);

  const KeySet set(load_yaml_store(store));
  const Key* k = set.find_by_hash(sha256(token));
  ASSERT_NE(k, nullptr);
  EXPECT_TRUE(k->id.starts_with("key_"));
  ASSERT_EQ(k->id.size(), 12u);
  for (char c : k->id.substr(4)) EXPECT_TRUE(std::isxdigit(c) && !std::isupper(c)) << k->id;
  EXPECT_EQ(k->name, "bot");
  EXPECT_EQ(k->prefix, token.substr(0, 8));
  EXPECT_TRUE(k->enabled);
  ASSERT_TRUE(k->created_at);
  EXPECT_LE(std::abs(*k->created_at - core::now_unix()), 5);
  EXPECT_EQ(k->expires_at, core::parse_rfc3339("2099-01-01T00:00:00Z"));
  EXPECT_EQ(k->management, Access::read);
  EXPECT_EQ(k->default_access, Access::read);
  EXPECT_EQ(k->access_for("ep1"), Access::read);
  EXPECT_FALSE(k->legacy_access);
}

TEST(KeysCli, CreateDefaultsToNoAccess) {
  TempDir dir;
  const std::string store = dir.file("keys.yaml");
  const std::string token = create(store);
  const auto keys = load_yaml_store(store);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].default_access, Access::none);
  EXPECT_TRUE(keys[0].endpoints.empty());
  EXPECT_EQ(keys[0].management, Access::none);
  EXPECT_FALSE(keys[0].expires_at);
}

TEST(KeysCli, HashMatchesStoredHash) {
  TempDir dir;
  const std::string store = dir.file("keys.yaml");
  const std::string token = create(store);
  const std::string expected = hash_form(sha256(token)) + "\n";
  for (const std::string& input : {token, token + "\n", token + "\r\n"}) {
    const auto r = run({"hash"}, input);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, expected);
  }
  EXPECT_NE(read_file(store).find(expected.substr(0, expected.size() - 1)), std::string::npos);
  // Only one newline is ignored.
  EXPECT_EQ(run({"hash"}, token + "\n\n").code, 1);
  EXPECT_EQ(run({"hash"}, "").code, 1);
  EXPECT_EQ(run({"hash"}, "\n").code, 1);
  EXPECT_EQ(run({"hash"}, "legacy-token\n").out, hash_form(sha256("legacy-token")) + "\n");
  std::string typo = token;
  typo[10] = typo[10] == 'x' ? 'y' : 'x';
  const auto bad = run({"hash"}, typo + "\n");
  EXPECT_EQ(bad.code, 1);
  EXPECT_EQ(bad.err.find(typo), std::string::npos);  // never echo a token
}

TEST(KeysCli, ListShowsAnAlignedTable) {
  TempDir dir;
  const std::string store = dir.file("keys.yaml");
  const std::string t1 = create(store);
  const std::string t2 = create(store);
  (void)t2;
  const auto r = run({"list", "--store", store});
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string header;
  std::getline(lines, header);
  EXPECT_TRUE(header.starts_with("ID "));
  const auto col = [&](const char* name) { return header.find(name); };
  for (const char* name : {"PREFIX", "NAME", "ENABLED", "CREATED", "LAST_USED"}) {
    EXPECT_NE(col(name), std::string::npos) << name;
  }
  std::string row;
  int rows = 0;
  while (std::getline(lines, row)) {
    ++rows;
    EXPECT_EQ(row.substr(col("PREFIX"), 4), "rpa_");
    EXPECT_EQ(row.substr(col("ENABLED"), 4), "true");
    EXPECT_EQ(row.substr(col("LAST_USED")), "-");
    EXPECT_EQ(row.find(t1), std::string::npos);
  }
  EXPECT_EQ(rows, 2);
  EXPECT_NE(r.out.find(t1.substr(0, 8)), std::string::npos);
}

TEST(KeysCli, DisableEnableDelete) {
  TempDir dir;
  const std::string store = dir.file("keys.yaml");
  const std::string token = create(store);
  const std::string id = load_yaml_store(store).at(0).id;

  EXPECT_EQ(run({"disable", "--store", store, id}).code, 0);
  EXPECT_FALSE(load_yaml_store(store).at(0).enabled);
  EXPECT_EQ(run({"enable", "--store", store, id}).code, 0);
  EXPECT_TRUE(load_yaml_store(store).at(0).enabled);

  const auto unknown = run({"disable", "--store", store, "key_nothere"});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.err.find("no key with id key_nothere"), std::string::npos) << unknown.err;

  EXPECT_EQ(run({"delete", "--store", store, id}).code, 0);
  EXPECT_TRUE(load_yaml_store(store).empty());
  EXPECT_EQ(run({"delete", "--store", store, id}).code, 1);
  // Nothing but the store is left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(fs::path(store).parent_path()),
                          fs::directory_iterator()),
            1);
}

TEST(KeysCli, UsageErrorsExit2) {
  TempDir dir;
  const std::string store = dir.file("keys.yaml");
  for (const auto& args : std::vector<std::vector<std::string>>{
           {},
           {"frobnicate"},
           {"create", "--name", "x"},     // no --store
           {"create", "--store", store},  // no --name
           {"create", "--store", store, "--name", "x", "--bogus", "1"},
           {"create", "--store", store, "--name"},  // flag without value
           {"create", "--store", store, "--name", "x", "extra"},
           {"list"},
           {"list", "--store", store, "-v"},
           {"disable", "--store", store},  // no ID
           {"delete", "--store", store, "a", "b"},
           {"hash", "--store", store},
           {"import", "--store", store},
           {"export"},
       }) {
    const auto r = run(args);
    EXPECT_EQ(r.code, 2) << (args.empty() ? "(none)" : args[0]) << " " << r.err;
    EXPECT_NE(r.err.find("usage:"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(store));
}

TEST(KeysCli, InvalidInputExits1) {
  TempDir dir;
  const std::string store = dir.file("keys.yaml");
  const auto bad_expires =
      run({"create", "--store", store, "--name", "x", "--expires", "tomorrow"});
  EXPECT_EQ(bad_expires.code, 1);
  EXPECT_NE(bad_expires.err.find("--expires"), std::string::npos);
  EXPECT_TRUE(bad_expires.out.empty());
  EXPECT_EQ(run({"create", "--store", store, "--name", "x", "--endpoint", "ep=write"}).code, 1);
  EXPECT_EQ(run({"create", "--store", store, "--name", "x", "--endpoint", "ep"}).code, 1);
  EXPECT_EQ(run({"create", "--store", store, "--name", "x", "--endpoint", "=read"}).code, 1);
  EXPECT_EQ(run({"create", "--store", store, "--name", "x", "--endpoint", "a=read", "--endpoint",
                 "a=none"})
                .code,
            1);
  EXPECT_EQ(run({"create", "--store", store, "--name", "x", "--management", "admin"}).code, 1);
  EXPECT_EQ(run({"create", "--store", store, "--name", "bad\xff"}).code, 1);
  EXPECT_EQ(run({"list", "--store", dir.file("missing.yaml")}).code, 1);

  // A missing SQLite store is named, not created, by a command that reads it.
  const auto db = run({"list", "--store", dir.file("keys.db")});
  EXPECT_EQ(db.code, 1);
  EXPECT_NE(db.err.find("keys.db"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.file("keys.db")));
}

TEST(KeysCli, StoreErrorsArePassedThroughWithFileAndLine) {
  TempDir dir;
  const std::string store = dir.file("keys.yaml");
  std::ofstream(store) << "keys:\n  - id: key_a\n    hash: nope\n";
  const auto r = run({"list", "--store", store});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, store + ":3: keys[0].hash: expected sha256:<64 hex>\n");
  const auto c = run({"create", "--store", store, "--name", "x"});
  EXPECT_EQ(c.code, 1);
  EXPECT_TRUE(c.out.empty());  // no token printed for a key that was not stored
  EXPECT_EQ(read_file(store), "keys:\n  - id: key_a\n    hash: nope\n");
}

TEST(KeysCli, ImportAndExport) {
  TempDir dir;
  const std::string src = dir.file("src.yaml");
  const std::string dest = dir.file("dest.yaml");
  const std::string t1 = create(src);
  const std::string t2 = create(src, {"--endpoint", "ep=read_write"});

  const auto imp = run({"import", "--store", dest, src});
  ASSERT_EQ(imp.code, 0) << imp.err;
  EXPECT_EQ(read_file(dest), read_file(src));
  EXPECT_EQ(run({"import", "--store", dest, src}).code, 0);  // again: already present
  EXPECT_EQ(load_yaml_store(dest).size(), 2u);

  const auto exp = run({"export", "--store", src});
  ASSERT_EQ(exp.code, 0) << exp.err;
  EXPECT_EQ(exp.out, read_file(src));

  const std::string copy = dir.file("copy.yaml");
  ASSERT_EQ(run({"export", "--store", src, copy}).code, 0);
  EXPECT_EQ(read_file(copy), read_file(src));

  // A different key with an id already in DEST is refused, DEST unchanged.
  const std::string other = dir.file("other.yaml");
  auto keys = load_yaml_store(src);
  keys[0].hash = sha256("another token");
  write_yaml_store_atomic(other, {keys[0]});
  const std::string before = read_file(dest);
  EXPECT_EQ(run({"import", "--store", dest, other}).code, 1);
  EXPECT_EQ(read_file(dest), before);

  EXPECT_EQ(run({"import", "--store", dest, dir.file("x.db")}).code, 1);
  EXPECT_EQ(run({"export", "--store", src, dir.file("x.db")}).code, 1);
  EXPECT_EQ(run({"import", "--store", dest, dir.file("missing.yaml")}).code, 1);
  (void)t1;
  (void)t2;
}

}  // namespace
}  // namespace frontdoor::auth
