// WorkSerializer: the control plane of one channel. Runs posted tasks and
// timers one at a time, in order, so resolver and balancer code never needs a
// lock (design.md, rule 1).
//
// A serializer owns no thread. The serializers of every channel in the
// process run on one small, fixed pool of threads of lbkit's own
// (`lbkit-control`; ControlPoolSize() of them, started on first use), which
// also keeps every serializer's timers: a process with a thousand channels
// has the same control-plane threads as one with one. A serializer runs on
// one pool thread at a time, so its tasks never overlap, and it gives its
// thread up after a batch of tasks, so a busy channel cannot starve the
// others. The pool never runs on gRPC's shared callback threads.
#ifndef LBKIT_SRC_CORE_WORK_SERIALIZER_H_
#define LBKIT_SRC_CORE_WORK_SERIALIZER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace lbkit {
namespace internal {

// The number of lbkit-control threads: between 2 and 4, as the machine's
// cores allow. Fixed for the life of the process.
size_t ControlPoolSize();

// Runs `fn` on an lbkit-control thread soon, in no particular order with
// other such functions (they may run at the same time): for work that needs
// no channel's serializer and should not hold one up, such as asking a
// subchannel's grpc::Channel to connect, which builds that channel's
// resolver, policy and connection attempt. Thread-safe.
void RunOnControlPool(std::function<void()> fn);

class WorkSerializer {
 public:
  using Clock = std::chrono::steady_clock;

  WorkSerializer();
  // Shuts down (see Shutdown).
  ~WorkSerializer();
  WorkSerializer(const WorkSerializer&) = delete;
  WorkSerializer& operator=(const WorkSerializer&) = delete;

  // Queues `fn`. Thread-safe. Returns false (and drops `fn`) after Shutdown.
  bool Run(std::function<void()> fn);
  // Runs `fn` at once on the calling thread when the serializer is idle
  // (no task queued or running), as its task; otherwise queues it, as Run.
  // Saves the hop to a pool thread for work that arrives on one of lbkit's
  // own threads (a connectivity report on the IoLoop thread). Never call it
  // from a gRPC callback thread or an application thread, nor with a lock
  // held. Returns false (and drops `fn`) after Shutdown.
  bool RunHere(std::function<void()> fn);
  // Delays beyond this one (100 years) are this one: "never", in practice.
  // Milliseconds in an int64 reach far beyond the steady clock's int64
  // nanoseconds (about 292 years); without the clamp a longer delay would
  // overflow to a deadline in the past, and a periodic timer would fire at
  // once and re-arm forever on the control plane.
  static constexpr std::chrono::milliseconds kLongestDelay = std::chrono::hours(24 * 365 * 100);

  // Runs `fn` on this serializer after `delay` (at most kLongestDelay)
  // unless cancelled. Thread-safe. Returns an id for Cancel (0 after
  // Shutdown). Takes milliseconds, as Helper::StartTimer does, so that a
  // caller's long delay reaches the clamp before any conversion to the
  // clock's nanoseconds.
  uint64_t RunAfter(std::chrono::milliseconds delay, std::function<void()> fn);
  // Cancels a timer and frees it at once. Called on the serializer, it
  // guarantees the timer's function does not run; from elsewhere it may
  // already be running.
  void Cancel(uint64_t timer_id);
  // True while the calling thread runs one of this serializer's tasks, also
  // from inside a task of another serializer that task waits for.
  bool IsCurrent() const;
  // Runs `fn` on the serializer after the tasks already queued, and returns
  // when it has run; false (and `fn` not run) after Shutdown. On the
  // serializer, runs `fn` at once. A pool thread that waits runs the
  // serializer's queued tasks and `fn` itself when no thread is running
  // them: otherwise a pool whose every thread waits would wait forever. Any
  // other thread waits for the pool.
  bool RunAndWait(const std::function<void()>& fn);
  // Runs the tasks already queued, then stops: later tasks and pending timers
  // are dropped. Unless called on the serializer, returns only when no task
  // of it runs or will run (a pool thread runs the queued ones itself, as in
  // RunAndWait). Idempotent.
  void Shutdown();

 private:
  struct State;
  friend class ControlPool;

  std::shared_ptr<State> state_;
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_WORK_SERIALIZER_H_
