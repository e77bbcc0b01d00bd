#pragma once
// Immutable snapshots swapped atomically (STYLE: "Immutable snapshots").
// A writer publishes a new shared_ptr<const T>; each reader thread keeps its
// own cached copy and refreshes it only when the generation moved, so the
// request path pays one relaxed atomic load, no lock and no refcount traffic.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

namespace frontdoor::core {

template <class T>
class SnapshotCell {
 public:
  void publish(std::shared_ptr<const T> next) {
    std::lock_guard lock(mutex_);
    current_ = std::move(next);
    generation_.fetch_add(1, std::memory_order_release);
  }
  std::shared_ptr<const T> load() const {
    std::lock_guard lock(mutex_);
    return current_;
  }
  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const T> current_;
  std::atomic<std::uint64_t> generation_{0};
};

// One per thread; not thread-safe itself.
template <class T>
class SnapshotReader {
 public:
  explicit SnapshotReader(const SnapshotCell<T>& cell) : cell_(&cell) {}
  const std::shared_ptr<const T>& get() {
    auto g = cell_->generation();
    if (g != seen_) {
      cached_ = cell_->load();
      seen_ = g;
    }
    return cached_;
  }

 private:
  const SnapshotCell<T>* cell_;
  std::shared_ptr<const T> cached_;
  std::uint64_t seen_ = ~std::uint64_t{0};
};

}  // namespace frontdoor::core
