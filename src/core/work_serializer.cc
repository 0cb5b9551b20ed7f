#include "core/work_serializer.h"

#include <pthread.h>

#include <algorithm>
#include <vector>

namespace lbkit {
namespace internal {

struct WorkSerializer::State {
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;  // no new work accepted
  std::deque<std::function<void()>> tasks;
  // Timers by (deadline, id); ids also map back to their deadline for Cancel.
  std::map<std::pair<Clock::time_point, uint64_t>, std::function<void()>> timers;
  std::unordered_map<uint64_t, Clock::time_point> timer_deadlines;
  uint64_t next_timer_id = 1;
  std::string name;
};

WorkSerializer::WorkSerializer(std::string name) : state_(std::make_shared<State>()) {
  state_->name = std::move(name);
  thread_ = std::thread(&WorkSerializer::Loop, state_);
  thread_id_ = thread_.get_id();
}

WorkSerializer::~WorkSerializer() { Shutdown(); }

bool WorkSerializer::Run(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->stopping) return false;
    state_->tasks.push_back(std::move(fn));
  }
  state_->cv.notify_one();
  return true;
}

uint64_t WorkSerializer::RunAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
  delay = std::min(delay, kLongestDelay);
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->stopping) return 0;
    id = state_->next_timer_id++;
    Clock::time_point deadline = Clock::now() + delay;
    state_->timers.emplace(std::make_pair(deadline, id), std::move(fn));
    state_->timer_deadlines.emplace(id, deadline);
  }
  state_->cv.notify_one();
  return id;
}

void WorkSerializer::Cancel(uint64_t timer_id) {
  std::function<void()> dropped;  // destroyed outside the lock
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->timer_deadlines.find(timer_id);
  if (it == state_->timer_deadlines.end()) return;
  auto timer = state_->timers.find(std::make_pair(it->second, timer_id));
  if (timer != state_->timers.end()) {
    dropped = std::move(timer->second);
    state_->timers.erase(timer);
  }
  state_->timer_deadlines.erase(it);
}

void WorkSerializer::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopping = true;
  }
  state_->cv.notify_one();
  if (!thread_.joinable()) return;
  if (IsCurrent()) {
    thread_.detach();  // the loop owns `state_` and ends after this task
  } else {
    thread_.join();
  }
}

void WorkSerializer::Loop(std::shared_ptr<State> state) {
  pthread_setname_np(pthread_self(), state->name.substr(0, 15).c_str());
  std::unique_lock<std::mutex> lock(state->mu);
  for (;;) {
    if (!state->tasks.empty()) {
      std::function<void()> task = std::move(state->tasks.front());
      state->tasks.pop_front();
      lock.unlock();
      task();
      task = nullptr;  // release captures before taking the lock again
      lock.lock();
      continue;
    }
    if (state->stopping) break;
    if (!state->timers.empty()) {
      auto first = state->timers.begin();
      if (first->first.first <= Clock::now()) {
        std::function<void()> fn = std::move(first->second);
        state->timer_deadlines.erase(first->first.second);
        state->timers.erase(first);
        lock.unlock();
        fn();
        fn = nullptr;
        lock.lock();
        continue;
      }
      state->cv.wait_until(lock, first->first.first);
    } else {
      state->cv.wait(lock);
    }
  }
  // Drop what is left outside the lock: destructors may post (and be refused).
  auto timers = std::move(state->timers);
  state->timer_deadlines.clear();
  lock.unlock();
  timers.clear();
}

}  // namespace internal
}  // namespace lbkit
