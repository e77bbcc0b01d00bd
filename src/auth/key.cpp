#include "frontdoor/auth/key.hpp"

#include <algorithm>
#include <stdexcept>

namespace frontdoor::auth {

std::string_view to_string(Access a) noexcept {
  switch (a) {
    case Access::none:
      return "none";
    case Access::read:
      return "read";
    case Access::read_write:
      return "read_write";
  }
  return "none";
}

std::optional<Access> parse_access(std::string_view s) noexcept {
  if (s == "none") return Access::none;
  if (s == "read") return Access::read;
  if (s == "read_write") return Access::read_write;
  return std::nullopt;
}

bool valid_key_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

char32_t next_code_point(std::string_view s, std::size_t& i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) {
    ++i;
    return c;
  }
  // Sequence length, the lead byte's payload, and the smallest code point
  // that needs this length.
  struct Form {
    std::size_t n;
    char32_t cp;
    char32_t min;
  };
  Form f{};
  if ((c & 0xE0) == 0xC0) {
    f = {2, static_cast<char32_t>(c & 0x1F), 0x80};
  } else if ((c & 0xF0) == 0xE0) {
    f = {3, static_cast<char32_t>(c & 0x0F), 0x800};
  } else if ((c & 0xF8) == 0xF0) {
    f = {4, static_cast<char32_t>(c & 0x07), 0x10000};
  } else {
    ++i;  // a continuation byte without a lead, or 0xF8..0xFF
    return kInvalidUtf8;
  }
  const std::size_t n = f.n;
  char32_t cp = f.cp;
  const char32_t min = f.min;
  if (i + n > s.size()) {
    ++i;
    return kInvalidUtf8;
  }
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      ++i;
      return kInvalidUtf8;
    }
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  // Overlong forms would let one character hide as another; surrogates and
  // values above U+10FFFF are not characters. libyaml refuses all three.
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++i;
    return kInvalidUtf8;
  }
  i += n;
  return cp;
}

std::string printable_id(std::string_view id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char ch : id.substr(0, 128)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (id.size() > 128) out += "...";
  return out;
}

std::optional<std::string> key_name_problem(std::string_view name) {
  for (std::size_t i = 0; i < name.size();) {
    const char32_t c = next_code_point(name, i);
    if (c == kInvalidUtf8) return "not valid UTF-8";
    if (c < 0x20 || (c >= 0x7F && c <= 0x9F)) return "control characters are not allowed";
    if (is_noncharacter(c)) return "noncharacters (U+FDD0..U+FDEF, U+FFFE, U+FFFF, ...) are not allowed";
  }
  return std::nullopt;
}

Access Key::access_for(std::string_view endpoint) const noexcept {
  if (legacy_access) return *legacy_access;
  const auto it = std::lower_bound(endpoints.begin(), endpoints.end(), endpoint,
                                   [](const std::pair<std::string, Access>& e,
                                      std::string_view name) { return e.first < name; });
  if (it != endpoints.end() && it->first == endpoint) return it->second;
  return default_access;
}

Key& Key::operator=(const Key& o) {
  if (this == &o) return *this;
  id = o.id;
  name = o.name;
  hash = o.hash;
  prefix = o.prefix;
  enabled = o.enabled;
  created_at = o.created_at;
  last_used_at = o.last_used_at;
  expires_at = o.expires_at;
  management = o.management;
  legacy_access = o.legacy_access;
  default_access = o.default_access;
  endpoints = o.endpoints;
  rate_limit = o.rate_limit;
  requests_total = o.requests_total;
  runtime_.store(o.runtime_.load(std::memory_order_acquire), std::memory_order_release);
  return *this;
}

namespace {
// Every KeyRuntime ever created, pushed lock-free by the request path.
std::atomic<KeyRuntime*> g_runtimes{nullptr};
}  // namespace

