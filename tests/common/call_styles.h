// Test support: one call of every client call style (sync, async on a
// completion queue, callback, streaming, generic) started the same way, with
// its status and reply delivered to one callback.
#ifndef LBKIT_TESTS_COMMON_CALL_STYLES_H_
#define LBKIT_TESTS_COMMON_CALL_STYLES_H_

#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/impl/channel_interface.h>
#include <grpcpp/support/byte_buffer.h>
#include <gtest/gtest.h>

#include "echo.grpc.pb.h"

namespace lbkit_test {

enum class Style {
  kSyncUnary,
  kAsyncUnary,
  kCallbackUnary,
  kSyncServerStreaming,
  kSyncClientStreaming,
  kSyncBidi,
  kAsyncBidi,
  kCallbackBidi,
  kGenericCallbackUnary,
  kGenericAsyncBidi,
};

const char* Name(Style style);
// Whether the style blocks its caller (sync stubs).
bool IsSync(Style style);

struct Outcome {
  grpc::Status status;
  std::string reply;
};
using Done = std::function<void(const grpc::Status&, const std::string&)>;

// Completion-queue tags are heap functions, run by one driver thread.
using TagFn = std::function<void(bool)>;
void* Tag(TagFn fn);

class CqDriver {
 public:
  CqDriver()
      : thread_([this] {
          void* tag;
          bool ok;
          while (cq_.Next(&tag, &ok)) {
            auto* fn = static_cast<TagFn*>(tag);
            (*fn)(ok);
            delete fn;
          }
        }) {}
  ~CqDriver() {
    cq_.Shutdown();
    thread_.join();
  }
  grpc::CompletionQueue* cq() { return &cq_; }

 private:
  grpc::CompletionQueue cq_;
  std::thread thread_;
};

grpc::ByteBuffer Serialize(const grpc::examples::echo::EchoRequest& request);
// The message of a serialized EchoResponse ("" if it does not parse).
std::string ParseReply(const grpc::ByteBuffer& buffer);

// Starts one call of `style` on `channel` and returns once the stub has
// returned; `done` runs when the call has ended. Sync calls run on a thread of
// their own (joined by the caller through `threads`).
void StartCall(Style style, const std::shared_ptr<grpc::ChannelInterface>& channel,
               grpc::ClientContext* context, CqDriver* driver, std::vector<std::thread>* threads,
               Done done);

// One call of a style, with its outcome as a future and the time its stub
// took to return.
class OneCall {
 public:
  using Clock = std::chrono::steady_clock;

  // A `timeout` of 0 means no deadline. `metadata` goes on the call's context.
  OneCall(Style style, const std::shared_ptr<grpc::ChannelInterface>& channel,
          std::chrono::milliseconds timeout, bool wait_for_ready = true,
          const std::map<std::string, std::string>& metadata = {}) {
    if (timeout.count() > 0) context_.set_deadline(std::chrono::system_clock::now() + timeout);
    context_.set_wait_for_ready(wait_for_ready);
    for (const auto& [key, value] : metadata) context_.AddMetadata(key, value);
    auto promise = std::make_shared<std::promise<Outcome>>();
    outcome_ = promise->get_future();
    Clock::time_point start = Clock::now();
    StartCall(style, channel, &context_, &driver_, &threads_,
              [promise](const grpc::Status& status, const std::string& reply) {
                promise->set_value({status, reply});
              });
    in_stub_ = Clock::now() - start;
  }
  ~OneCall() {
    for (auto& thread : threads_) thread.join();
  }
  grpc::ClientContext& context() { return context_; }
  Clock::duration in_stub() const { return in_stub_; }
  // The outcome, or a failure if it does not come within `timeout`.
  Outcome Wait(std::chrono::seconds timeout = std::chrono::seconds(20)) {
    if (outcome_.wait_for(timeout) != std::future_status::ready) {
      ADD_FAILURE() << "the call did not end";
      context_.TryCancel();
    }
    return outcome_.get();
  }

 private:
  CqDriver driver_;  // outlives the call's tags: declared before the context
  grpc::ClientContext context_;
  std::vector<std::thread> threads_;
  std::future<Outcome> outcome_;
  Clock::duration in_stub_{};
};

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_COMMON_CALL_STYLES_H_
