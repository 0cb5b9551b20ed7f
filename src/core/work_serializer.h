// WorkSerializer: the control plane of one channel. Runs posted tasks and
// timers one at a time, in order, on a thread of its own, so resolver and
// balancer code never needs a lock (design.md, rule 1).
#ifndef LBKIT_SRC_CORE_WORK_SERIALIZER_H_
#define LBKIT_SRC_CORE_WORK_SERIALIZER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

namespace lbkit {
namespace internal {

class WorkSerializer {
 public:
  using Clock = std::chrono::steady_clock;

  explicit WorkSerializer(std::string name);
  // Shuts down (see Shutdown).
  ~WorkSerializer();
  WorkSerializer(const WorkSerializer&) = delete;
  WorkSerializer& operator=(const WorkSerializer&) = delete;

  // Queues `fn`. Thread-safe. Returns false (and drops `fn`) after Shutdown.
  bool Run(std::function<void()> fn);
  // Delays beyond this one (100 years) are this one: "never", in practice.
  // Milliseconds in an int64 reach far beyond the steady clock's int64
  // nanoseconds (about 292 years); without the clamp a longer delay would
  // overflow to a deadline in the past, and a periodic timer would fire at
  // once and re-arm forever on the serializer's thread.
  static constexpr std::chrono::milliseconds kLongestDelay = std::chrono::hours(24 * 365 * 100);

  // Runs `fn` after `delay` (at most kLongestDelay) unless cancelled.
  // Thread-safe. Returns an id for Cancel (0 after Shutdown). Takes
  // milliseconds, as Helper::StartTimer does, so that a caller's long delay
  // reaches the clamp before any conversion to the clock's nanoseconds.
  uint64_t RunAfter(std::chrono::milliseconds delay, std::function<void()> fn);
  // Cancels a timer. Called on the serializer, it guarantees the timer's
  // function does not run; from elsewhere it may already be running.
  void Cancel(uint64_t timer_id);
  // True on the serializer's thread.
  bool IsCurrent() const { return std::this_thread::get_id() == thread_id_; }
  // Runs the tasks already queued, then stops: later tasks and pending timers
  // are dropped. Joins the thread unless called from it. Idempotent.
  void Shutdown();

 private:
  struct State;
  static void Loop(std::shared_ptr<State> state);

  std::shared_ptr<State> state_;
  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_WORK_SERIALIZER_H_
