#include "core/io_loop.h"

#include <pthread.h>

#include <climits>
#include <utility>

#include <grpc/support/time.h>
#include <grpcpp/alarm.h>
#include <grpcpp/server_builder.h>

namespace lbkit {
namespace internal {
namespace {

// An already-expired alarm is gRPC's public way to put a tag on a queue.
class PostTag final : public IoLoop::Tag {
 public:
  explicit PostTag(std::function<void()> fn) : fn_(std::move(fn)) {}
  void Arm(grpc::CompletionQueue* cq) { alarm_.Set(cq, gpr_now(GPR_CLOCK_MONOTONIC), this); }
  void Complete(bool /*ok*/) override {
    fn_();
    delete this;
  }

 private:
  grpc::Alarm alarm_;
  std::function<void()> fn_;
};

}  // namespace

IoLoop& IoLoop::Get() {
  static IoLoop* loop = new IoLoop();
  return *loop;
}

IoLoop::IoLoop() {
  grpc::ServerBuilder builder;
  builder.RegisterAsyncGenericService(&generic_service_);
  // The relay only forwards: the upstream connection enforces the user's
  // message size limits.
  builder.SetMaxReceiveMessageSize(INT_MAX);
  builder.SetMaxSendMessageSize(INT_MAX);
  cq_ = builder.AddCompletionQueue();
  server_ = builder.BuildAndStart();
  thread_ = std::thread([this] { Loop(); });
}

namespace {
thread_local bool on_loop_thread = false;
}  // namespace

void IoLoop::Post(std::function<void()> fn) {
  if (on_loop_thread) {
    local_.push_back(std::move(fn));
    return;
  }
  auto* tag = new PostTag(std::move(fn));
  tag->Arm(cq_.get());
}

void IoLoop::Loop() {
  pthread_setname_np(pthread_self(), "lbkit-io");
  on_loop_thread = true;
  void* tag;
  bool ok;
  while (cq_->Next(&tag, &ok)) {
    static_cast<Tag*>(tag)->Complete(ok);
    while (!local_.empty()) {
      std::function<void()> fn = std::move(local_.front());
      local_.pop_front();
      fn();
    }
  }
}

}  // namespace internal
}  // namespace lbkit
