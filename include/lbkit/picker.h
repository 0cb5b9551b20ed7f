// The data plane of a policy: a Picker chooses, for each call, which
// subchannel carries it.
//
// Thread-safety: a published Picker is immutable; Pick is called from many
// threads at once, never under the channel's control-plane lock, and must not
// block. Keep shared mutable state to atomics (a round-robin counter).
#ifndef LBKIT_PICKER_H_
#define LBKIT_PICKER_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <grpcpp/support/status.h>
#include <grpcpp/support/string_ref.h>

#include "lbkit/export.h"
#include "lbkit/load_report.h"

namespace lbkit {

class Subchannel;

// What a picker sees of a call. Valid during Pick only.
struct LBKIT_EXPORT PickArgs {
  std::string_view method;  // "/package.Service/Method"
  // The call's client metadata as set on its ClientContext. Never null.
  const std::multimap<std::string, std::string>* metadata = nullptr;
  // The call's deadline, as ClientContext::deadline() gives it; max() when
  // the call has none. A call that waited in the queue keeps the deadline it
  // arrived with (a relative one made absolute then), so a picker can tell how
  // much time is left from now().
  std::chrono::system_clock::time_point deadline = std::chrono::system_clock::time_point::max();
  // ClientContext::set_wait_for_ready: the call waits for a READY connection
  // instead of failing on a picker's Fail (see PickResult::Kind::kFail).
  bool wait_for_ready = false;
};

// What a done-callback learns of the call it was attached to. Valid only
// during the callback: copy what must outlive it. Not thread-safe (a callback
// gets its own).
class LBKIT_EXPORT CallDoneInfo {
 public:
  using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

  // lbkit builds these; policy unit tests may too. `trailing_metadata`, if
  // not null, must outlive this object.
  explicit CallDoneInfo(grpc::Status status, const Metadata* trailing_metadata = nullptr);
  ~CallDoneInfo();
  CallDoneInfo(const CallDoneInfo&) = delete;
  CallDoneInfo& operator=(const CallDoneInfo&) = delete;

  // The call's final status as the application sees it, or, for a pick lbkit
  // did not use, the CANCELLED status CallDoneCallback describes.
  const grpc::Status& status() const { return status_; }
  // The trailing metadata the backend sent, as gRPC hands it to applications;
  // empty when it sent none or the call never reached a backend. Keys are
  // lowercase; values of "-bin" keys are the raw bytes (gRPC has undone the
  // base64). gRPC's ORCA trailer endpoint-load-metrics-bin is never here:
  // gRPC C++ keeps it (load_report.h).
  const Metadata& trailing_metadata() const;
  // The backend's load report, in gRPC's ORCA format, as lbkit's server
  // helper sends it (server_load_report.h; the trailer
  // kLbkitLoadReportTrailer), parsed on the first call and kept for the next.
  // Null when the backend sent none, or one that does not parse. Calls whose
  // policy does not ask pay nothing for it.
  const LoadReport* load_report() const;

 private:
  grpc::Status status_;
  const Metadata* trailing_metadata_;
  mutable bool load_report_parsed_ = false;
  mutable std::unique_ptr<LoadReport> load_report_;
};

// Receives a call's end, exactly once for every completed pick. It must be
// quick and must not block: it may run on lbkit's I/O thread, where a
// blocking callback stalls lbkit's work for every channel in the process. It
// should not throw; if it does, lbkit logs it (at most a line a second) and
// goes on: the call's status is unaffected.
//
// When, and on which thread, it runs depends on how the call was placed:
//
// - A call placed at once (the usual case) reports its end the way gRPC C++
//   reports a call's status to client interceptors, which is where lbkit
//   learns it: when the application takes the status, not when it arrives.
//     sync (unary, or streaming Finish()): on the calling thread, inside the
//       blocking call, before it returns;
//     async on a CompletionQueue the application drives (unary Finish(),
//       streaming Finish(), GenericStub): on the thread that takes the
//       Finish tag, inside CompletionQueue::Next/AsyncNext, before it returns
//       the tag. A queue drained late delays the callback as much; a call
//       whose Finish is never requested, or never taken, reports CANCELLED
//       "call ended without a status" when its ClientContext is destroyed;
//     callback API (unary, reactors): on one of gRPC's callback threads, just
//       before the application's callback or OnDone runs.
//   No public API of grpc++ 1.51 lets lbkit learn a direct call's status
//   sooner: gRPC runs interceptors' POST_RECV_STATUS hooks in the completion
//   queue's Next; the core accepts one receive-status operation per call (the
//   stub's), and grpc++ has no public call tracer or client filter.
// - A call that had to wait for a picker (docs/queued-calls.md): on lbkit's
//   I/O thread, as soon as the backend's status arrives, whatever the call
//   style and whether or not the application has taken it yet.
// - A pick lbkit could not use (the picked connection had gone down before
//   the call started; the call then waits for the next picker): at once, on
//   the thread that picked (the caller's, or, for a waiting call, the one
//   running the channel's work serializer: balancer.h), with CANCELLED and a
//   message starting "lbkit: pick not used". Nothing was sent to that
//   backend, so a policy counting failures per backend should not count it.
// - A waiting call that ended (deadline, TryCancel) just as it was placed,
//   so that nothing was sent: with CANCELLED, at once on the thread running
//   the channel's work serializer ("call ended while queued"), or on lbkit's
//   I/O thread or the thread releasing the call ("call ended before it was
//   sent").
// - A pick whose attached metadata is invalid (PickResult::AddMetadata): at
//   once, on the thread that picked, with the call's INTERNAL status.
//
// Trailing metadata and a load report exist only when a backend answered.
using CallDoneCallback = std::function<void(const CallDoneInfo& info)>;

// The decision for one call.
class LBKIT_EXPORT PickResult {
 public:
  enum class Kind {
    kComplete,  // use subchannel()
    kQueue,     // no decision yet: wait for the next picker (bounded by the deadline)
    kFail,      // fail with status(); a wait-for-ready call keeps waiting instead
  };

