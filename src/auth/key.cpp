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

Access Key::access_for(std::string_view endpoint) const noexcept {
  if (legacy_access) return *legacy_access;
  const auto it = std::lower_bound(endpoints.begin(), endpoints.end(), endpoint,
                                   [](const std::pair<std::string, Access>& e,
                                      std::string_view name) { return e.first < name; });
  if (it != endpoints.end() && it->first == endpoint) return it->second;
  return default_access;
}

KeySet::KeySet(std::vector<Key> keys) : keys_(std::move(keys)) {
  for (Key& k : keys_) {
    std::sort(k.endpoints.begin(), k.endpoints.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  build_index();
}

KeySet::KeySet(const KeySet& other) : keys_(other.keys_) { build_index(); }

KeySet& KeySet::operator=(const KeySet& other) {
  if (this != &other) {
    keys_ = other.keys_;
    build_index();
  }
  return *this;
}

void KeySet::build_index() {
  by_hash_.clear();
  by_id_.clear();
  by_hash_.reserve(keys_.size());
  by_id_.reserve(keys_.size());
  for (std::uint32_t i = 0; i < keys_.size(); ++i) {
    const Key& k = keys_[i];
    // by_id_ holds views into keys_, which never changes after construction.
    if (!by_id_.emplace(std::string_view(k.id), i).second) {
      throw std::invalid_argument("duplicate key id " + k.id);
    }
    if (!by_hash_.emplace(k.hash, i).second) {
      throw std::invalid_argument("duplicate key hash (key " + k.id + ")");
    }
  }
}

const Key* KeySet::find_by_hash(const Digest& d) const noexcept {
  const auto it = by_hash_.find(d);
  if (it == by_hash_.end()) return nullptr;
  const Key& k = keys_[it->second];
  // The map's own comparison is not constant time; this one is the one
  // that decides.
  return digest_equal(k.hash, d) ? &k : nullptr;
}

const Key* KeySet::find_by_id(std::string_view id) const noexcept {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &keys_[it->second];
}

}  // namespace frontdoor::auth
