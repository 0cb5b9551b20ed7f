// IoLoop: lbkit's own completion queue and the one thread that drains it.
//
// Why: gRPC's callback API runs completions on a small pool shared by every
// callback call in the process. If lbkit's own work (health watches, the
// connection-error probe, connectivity watching, relaying queued calls, the
// etcd resolver's and registrar's calls and timers) ran there, an
// application that blocks those threads would stall lbkit too, and with it
// the calls the application is waiting for. Everything lbkit asks of gRPC
// completes here instead, on a thread nobody else can block. Code the
// application gives lbkit runs here too, and must not block it: a relayed
// call's interceptors and pick done-callback, and a policy's handling of a
// connectivity change when its channel's control plane is idle
// (WorkSerializer::RunHere).
//
// The queue belongs to a port-less in-process grpc::Server, so that it can
// also serve lbkit's call relay (call_relay.h).
#ifndef LBKIT_SRC_CORE_IO_LOOP_H_
#define LBKIT_SRC_CORE_IO_LOOP_H_

#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include <grpcpp/completion_queue.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/server.h>

namespace lbkit {
namespace internal {

class IoLoop {
 public:
  // What lbkit passes to gRPC as a completion-queue tag. Complete runs on the
  // loop thread, once per operation the tag was handed to.
  class Tag {
   public:
    virtual void Complete(bool ok) = 0;

   protected:
    ~Tag() = default;
  };

  // The process-wide loop, created on first use and never destroyed
  // (operations may still be in flight when the process exits).
  static IoLoop& Get();

  // The queue to hand to gRPC, with IoLoop::Tag* tags only.
  grpc::ServerCompletionQueue* cq() { return cq_.get(); }
  // Runs `fn` on the loop thread, soon. Thread-safe. Posted from the loop
  // thread itself, `fn` runs right after the completion being handled (no
  // trip through gRPC's timers, which an alarm takes).
  void Post(std::function<void()> fn);

  // The in-process server and its generic service, for the call relay.
  grpc::Server* server() { return server_.get(); }
  grpc::AsyncGenericService* generic_service() { return &generic_service_; }

 private:
  IoLoop();
  void Loop();

  grpc::AsyncGenericService generic_service_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::unique_ptr<grpc::Server> server_;
  std::thread thread_;
  std::deque<std::function<void()>> local_;  // posted on the loop thread; loop thread only
};

// A tag that runs a function; for one-off operations.
class FunctionTag final : public IoLoop::Tag {
 public:
  explicit FunctionTag(std::function<void(bool)> fn) : fn_(std::move(fn)) {}
  // Runs the function, then deletes this tag.
  void Complete(bool ok) override {
    fn_(ok);
    delete this;
  }

 private:
  std::function<void(bool)> fn_;
};

// A tag that calls a member function of an object that outlives it; for the
// recurring operations of a long-lived object (one tag per kind of operation).
template <typename T>
class MethodTag final : public IoLoop::Tag {
 public:
  MethodTag(T* object, void (T::*method)(bool)) : object_(object), method_(method) {}
  void Complete(bool ok) override { (object_->*method_)(ok); }

 private:
  T* object_;
  void (T::*method_)(bool);
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_IO_LOOP_H_
