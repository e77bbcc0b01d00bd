// `frontdoor keys ...` (SPEC §1, §3): offline management of a key store in
// either format, chosen by the file name (".db" is SQLite, anything else
// YAML). Every mutation is serialized with other writers by the store's own
// lock (flock on a YAML file, SQLite's locking on a database) and applies to
// the store as it is on disk then, so it can run while a server uses it.
#include "frontdoor/server/keys_cli.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "frontdoor/auth/key.hpp"
#include "frontdoor/auth/key_store.hpp"
#include "frontdoor/auth/store.hpp"
#include "frontdoor/auth/token.hpp"
#include "frontdoor/core/time.hpp"

namespace frontdoor::server {
namespace {

using auth::Access;
using auth::Key;

constexpr std::string_view kUsage =
    "usage: frontdoor keys create --store PATH --name NAME [--endpoint "
    "ID=read|read_write|none]...\n"
    "                             [--management none|read|read_write] [--expires RFC3339]\n"
    "       frontdoor keys list --store PATH\n"
    "       frontdoor keys disable|enable|delete --store PATH ID\n"
    "       frontdoor keys hash                    (token on stdin)\n"
    "       frontdoor keys import --store DEST SRC\n"
    "       frontdoor keys export --store SRC [DEST]\n"
    "       frontdoor keys migrate --store postgresql://USER@HOST:PORT/DB\n";

// Exit codes of SPEC §1.
constexpr int kOk = 0;
constexpr int kInvalid = 1;
constexpr int kUsageError = 2;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Flags of one subcommand; "--flag VALUE" and "--flag=VALUE" both work.
struct Args {
  std::map<std::string, std::vector<std::string>> flags;
  std::vector<std::string> positional;

  std::optional<std::string> single(const std::string& flag) const {
    const auto it = flags.find(flag);
    if (it == flags.end()) return std::nullopt;
    if (it->second.size() > 1) throw UsageError(flag + " given more than once");
    return it->second.front();
  }
  std::string required(const std::string& flag) const {
    auto v = single(flag);
    if (!v) throw UsageError("missing " + flag);
    return *v;
  }
};

Args parse_args(int argc, char** argv, int first, const std::set<std::string>& allowed,
                std::size_t max_positional) {
  Args args;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.starts_with("--")) {
      std::string value;
      const auto eq = a.find('=');
      std::string flag = a.substr(0, eq);
      if (!allowed.contains(flag)) throw UsageError("unknown option " + flag);
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
      } else {
        if (i + 1 >= argc) throw UsageError(flag + " needs a value");
        value = argv[++i];
      }
      args.flags[flag].push_back(std::move(value));
    } else if (a.size() > 1 && a.front() == '-') {
      throw UsageError("unknown option " + a);
    } else {
      args.positional.push_back(std::move(a));
    }
  }
  if (args.positional.size() > max_positional) {
    throw UsageError("unexpected argument " + args.positional[max_positional]);
  }
  return args;
}

// SPEC §1: a postgresql:// URI is PostgreSQL, ".db" is SQLite, anything
// else YAML (as the server decides). The two databases do their own locking
// and uniqueness checks; a YAML file is rewritten whole under a StoreLock.
bool is_database(const std::string& path) {
  return auth::is_postgres_uri(path) || std::filesystem::path(path).extension() == ".db";
}

// Opening an SQLite store creates it; only `create` and the destination of
// `import` may do that, as with YAML stores.
std::unique_ptr<auth::KeyStore> open_database(const std::string& path, bool may_create) {
  if (auth::is_postgres_uri(path)) return auth::open_pg_store(path);
  std::error_code ec;
  if (!may_create && !std::filesystem::exists(path, ec)) throw InputError(path + ": no such key store");
  return auth::open_sqlite_store(path);
}

std::vector<Key> load_any(const std::string& path) {
  if (is_database(path)) return open_database(path, false)->load();
  return auth::load_yaml_store(path);
}

Access access_or_throw(const std::string& s, const std::string& what) {
  if (auto a = auth::parse_access(s)) return *a;
  throw InputError(what + ": expected none, read or read_write, got \"" + s + "\"");
}

