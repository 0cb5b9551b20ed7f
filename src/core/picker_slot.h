// PickerSlot: where a channel keeps its current picker so that the per-call
// path reads it without a lock and without touching a shared reference count.
// RcuSlot<T> is the same slot for any immutable object the call path reads
// (the channel's methodConfig table, method_config.h); PickerSlot is
// RcuSlot<Picker>.
//
// It is a small sleepable-RCU: a reader bumps a counter in its own
// cache-line-sized stripe (chosen once per thread), reads the pointer, picks,
// and drops the counter. The writer (the control plane, rarely) swaps the
// pointer and waits until every stripe of the previous epoch is back to zero,
// twice with the epoch flipped, before it frees the old picker. All accesses
// are sequentially consistent: a reader that registers after the writer
// checked its stripe is ordered after the swap and so sees the new picker.
// Readers must hold a guard only for short, non-blocking work.
#ifndef LBKIT_SRC_CORE_PICKER_SLOT_H_
#define LBKIT_SRC_CORE_PICKER_SLOT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "lbkit/picker.h"

namespace lbkit {
namespace internal {

template <class T>
class RcuSlot {
 public:
  class ReadGuard {
   public:
    ReadGuard(std::atomic<int64_t>* counter, const T* picker)
        : counter_(counter), picker_(picker) {}
    ~ReadGuard() {
      if (counter_ != nullptr) counter_->fetch_sub(1, std::memory_order_release);
    }
    // Moved into the CallRoute that keeps a picked subchannel alive until its
    // call exists (client_conn.h).
    ReadGuard(ReadGuard&& other) noexcept : counter_(other.counter_), picker_(other.picker_) {
      other.counter_ = nullptr;
    }
    ReadGuard(const ReadGuard&) = delete;
    ReadGuard& operator=(const ReadGuard&) = delete;
    const T* operator->() const { return picker_; }
    const T* get() const { return picker_; }

   private:
    std::atomic<int64_t>* counter_;
    const T* picker_;
  };

  explicit RcuSlot(std::shared_ptr<T> initial)
      : owned_(std::move(initial)), current_(owned_.get()) {}

  // Any thread. The picker stays valid while the guard lives.
  ReadGuard Read() {
    Stripe& stripe = stripes_[ThreadStripe()];
    unsigned epoch = epoch_.load() & 1u;
    stripe.readers[epoch].fetch_add(1);
    return ReadGuard(&stripe.readers[epoch], current_.load());
  }

  // Control plane only (one writer). Installs `picker` and returns the
  // previous one once no reader can still be using it.
  std::shared_ptr<T> Publish(std::shared_ptr<T> picker) {
    std::shared_ptr<T> previous = std::move(owned_);
    owned_ = std::move(picker);
    current_.store(owned_.get());
    for (int flip = 0; flip < 2; ++flip) {
      unsigned old_epoch = epoch_.fetch_add(1) & 1u;
      for (Stripe& stripe : stripes_) {
        while (stripe.readers[old_epoch].load() != 0) std::this_thread::yield();
      }
    }
    return previous;
  }

  // Control plane only.
  const std::shared_ptr<T>& current() const { return owned_; }

  // Any thread, without registering as a reader: whether an object is
  // installed. A hint for skipping Read() on a slot that is usually empty;
  // the object itself must be read through Read().
  bool HasValue() const { return current_.load(std::memory_order_relaxed) != nullptr; }

 private:
  static constexpr unsigned kStripes = 32;
  struct alignas(64) Stripe {
    std::atomic<int64_t> readers[2] = {{0}, {0}};
  };

  static unsigned ThreadStripe() {
    static std::atomic<unsigned> next{0};
    thread_local unsigned index = next.fetch_add(1, std::memory_order_relaxed) % kStripes;
    return index;
  }

  std::shared_ptr<T> owned_;
  std::atomic<const T*> current_;
  alignas(64) std::atomic<unsigned> epoch_{0};
  Stripe stripes_[kStripes];
};

using PickerSlot = RcuSlot<Picker>;

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_PICKER_SLOT_H_
