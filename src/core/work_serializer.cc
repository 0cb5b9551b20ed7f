#include "core/work_serializer.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lbkit {
namespace internal {
namespace {

// Tasks a pool thread runs of one serializer before it lets the others have
// a turn.
constexpr int kBatch = 32;

}  // namespace

// Lock order: a serializer's mu, then the pool's mu; never the other way.
struct WorkSerializer::State : std::enable_shared_from_this<State> {
  std::mutex mu;
  std::condition_variable idle;  // `running` became false, or a waited-for task ran
  std::deque<std::function<void()>> tasks;
  bool queued = false;    // in the pool's ready queue
  bool running = false;   // a thread runs its tasks (a pool thread, or a helping caller)
  bool stopping = false;  // no new work accepted
  // The thread running its tasks, while `running`: IsCurrent is true on it
  // however deep in other serializers' tasks (RunAndWait helping) it is.
  std::atomic<std::thread::id> runner{};
  struct Timer {
    Clock::time_point deadline;
    std::function<void()> fn;
  };
  std::unordered_map<uint64_t, Timer> timers;
};

namespace {

// Whether the calling thread is one of the pool's. Only pool threads help
// (run another serializer's queued tasks while waiting for it): they must,
// or a pool whose every thread waits would wait forever; any other thread
// (the application's, gRPC's callback threads, lbkit-io) waits instead, so
// that policy code runs only on lbkit's control threads (and, by RunHere,
// where lbkit chose).
thread_local bool on_pool_thread = false;

}  // namespace

// The process-wide lbkit-control threads: they run ready serializers in
// arrival order and keep every serializer's timers in one map.
class ControlPool {
 public:
  using State = WorkSerializer::State;
  using Clock = WorkSerializer::Clock;

  // Created on first use and never destroyed (a serializer may be shut down
  // while the process exits).
  static ControlPool& Get() {
    static ControlPool* pool = new ControlPool();
    return *pool;
  }

  // Puts a serializer with work in the ready queue. Called with its mu held.
  void Enqueue(std::shared_ptr<State> state) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready_.push_back(std::move(state));
    }
    cv_.notify_one();
  }

  // Called with the serializer's mu held.
  uint64_t AddTimer(Clock::time_point deadline, std::weak_ptr<State> state) {
    bool earliest;
    uint64_t id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      id = next_timer_id_++;
      auto it = timers_.emplace(std::make_pair(deadline, id), std::move(state)).first;
      earliest = it == timers_.begin();
    }
    // A sleeping thread must wake to wait for the new, earlier deadline.
    if (earliest) cv_.notify_one();
    return id;
  }

  // Called with the serializer's mu held.
  void RemoveTimer(Clock::time_point deadline, uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    timers_.erase(std::make_pair(deadline, id));
  }

  // Runs `state`'s tasks in order until none is left, `limit` have run, or
  // `*done` (when given) is true. Called with `lock` (the serializer's mu)
  // held and `running` false; returns with it held and `running` false
  // again, the serializer back in the ready queue if tasks are left.
  static void Drain(const std::shared_ptr<State>& state, std::unique_lock<std::mutex>& lock,
                    int limit, const bool* done) {
    state->running = true;
    state->runner.store(std::this_thread::get_id(), std::memory_order_relaxed);
    for (int n = 0; !state->tasks.empty() && n < limit; ++n) {
      if (done != nullptr && *done) break;
      std::function<void()> task = std::move(state->tasks.front());
      state->tasks.pop_front();
      lock.unlock();
      task();
      task = nullptr;  // release captures before taking the lock again
      lock.lock();
    }
    state->runner.store(std::thread::id(), std::memory_order_relaxed);
    state->running = false;
    if (!state->tasks.empty() && !state->queued) {
      state->queued = true;
      Get().Enqueue(state);
    }
    state->idle.notify_all();
  }

 private:
  ControlPool() {
    for (size_t i = 0; i < ControlPoolSize(); ++i) {
      std::thread([this] { Work(); }).detach();
    }
  }

  void Work() {
    pthread_setname_np(pthread_self(), "lbkit-control");
    on_pool_thread = true;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      // Due timers first: serializers that always have work keep the ready
      // queue from emptying, and timers must still fire.
      if (!timers_.empty() && timers_.begin()->first.first <= Clock::now()) {
        FireDue(lock);
        continue;
      }
      if (!ready_.empty()) {
        std::shared_ptr<State> state = std::move(ready_.front());
        ready_.pop_front();
        lock.unlock();
        RunTurn(state);
        state.reset();
        lock.lock();
        continue;
      }
      if (timers_.empty()) {
        cv_.wait(lock);
        continue;
      }
      // A copy: while this thread waits, another may erase that timer.
      const Clock::time_point next = timers_.begin()->first.first;
      cv_.wait_until(lock, next);
    }
  }

  // Queues every due timer's function on its serializer. Called with `lock`
  // (mu_) held; returns with it held.
  void FireDue(std::unique_lock<std::mutex>& lock) {
    Clock::time_point now = Clock::now();
    std::vector<std::pair<uint64_t, std::weak_ptr<State>>> due;
    for (auto first = timers_.begin(); first != timers_.end() && first->first.first <= now;) {
      due.emplace_back(first->first.second, std::move(first->second));
      first = timers_.erase(first);
    }
    lock.unlock();
    for (auto& [id, weak] : due) Fire(weak, id);
    due.clear();
    lock.lock();
  }

  static void RunTurn(const std::shared_ptr<State>& state) {
    std::unique_lock<std::mutex> lock(state->mu);
    state->queued = false;
    // A caller helping (RunAndWait, Shutdown) has it; it requeues what it
    // leaves.
    if (state->running) return;
    Drain(state, lock, kBatch, nullptr);
  }

  // Queues a due timer's function as a task of its serializer; it runs there
  // unless cancelled first (Cancel on the serializer always wins).
  static void Fire(const std::weak_ptr<State>& weak, uint64_t id) {
    std::shared_ptr<State> state = weak.lock();
    if (state == nullptr) return;
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->stopping || state->timers.count(id) == 0) return;
    State* raw = state.get();  // alive while one of its tasks runs
    state->tasks.push_back([raw, id] {
      std::function<void()> fn;
      {
        std::lock_guard<std::mutex> lock(raw->mu);
        auto it = raw->timers.find(id);
        if (it == raw->timers.end()) return;  // cancelled, or shut down
        fn = std::move(it->second.fn);
        raw->timers.erase(it);
      }
      fn();
    });
    if (!state->queued && !state->running) {
      state->queued = true;
      Get().Enqueue(state);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<State>> ready_;
  std::map<std::pair<Clock::time_point, uint64_t>, std::weak_ptr<State>> timers_;
  uint64_t next_timer_id_ = 1;
};