std::string random_id(const std::vector<Key>& keys) {
  for (;;) {
    unsigned char b[4];
    if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("CSPRNG failure (RAND_bytes)");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id = "key_";
    for (unsigned char x : b) {
      id += kHex[x >> 4];
      id += kHex[x & 0xF];
    }
    const bool taken =
        std::any_of(keys.begin(), keys.end(), [&](const Key& k) { return k.id == id; });
    if (!taken) return id;
  }
}

std::string time_or_dash(const std::optional<core::UnixSeconds>& t) {
  return t ? core::format_rfc3339(*t) : std::string("-");
}

// Terminal-safe and measured in code points, so that the table stays
// aligned and a hand-edited name cannot inject control sequences (C1's
// U+009B is a CSI too).
std::string printable(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t start = i;
    const char32_t c = auth::next_code_point(s, i);
    if (c == auth::kInvalidUtf8 || c < 0x20 || (c >= 0x7F && c <= 0x9F)) {
      out += '?';
    } else {
      out.append(s.substr(start, i - start));
    }
  }
  return out;
}

std::size_t display_width(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

int cmd_create(const Args& a) {
  const std::string store = a.required("--store");
  const std::string name = a.required("--name");
  if (name.empty()) throw InputError("--name: must not be empty");
  // The same rule as the admin API: a name a YAML store can hold as text.
  if (auto why = auth::key_name_problem(name)) throw InputError("--name: " + *why);

  Key k;
  k.name = name;
  k.enabled = true;
  k.created_at = core::now_unix();
  if (auto m = a.single("--management")) k.management = access_or_throw(*m, "--management");
  if (auto e = a.single("--expires")) {
    const auto t = core::parse_rfc3339(*e);
    if (!t) throw InputError("--expires: expected an RFC 3339 timestamp like 2026-11-22T04:00:00Z");
    k.expires_at = *t;
    if (*t <= *k.created_at) std::cerr << "warning: --expires is in the past; the key is expired\n";
  }
  std::set<std::string> seen_endpoints;
  if (auto it = a.flags.find("--endpoint"); it != a.flags.end()) {
    for (const std::string& spec : it->second) {
      const auto eq = spec.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw InputError("--endpoint " + spec + ": expected ID=read|read_write|none");
      }
      const std::string id = spec.substr(0, eq);
      const Access level = access_or_throw(spec.substr(eq + 1), "--endpoint " + id);
      if (!seen_endpoints.insert(id).second) throw InputError("--endpoint " + id + ": given twice");
      if (id == "*") {
        k.default_access = level;
      } else {
        k.endpoints.emplace_back(id, level);
      }
    }
  }
  std::sort(k.endpoints.begin(), k.endpoints.end());

  std::string token;
  // A fresh id and a token whose hash no key has.
  const auto pick_id_and_token = [&](const std::vector<Key>& keys) {
    k.id = random_id(keys);
    for (;;) {
      token = auth::generate_token();
      k.hash = auth::sha256(token);
      const bool clash = std::any_of(keys.begin(), keys.end(), [&](const Key& o) {
        return auth::digest_equal(o.hash, k.hash);
      });
      if (!clash) break;
    }
    k.prefix = token.substr(0, 8);
  };
  if (is_database(store)) {
    // The database's own uniqueness checks decide, under its write lock:
    // reading millions of keys first would not make the pick any safer,
    // since another writer may take the id meanwhile. An id taken is
    // picked again; a taken token (never in practice) fails and prints
    // nothing.
    const auto db = open_database(store, true);
    constexpr int kIdAttempts = 8;
    for (int attempt = 1;; ++attempt) {
      pick_id_and_token({});
      try {
        db->create(k);
        break;
      } catch (const auth::DuplicateKeyId&) {
        if (attempt == kIdAttempts) throw;
      }
    }
  } else {
    auth::StoreLock lock(store);
    std::vector<Key> keys = auth::load_yaml_store(store);
    pick_id_and_token(keys);
    keys.push_back(k);
    auth::write_yaml_store_atomic(store, keys);
  }
  // The only place a token is ever shown: after the store has it, so a
  // printed token always works.
  std::cout << token << '\n' << std::flush;
  OPENSSL_cleanse(token.data(), token.size());
  return kOk;
}

