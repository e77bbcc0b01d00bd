// The admin key API against a real registry and store (review findings H4,
// L8): names a store cannot hold as text are refused naming `name`, and a
// PATCH that conflicts with the key is refused before anything is written.
#include "../temp_dir.hpp"
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "frontdoor/admin/keys_api.hpp"
#include "frontdoor/auth/key_registry.hpp"
#include "frontdoor/auth/key_store.hpp"
#include "frontdoor/auth/store.hpp"
#include "frontdoor/auth/token.hpp"

namespace frontdoor::admin {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

struct NameCase {
  const char* body;
  bool accepted;
};

void PrintTo(const NameCase& c, std::ostream* os) { *os << c.body; }

class NewKeyNames : public ::testing::TestWithParam<NameCase> {};

TEST_P(NewKeyNames, AreAcceptedOrRefusedNamingTheField) {
  const std::string body = std::string(R"({"name":")") + GetParam().body + "\"}";
  for (bool patch : {false, true}) {
    std::optional<BodyError> error;
    if (patch) {
      auto p = parse_key_patch(body);
      if (!p) error = p.error;
    } else {
      auto p = parse_new_key(body);
      if (!p) error = p.error;
    }
    if (GetParam().accepted) {
      EXPECT_FALSE(error) << (patch ? "PATCH " : "POST ") << body << ": " << error->message;
    } else {
      ASSERT_TRUE(error) << (patch ? "PATCH " : "POST ") << body << " was accepted";
      EXPECT_EQ(error->field, "name");
      EXPECT_FALSE(error->message.empty());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Bodies, NewKeyNames,
    ::testing::Values(
        // C1 controls, NEL among them: libyaml refuses or folds them.
        NameCase{R"(a\u0080b)", false}, NameCase{R"(\u0085)", false},
        NameCase{R"(x\u009b[31m)", false}, NameCase{R"(\u009f)", false},
        NameCase{R"(\u007f)", false}, NameCase{R"(\u0000)", false},
        // Noncharacters.
        NameCase{R"(\ufffe)", false}, NameCase{R"(\uffff)", false}, NameCase{R"(\ufdd0)", false},
        NameCase{R"(\ud83f\udffe)", false},  // U+1FFFE
        // Text, however unusual, is a name.
        NameCase{R"(\u00a0nbsp)", true}, NameCase{R"(line\u2028sep)", true},
        NameCase{R"(\u2029)", true}, NameCase{R"(\ufeffbom)", true},
        NameCase{R"(\ud83d\ude00 emoji)", true}, NameCase{"\xe6\x97\xa5\xe6\x9c\xac", true},
        NameCase{"e\xcc\x81", true}, NameCase{"\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d", true},
        NameCase{R"(\u200f)", true}, NameCase{R"(\ufffd)", true}, NameCase{R"(\udbff\udffd)", true}));

using unit_test::TempDir;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::int64_t meta_seq(const std::string& db_path) {
  sqlite3* db = nullptr;
  if (sqlite3_open(db_path.c_str(), &db) != SQLITE_OK) return -1;
  sqlite3_stmt* s = nullptr;
  std::int64_t seq = -1;
  if (sqlite3_prepare_v2(db, "SELECT seq FROM meta", -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW)
    seq = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return seq;
}

auth::Key legacy_key() {
  auth::Key k;
  k.id = "key_legacy";
  k.name = "old";
  k.hash = auth::sha256("legacy-token");
  k.prefix = "legacy-t";
  k.legacy_access = auth::Access::read;
  return k;
}

TEST(PatchConflict, IsRefusedBeforeAnythingIsWritten) {
  for (const std::string name : {"keys.yaml", "keys.db"}) {
    TempDir dir;
    const std::string path = dir.file(name);
    if (name.ends_with(".db")) {
      auth::open_sqlite_store(path)->create(legacy_key());
    } else {
      auth::write_yaml_store_atomic(path, {legacy_key()});
    }
    core::SnapshotCell<auth::KeySet> cell;
    auth::KeyRegistry registry(auth::KeyStore::open(path), cell);

    const auto yaml_before = name.ends_with(".yaml") ? auth::stamp_of(path) : auth::FileStamp{};
    const std::string text_before = name.ends_with(".yaml") ? read_text(path) : std::string();
    const std::int64_t seq_before = name.ends_with(".db") ? meta_seq(path) : 0;

    auto r = handle_keys_api("PATCH", "/v1/keys/key_legacy", "",
                             R"({"name":"renamed","endpoints":{"*":"read"}})", registry, {});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400u) << r->body;
    const json::value v = json::parse(r->body);
    EXPECT_EQ(v.at("error").at("field"), "endpoints") << r->body;

    if (name.ends_with(".db")) {
      EXPECT_EQ(meta_seq(path), seq_before) << "the refused PATCH wrote a change";
    } else {
      EXPECT_EQ(auth::stamp_of(path), yaml_before) << "the refused PATCH rewrote the file";
      EXPECT_EQ(read_text(path), text_before);
    }
    EXPECT_EQ(registry.get("key_legacy")->name, "old");

    // A PATCH that does apply still writes.
    r = handle_keys_api("PATCH", "/v1/keys/key_legacy", "", R"({"name":"renamed"})", registry, {});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200u) << r->body;
    EXPECT_EQ(registry.get("key_legacy")->name, "renamed");
  }
}

}  // namespace
}  // namespace frontdoor::admin
