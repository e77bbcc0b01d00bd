#pragma once
// The YAML key store file (SPEC §3): loading with a streaming parser (100,000
// keys in well under 2 s) and atomic, locked rewriting.
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "frontdoor/auth/key.hpp"

namespace frontdoor::auth {

// what(): "<file>:<line>: keys[<i>].<field>: <problem>" (one or more lines).
struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The store cannot be reached (a PostgreSQL server that is down, does not
// answer in time, or refused the connection): nothing was written. Admin
// writes answer 503 key_store_unavailable; the server keeps its snapshot.
struct StoreUnavailable : StoreError {
  using StoreError::StoreError;
};

// A create() whose id a key in the store has already, taken by another
// writer since the caller picked it: the caller may pick another id.
struct DuplicateKeyId : StoreError {
  using StoreError::StoreError;
};

// Reads a YAML store. A missing file is an error. Throws StoreError.
std::vector<Key> load_yaml_store(const std::string& path);

// Serializes keys in the store format (also used by `keys export`).
std::string to_yaml(const std::vector<Key>& keys);

// Which file a path names and what it holds, as far as stat(2) can tell:
// an atomic rewrite changes the inode, an edit in place the size or mtime.
struct FileStamp {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  std::int64_t size = -1;
  std::int64_t mtime_sec = 0;
  std::int64_t mtime_nsec = 0;
  bool operator==(const FileStamp&) const = default;
};

// The stamp of the file at `path` now; a default stamp when there is none.
FileStamp stamp_of(const std::string& path);

// Writes the store atomically: temporary file in the same folder, fsync,
// rename over `path`, fsync of the folder. Throws StoreError on I/O failure.
// The caller holds the StoreLock. Returns the stamp of the file written,
// taken from its own descriptor before the rename: once the rename is done
// another writer may replace the path at any time, and its file must never
// be taken for ours.
FileStamp write_yaml_store_atomic(const std::string& path, const std::vector<Key>& keys);

// How long StoreLock waits for another writer by default: a usage flush of
// 100,000 keys takes about a second; a writer that holds the lock far longer
// is stuck (a `keys` command stopped with Ctrl-Z, a hung NFS server).
inline constexpr std::chrono::milliseconds kStoreLockDeadline{4000};  // under the admin API's 5 s

// Exclusive flock on the store file itself (SPEC §3). Because an atomic
// rewrite renames a new inode over the path, the lock is retaken until the
// locked descriptor and the path name the same inode. A missing file is
// created empty ("keys: []") first.
// Never blocks for long: the lock is tried without blocking (LOCK_NB), again
// after a short pause growing from 1 ms to 50 ms, until `deadline` has
// passed; then it throws StoreUnavailable ("<file>: locked by another writer
// for more than 5 s"), having written nothing. Other failures: StoreError.
class StoreLock {
 public:
  explicit StoreLock(const std::string& store_path, std::chrono::milliseconds deadline = kStoreLockDeadline);
  ~StoreLock();
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace frontdoor::auth
