#pragma once
// The YAML key store file (SPEC §3): loading with a streaming parser (100,000
// keys in well under 2 s) and atomic, locked rewriting.
#include <stdexcept>
#include <string>
#include <vector>

#include "frontdoor/auth/key.hpp"

namespace frontdoor::auth {

// what(): "<file>:<line>: keys[<i>].<field>: <problem>" (one or more lines).
struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads a YAML store. A missing file is an error. Throws StoreError.
std::vector<Key> load_yaml_store(const std::string& path);

// Serializes keys in the store format (also used by `keys export`).
std::string to_yaml(const std::vector<Key>& keys);

// Writes the store atomically: temporary file in the same folder, fsync,
// rename over `path`, fsync of the folder. Throws StoreError on I/O failure.
// The caller holds the StoreLock.
void write_yaml_store_atomic(const std::string& path, const std::vector<Key>& keys);

// Exclusive flock on the store file itself (SPEC §3). Because an atomic
// rewrite renames a new inode over the path, the lock is retaken until the
// locked descriptor and the path name the same inode. A missing file is
// created empty ("keys: []") first. Blocks until acquired.
class StoreLock {
 public:
  explicit StoreLock(const std::string& store_path);
  ~StoreLock();
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace frontdoor::auth