int cmd_list(const Args& a) {
  const std::string store = a.required("--store");
  const std::vector<Key> keys = load_any(store);
  std::vector<std::array<std::string, 6>> rows;
  rows.push_back({"ID", "PREFIX", "NAME", "ENABLED", "CREATED", "LAST_USED"});
  for (const Key& k : keys) {
    rows.push_back({printable(k.id), printable(k.prefix), printable(k.name),
                    k.enabled ? "true" : "false", time_or_dash(k.created_at),
                    time_or_dash(k.last_used_at)});
  }
  std::array<std::size_t, 6> width{};
  for (const auto& r : rows) {
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], display_width(r[c]));
  }
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t c = 0; c < r.size(); ++c) {
      line += r[c];
      if (c + 1 < r.size()) line.append(width[c] - display_width(r[c]) + 2, ' ');
    }
    std::cout << line << '\n';
  }
  return kOk;
}

int cmd_set_enabled_or_delete(const std::string& sub, const Args& a) {
  const std::string store = a.required("--store");
  if (a.positional.size() != 1) throw UsageError(sub + " needs exactly one key ID");
  const std::string& id = a.positional.front();
  if (is_database(store)) {
    const auto db = open_database(store, false);
    const bool found =
        sub == "delete" ? db->remove(id)
                        : db->update(id, [&](Key& k) { k.enabled = sub == "enable"; }).has_value();
    if (!found) throw InputError("no key with id " + id + " in " + auth::shown_store(store));
    return kOk;
  }
  auth::StoreLock lock(store);
  std::vector<Key> keys = auth::load_yaml_store(store);
  const auto it = std::find_if(keys.begin(), keys.end(), [&](const Key& k) { return k.id == id; });
  if (it == keys.end()) throw InputError("no key with id " + id + " in " + auth::shown_store(store));
  if (sub == "delete") {
    keys.erase(it);
  } else {
    it->enabled = sub == "enable";
  }
  auth::write_yaml_store_atomic(store, keys);
  return kOk;
}

int cmd_hash() {
  std::string token(std::istreambuf_iterator<char>(std::cin), {});
  // SPEC §3: exactly one trailing newline is ignored (echo adds one).
  if (token.ends_with("\r\n")) {
    token.resize(token.size() - 2);
  } else if (token.ends_with('\n')) {
    token.pop_back();
  }
  if (token.empty()) throw InputError("no token on stdin");
  if (!auth::rpa_token_well_formed(token)) {
    OPENSSL_cleanse(token.data(), token.size());
    throw InputError("the rpa_ token on stdin has a bad length or checksum (mistyped?)");
  }
  std::cout << auth::hash_form(auth::sha256(token)) << '\n';
  OPENSSL_cleanse(token.data(), token.size());
  return kOk;
}

// The keys of `incoming` that `keys` lacks. A key already present (same id
// and hash) is skipped, so importing twice is harmless; a clash of id or
// hash with another key is an error before anything is written.
std::vector<Key> keys_to_import(const std::vector<Key>& keys, const std::vector<Key>& incoming,
                                const std::string& src, const std::string& dest,
                                std::size_t& skipped) {
  std::unordered_map<std::string, std::size_t> by_id;
  std::unordered_map<auth::Digest, std::size_t, auth::DigestHash> by_hash;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    by_id.emplace(keys[i].id, i);
    by_hash.emplace(keys[i].hash, i);
  }
  std::vector<Key> added;
  for (const Key& k : incoming) {
    const auto same_id = by_id.find(k.id);
    const auto same_hash = by_hash.find(k.hash);
    if (same_id != by_id.end() && same_hash != by_hash.end() &&
        same_id->second == same_hash->second) {
      ++skipped;  // already imported: importing twice is harmless
      continue;
    }
    if (same_id != by_id.end()) {
      throw InputError(auth::shown_store(src) + ": key " + k.id + " already exists in " + auth::shown_store(dest) +
                       " with another token");
    }
    if (same_hash != by_hash.end()) {
      const std::size_t other = same_hash->second;
      throw InputError(auth::shown_store(src) + ": key " + k.id + " has the same token as key " +
                       (other < keys.size() ? keys[other] : added[other - keys.size()]).id +
                       " in " + auth::shown_store(dest));
    }
    by_id.emplace(k.id, keys.size() + added.size());
    by_hash.emplace(k.hash, keys.size() + added.size());
    added.push_back(k);
  }
  return added;
}