size_t ControlPoolSize() {
  static const size_t size =
      std::clamp<size_t>(std::thread::hardware_concurrency(), size_t{2}, size_t{4});
  return size;
}

void RunOnControlPool(std::function<void()> fn) {
  // One serializer per pool thread: tasks spread over them run in parallel.
  static auto* lanes = [] {
    auto* lanes = new std::vector<std::unique_ptr<WorkSerializer>>();
    for (size_t i = 0; i < ControlPoolSize(); ++i) {
      lanes->push_back(std::make_unique<WorkSerializer>());
    }
    return lanes;
  }();
  static std::atomic<size_t> next{0};
  (*lanes)[next.fetch_add(1, std::memory_order_relaxed) % lanes->size()]->Run(std::move(fn));
}

WorkSerializer::WorkSerializer() : state_(std::make_shared<State>()) {}

WorkSerializer::~WorkSerializer() { Shutdown(); }

bool WorkSerializer::IsCurrent() const {
  return state_->runner.load(std::memory_order_relaxed) == std::this_thread::get_id();
}

bool WorkSerializer::Run(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->stopping) return false;
  state_->tasks.push_back(std::move(fn));
  if (!state_->queued && !state_->running) {
    state_->queued = true;
    ControlPool::Get().Enqueue(state_);
  }
  return true;
}

bool WorkSerializer::RunHere(std::function<void()> fn) {
  // Held here: `fn` may drop the last other reference to this serializer.
  std::shared_ptr<State> state = state_;
  std::unique_lock<std::mutex> lock(state->mu);
  if (state->stopping) return false;
  state->tasks.push_back(std::move(fn));
  if (state->running || state->queued) return true;  // its turn comes
  if (state->tasks.size() > 1) {
    // Work is waiting: keep the order.
    state->queued = true;
    ControlPool::Get().Enqueue(state);
    return true;
  }
  // Only `fn`: run it here; whatever it queues goes to the pool.
  ControlPool::Drain(state, lock, 1, nullptr);
  return true;
}

uint64_t WorkSerializer::RunAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
  delay = std::min(delay, kLongestDelay);
  Clock::time_point deadline = Clock::now() + delay;
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->stopping) return 0;
  uint64_t id = ControlPool::Get().AddTimer(deadline, state_);
  state_->timers.emplace(id, State::Timer{deadline, std::move(fn)});
  return id;
}

void WorkSerializer::Cancel(uint64_t timer_id) {
  std::function<void()> dropped;  // destroyed outside the lock
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->timers.find(timer_id);
  if (it == state_->timers.end()) return;
  ControlPool::Get().RemoveTimer(it->second.deadline, timer_id);
  dropped = std::move(it->second.fn);
  state_->timers.erase(it);
}

bool WorkSerializer::RunAndWait(const std::function<void()>& fn) {
  if (IsCurrent()) {
    fn();
    return true;
  }
  std::shared_ptr<State> state = state_;  // see RunHere
  bool done = false;
  std::unique_lock<std::mutex> lock(state->mu);
  if (state->stopping) return false;
  State* raw = state.get();
  state->tasks.push_back([raw, &fn, &done] {
    fn();
    std::lock_guard<std::mutex> lock(raw->mu);
    done = true;
    raw->idle.notify_all();
  });
  if (!on_pool_thread && !state->queued && !state->running) {
    state->queued = true;
    ControlPool::Get().Enqueue(state);
  }
  while (!done) {
    if (state->running || !on_pool_thread) {
      state->idle.wait(lock);
    } else {
      ControlPool::Drain(state, lock, INT_MAX, &done);
    }
  }
  return true;
}

void WorkSerializer::Shutdown() {
  std::shared_ptr<State> state = state_;              // see RunHere
  std::unordered_map<uint64_t, State::Timer> timers;  // dropped outside the lock
  std::unique_lock<std::mutex> lock(state->mu);
  if (!state->stopping) {
    state->stopping = true;
    timers.swap(state->timers);
    for (const auto& [id, timer] : timers) ControlPool::Get().RemoveTimer(timer.deadline, id);
  }
  if (!IsCurrent()) {
    // Stopping: no task joins the queue, so this ends. A queued serializer
    // is in the ready queue already (Run put it there).
    while (state->running || !state->tasks.empty()) {
      if (state->running || !on_pool_thread) {
        state->idle.wait(lock);
      } else {
        ControlPool::Drain(state, lock, INT_MAX, nullptr);
      }
    }
  }
  lock.unlock();
  timers.clear();
}

}  // namespace internal
}  // namespace lbkit