  // `subchannel` must be kept alive by the picker that returns it (pickers hold
  // std::shared_ptr<Subchannel>). `on_done`, if set, receives the call's end
  // once (CallDoneCallback says when).
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

  // Attaches `key: value` to the initial metadata of the call this pick
  // completes; the backend sees it as client metadata, beside the call's own
  // (a key the call already has is then sent twice). Ignored unless the
  // result is a Complete one. Chains: Complete(sc).AddMetadata(k, v). A pick
  // that attaches nothing pays one null pointer for it.
  //
  // lbkit checks the attached entries as gRPC would and, if one is invalid,
  // fails the call (before anything is sent) with INTERNAL "lbkit: picker
  // attached invalid metadata: ..." naming the key; the done-callback gets
  // that status. gRPC itself would abort the process on such metadata. Valid:
  // a non-empty key of lowercase letters, digits, '-', '_' and '.', not
  // starting with "grpc-" (reserved) and not one of the HTTP/2 headers gRPC
  // writes itself (content-type, te, user-agent, host); a value of printable
  // ASCII (0x20-0x7e) unless the key ends in "-bin", which takes any bytes
  // (gRPC base64-encodes them).
  PickResult& AddMetadata(std::string key, std::string value) & {
    if (metadata_ == nullptr) metadata_ = std::make_unique<MetadataList>();
    metadata_->emplace_back(std::move(key), std::move(value));
    return *this;
  }
  PickResult&& AddMetadata(std::string key, std::string value) && {
    AddMetadata(std::move(key), std::move(value));
    return std::move(*this);
  }

  Kind kind() const { return kind_; }
  Subchannel* subchannel() const { return subchannel_; }
  const grpc::Status& status() const { return status_; }
  CallDoneCallback& on_done() { return on_done_; }
  using MetadataList = std::vector<std::pair<std::string, std::string>>;
  // What AddMetadata attached, in order; null when nothing was.
  const MetadataList* metadata() const { return metadata_.get(); }
  // Hands over what AddMetadata attached (empty when nothing was).
  MetadataList TakeMetadata() {
    return metadata_ != nullptr ? std::move(*metadata_) : MetadataList();
  }

  PickResult(PickResult&&) noexcept = default;
  PickResult& operator=(PickResult&&) noexcept = default;
  PickResult(const PickResult& other)
      : kind_(other.kind_),
        subchannel_(other.subchannel_),
        status_(other.status_),
        on_done_(other.on_done_),
        metadata_(other.metadata_ != nullptr ? std::make_unique<MetadataList>(*other.metadata_)
                                             : nullptr) {}
  PickResult& operator=(const PickResult& other) {
    if (this != &other) *this = PickResult(other);
    return *this;
  }
  ~PickResult() = default;

 private:
  explicit PickResult(Kind kind) : kind_(kind) {}

  Kind kind_;
  Subchannel* subchannel_ = nullptr;
  grpc::Status status_;
  CallDoneCallback on_done_;
  // A pointer, not a vector: a pick that attaches nothing (nearly all of
  // them) builds and destroys one null pointer, not three.
  std::unique_ptr<MetadataList> metadata_;
};

class LBKIT_EXPORT Picker {
 public:
  virtual ~Picker() = default;
  // Chooses for one call. Called concurrently; must not block or throw.
  virtual PickResult Pick(const PickArgs& args) const = 0;
};

// Pickers every policy needs.
// Queues every call (while connecting, or idle and waking up).
class LBKIT_EXPORT QueuePicker final : public Picker {
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
class LBKIT_EXPORT FailPicker final : public Picker {
 public:
  explicit FailPicker(grpc::Status status) : status_(std::move(status)) {}
  PickResult Pick(const PickArgs&) const override { return PickResult::Fail(status_); }

 private:
  grpc::Status status_;
};

}  // namespace lbkit

#endif  // LBKIT_PICKER_H_