KeyRuntime& Key::runtime() const {
  if (auto* rt = runtime_.load(std::memory_order_acquire)) return *rt;
  // First use of this key by any thread: create, then publish with one CAS.
  // A racing thread's spare is dropped before it is ever shared.
  auto fresh = std::make_unique<KeyRuntime>(id, requests_total);
  KeyRuntime* expected = nullptr;
  if (!runtime_.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel))
    return *expected;
  KeyRuntime* rt = fresh.release();
  rt->next_in_list = g_runtimes.load(std::memory_order_relaxed);
  while (!g_runtimes.compare_exchange_weak(rt->next_in_list, rt, std::memory_order_release,
                                           std::memory_order_relaxed)) {
  }
  return *rt;
}

void for_each_key_runtime(const std::function<void(KeyRuntime&)>& f) {
  for (KeyRuntime* rt = g_runtimes.load(std::memory_order_acquire); rt; rt = rt->next_in_list) f(*rt);
}

// ---------------------------------------------------------------------------
// KeySet: base + overlay
// ---------------------------------------------------------------------------

namespace {

// An open-addressing table of positions into the base's key vector: 4 bytes
// a slot instead of an unordered_map's node per key (a million keys: ~16 MB
// for both indexes instead of ~120 MB). Keys are never removed from a base.
class FlatIndex {
 public:
  void reserve(std::size_t n) {
    std::size_t size = 16;
    while (size < n + n / 2) size <<= 1;
    slots_.assign(size, 0);
    mask_ = size - 1;
  }
  // Visits candidate positions for `hash` until `f` returns true or an
  // empty slot ends the chain; returns the position or npos.
  template <class Match>
  std::uint32_t find(std::size_t hash, Match&& match) const noexcept {
    if (slots_.empty()) return kNone;
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
      std::uint32_t s = slots_[i];
      if (s == 0) return kNone;
      if (match(s - 1)) return s - 1;
    }
  }
  void insert(std::size_t hash, std::uint32_t position) noexcept {
    std::size_t i = hash & mask_;
    while (slots_[i] != 0) i = (i + 1) & mask_;
    slots_[i] = position + 1;
  }
  static constexpr std::uint32_t kNone = 0xFFFFFFFFu;

 private:
  std::vector<std::uint32_t> slots_;
  std::size_t mask_ = 0;
};

std::size_t id_hash(std::string_view id) noexcept { return std::hash<std::string_view>()(id); }

}  // namespace

struct KeySet::Base {
  std::vector<Key> keys;
  FlatIndex by_hash;
  FlatIndex by_id;

  const Key* find_hash(const Digest& d) const noexcept {
    auto i = by_hash.find(DigestHash()(d), [&](std::uint32_t p) { return keys[p].hash == d; });
    return i == FlatIndex::kNone ? nullptr : &keys[i];
  }
  const Key* find_id(std::string_view id) const noexcept {
    auto i = by_id.find(id_hash(id), [&](std::uint32_t p) { return keys[p].id == id; });
    return i == FlatIndex::kNone ? nullptr : &keys[i];
  }
};

struct KeySet::Overlay {
  // id -> the key's new version, or nullptr when deleted.
  std::unordered_map<std::string, std::shared_ptr<const Key>> by_id;
  std::unordered_map<Digest, std::shared_ptr<const Key>, DigestHash> by_hash;
};

KeySet::KeySet() : base_(std::make_shared<const Base>()) {}

