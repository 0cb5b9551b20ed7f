// The data plane of a policy: a Picker chooses, for each call, which
// subchannel carries it.
//
// Thread-safety: a published Picker is immutable; Pick is called from many
// threads at once, never under the channel's control-plane lock, and must not
// block. Keep shared mutable state to atomics (a round-robin counter).
#ifndef LBKIT_PICKER_H_
#define LBKIT_PICKER_H_

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include <grpcpp/support/status.h>

namespace lbkit {

class Subchannel;

// What a picker sees of a call.
struct PickArgs {
  std::string_view method;  // "/package.Service/Method"
  // The call's client metadata as set on its ClientContext. Never null.
  const std::multimap<std::string, std::string>* metadata = nullptr;
};

// Receives the call's final status, exactly once for every completed pick.
// Runs on whichever thread ends the call: one of gRPC's, the thread that
// started the call, the channel's control thread, or lbkit's I/O thread (for a
// call that had to wait, docs/queued-calls.md). It must be quick and must not
// block: a blocking callback on lbkit's I/O thread stalls lbkit's work for
// every channel in the process.
//
// A pick lbkit could not use (the picked connection had gone down before the
// call started; the call then waits for the next picker) still gets its
// callback, at once, with CANCELLED and a message starting
// "lbkit: pick not used": nothing was sent to that backend, so a policy
// counting failures per backend should not count it.
using CallDoneCallback = std::function<void(const grpc::Status& status)>;

// The decision for one call.
class PickResult {
 public:
  enum class Kind {
    kComplete,  // use subchannel()
    kQueue,     // no decision yet: wait for the next picker (bounded by the deadline)
    kFail,      // fail with status(); a wait-for-ready call keeps waiting instead
  };

  // `subchannel` must be kept alive by the picker that returns it (pickers hold
  // std::shared_ptr<Subchannel>). `on_done`, if set, receives the call's final
  // status once.
  static PickResult Complete(Subchannel* subchannel, CallDoneCallback on_done = nullptr) {
    PickResult r(Kind::kComplete);
    r.subchannel_ = subchannel;
    r.on_done_ = std::move(on_done);
    return r;
  }
  static PickResult Queue() { return PickResult(Kind::kQueue); }
  // `status` must not be OK; calls fail with its code and message.
  static PickResult Fail(grpc::Status status) {
    PickResult r(Kind::kFail);
    r.status_ = std::move(status);
    return r;
  }

  Kind kind() const { return kind_; }
  Subchannel* subchannel() const { return subchannel_; }
  const grpc::Status& status() const { return status_; }
  CallDoneCallback& on_done() { return on_done_; }

 private:
  explicit PickResult(Kind kind) : kind_(kind) {}

  Kind kind_;
  Subchannel* subchannel_ = nullptr;
  grpc::Status status_;
  CallDoneCallback on_done_;
};

class Picker {
 public:
  virtual ~Picker() = default;
  // Chooses for one call. Called concurrently; must not block or throw.
  virtual PickResult Pick(const PickArgs& args) const = 0;
};

// Pickers every policy needs.
// Queues every call (while connecting, or idle and waking up).
class QueuePicker final : public Picker {
 public:
  // `on_pick`, if set, runs on each pick (to ask an idle policy to connect);
  // it must be thread-safe and cheap.
  explicit QueuePicker(std::function<void()> on_pick = nullptr) : on_pick_(std::move(on_pick)) {}
  PickResult Pick(const PickArgs&) const override {
    if (on_pick_) on_pick_();
    return PickResult::Queue();
  }

 private:
  std::function<void()> on_pick_;
};

// Fails every call with one status (TRANSIENT_FAILURE, bad config).
class FailPicker final : public Picker {
 public:
  explicit FailPicker(grpc::Status status) : status_(std::move(status)) {}
  PickResult Pick(const PickArgs&) const override { return PickResult::Fail(status_); }

 private:
  grpc::Status status_;
};

}  // namespace lbkit

#endif  // LBKIT_PICKER_H_