int cmd_import(const Args& a) {
  const std::string dest = a.required("--store");
  if (a.positional.size() != 1) throw UsageError("import needs exactly one source store");
  const std::string& src = a.positional.front();
  const std::vector<Key> incoming = load_any(src);

  std::size_t skipped = 0;
  std::size_t added = 0;
  if (is_database(dest)) {
    // One transaction per key: an import cut short leaves DEST consistent,
    // and running it again adds the rest.
    const auto db = open_database(dest, true);
    for (const Key& k : keys_to_import(db->load(), incoming, src, dest, skipped)) {
      db->create(k);
      ++added;
    }
  } else {
    auth::StoreLock lock(dest);
    std::vector<Key> keys = auth::load_yaml_store(dest);
    std::vector<Key> more = keys_to_import(keys, incoming, src, dest, skipped);
    added = more.size();
    keys.insert(keys.end(), std::make_move_iterator(more.begin()),
                std::make_move_iterator(more.end()));
    auth::write_yaml_store_atomic(dest, keys);
  }
  std::cerr << "imported " << added << " keys";
  if (skipped) std::cerr << ", skipped " << skipped << " already present";
  std::cerr << '\n';
  return kOk;
}

int cmd_export(const Args& a) {
  const std::string src = a.required("--store");
  const std::vector<Key> keys = load_any(src);
  if (a.positional.empty()) {
    std::cout << auth::to_yaml(keys) << std::flush;
    return kOk;
  }
  const std::string& dest = a.positional.front();
  if (is_database(dest)) {
    throw InputError(auth::shown_store(dest) +
                     ": export writes a YAML store; to fill a database use keys import");
  }
  auth::StoreLock lock(dest);  // DEST may be a live store
  auth::write_yaml_store_atomic(dest, keys);
  return kOk;
}

// SPEC §3.1: creates or upgrades frontdoor's PostgreSQL schema.
int cmd_migrate(const Args& a) {
  const std::string store = a.required("--store");
  if (!auth::is_postgres_uri(store))
    throw InputError(store + ": migrate is for a PostgreSQL store (postgresql://...); YAML and SQLite stores need none");
  std::cout << auth::migrate_pg_store(store) << '\n';
  return kOk;
}

int dispatch(int argc, char** argv) {
  if (argc < 2) throw UsageError("missing subcommand");
  const std::string sub = argv[1];
  if (sub == "create") {
    return cmd_create(parse_args(
        argc, argv, 2, {"--store", "--name", "--endpoint", "--management", "--expires"}, 0));
  }
  if (sub == "list") return cmd_list(parse_args(argc, argv, 2, {"--store"}, 0));
  if (sub == "disable" || sub == "enable" || sub == "delete") {
    return cmd_set_enabled_or_delete(sub, parse_args(argc, argv, 2, {"--store"}, 1));
  }
  if (sub == "hash") {
    parse_args(argc, argv, 2, {}, 0);
    return cmd_hash();
  }
  if (sub == "import") return cmd_import(parse_args(argc, argv, 2, {"--store"}, 1));
  if (sub == "export") return cmd_export(parse_args(argc, argv, 2, {"--store"}, 1));
  if (sub == "migrate") return cmd_migrate(parse_args(argc, argv, 2, {"--store"}, 0));
  throw UsageError("unknown subcommand " + sub);
}

}  // namespace

int run_keys_cli(int argc, char** argv) {
  try {
    return dispatch(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "frontdoor keys: " << e.what() << '\n' << kUsage;
    return kUsageError;
  } catch (const auth::StoreError& e) {
    std::cerr << e.what() << '\n';  // already "<file>:<line>: <field>: <problem>"
    return kInvalid;
  } catch (const InputError& e) {
    std::cerr << "frontdoor keys: " << e.what() << '\n';
    return kInvalid;
  } catch (const std::exception& e) {
    std::cerr << "frontdoor keys: " << e.what() << '\n';
    return kInvalid;
  }
}

}  // namespace frontdoor::server