KeySet::KeySet(std::vector<Key> keys) {
  for (Key& k : keys) {
    std::sort(k.endpoints.begin(), k.endpoints.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  auto base = std::make_shared<Base>();
  base->keys = std::move(keys);
  base->by_hash.reserve(base->keys.size());
  base->by_id.reserve(base->keys.size());
  for (std::uint32_t i = 0; i < base->keys.size(); ++i) {
    const Key& k = base->keys[i];
    if (base->find_id(k.id)) throw std::invalid_argument("duplicate key id " + k.id);
    if (base->find_hash(k.hash)) throw std::invalid_argument("duplicate key hash (key " + k.id + ")");
    base->by_id.insert(id_hash(k.id), i);
    base->by_hash.insert(DigestHash()(k.hash), i);
  }
  size_ = base->keys.size();
  base_ = std::move(base);
}

std::size_t KeySet::overlay_size() const noexcept { return overlay_ ? overlay_->by_id.size() : 0; }

const Key* KeySet::find_by_hash(const Digest& d) const noexcept {
  if (overlay_) {
    auto it = overlay_->by_hash.find(d);
    if (it != overlay_->by_hash.end()) return digest_equal(it->second->hash, d) ? it->second.get() : nullptr;
  }
  const Key* found = base_->find_hash(d);
  if (!found) return nullptr;
  const Key& k = *found;
  // A base key that the overlay changed or deleted is not this hash's key
  // any more (the overlay's version, if it still has this hash, was found above).
  if (overlay_ && overlay_->by_id.count(k.id)) return nullptr;
  // The map's own comparison is not constant time; this one is the one
  // that decides.
  return digest_equal(k.hash, d) ? &k : nullptr;
}

const Key* KeySet::find_by_id(std::string_view id) const noexcept {
  if (overlay_) {
    auto it = overlay_->by_id.find(std::string(id));
    if (it != overlay_->by_id.end()) return it->second.get();
  }
  return base_->find_id(id);
}

void KeySet::for_each(const std::function<void(const Key&)>& f) const {
  for (const Key& k : base_->keys) {
    if (overlay_) {
      auto it = overlay_->by_id.find(k.id);
      if (it != overlay_->by_id.end()) {
        if (it->second) f(*it->second);
        continue;
      }
    }
    f(k);
  }
  if (overlay_)
    for (const auto& [id, k] : overlay_->by_id)
      if (k && !base_->find_id(id)) f(*k);
}

std::vector<Key> KeySet::keys() const {
  std::vector<Key> out;
  out.reserve(size_);
  for_each([&](const Key& k) { out.push_back(k); });
  return out;
}

std::shared_ptr<const KeySet> KeySet::with_changes(const std::vector<Key>& upserts,
                                                   const std::vector<std::string>& removed) const {
  auto next = std::make_shared<KeySet>(*this);
  auto overlay = overlay_ ? std::make_shared<Overlay>(*overlay_) : std::make_shared<Overlay>();
  std::size_t size = size_;
  auto drop_current = [&](const std::string& id) {
    // Forget the overlay's hash entry of the current version, if any.
    auto it = overlay->by_id.find(id);
    if (it != overlay->by_id.end() && it->second) overlay->by_hash.erase(it->second->hash);
  };
  auto exists = [&](const std::string& id) {
    auto it = overlay->by_id.find(id);
    if (it != overlay->by_id.end()) return it->second != nullptr;
    return base_->find_id(id) != nullptr;
  };
  for (const auto& id : removed) {
    if (!exists(id)) continue;
    drop_current(id);
    overlay->by_id[id] = nullptr;
    --size;
  }
  for (Key k : upserts) {
    std::sort(k.endpoints.begin(), k.endpoints.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    bool existed = exists(k.id);
    drop_current(k.id);
    // The hash must not belong to another live key.
    if (auto o = overlay->by_hash.find(k.hash); o != overlay->by_hash.end() && o->second->id != k.id)
      throw std::invalid_argument("duplicate key hash (key " + k.id + ")");
    if (const Key* b = base_->find_hash(k.hash)) {
      const Key& owner = *b;
      if (owner.id != k.id && !overlay->by_id.count(owner.id))
        throw std::invalid_argument("duplicate key hash (key " + k.id + ")");
    }
    // Keep the runtime state (usage, buckets) of the version it replaces.
    if (!k.runtime_if_any())
      if (const Key* old = find_by_id(k.id)) k.adopt_runtime(old->runtime_if_any());
    auto shared = std::make_shared<const Key>(std::move(k));
    overlay->by_hash[shared->hash] = shared;
    overlay->by_id[shared->id] = shared;
    if (!existed) ++size;
  }
  next->overlay_ = std::move(overlay);
  next->size_ = size;
  return next;
}

std::shared_ptr<const KeySet> KeySet::compact() const { return std::make_shared<const KeySet>(keys()); }

}  // namespace frontdoor::auth
