// Every call style a generated stub offers goes through lbkit's channel and
// is routed per call: over a round_robin channel with two READY backends,
// consecutive calls alternate between them.
#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "common/test_backend.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using grpc::examples::echo::EchoRequest;
using grpc::examples::echo::EchoResponse;
using lbkit_test::TestBackend;

constexpr char kRoundRobin[] = R"({"loadBalancingConfig":[{"round_robin":{}}]})";

class CallStylesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    channel_ = lbkit_test::StaticChannel({a_.address(), b_.address()}, kRoundRobin);
    ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel_, 2));
    stub_ = Echo::NewStub(channel_);
  }

  // The backend address named at the end of a reply.
  std::string Backend(const std::string& reply) {
    size_t from = reply.rfind("(from ");
    if (from == std::string::npos) return "bad reply: " + reply;
    return reply.substr(from + 6, reply.size() - from - 7);
  }

  // Four calls of one style alternate between the two backends.
  void ExpectAlternation(const std::function<std::string()>& call) {
    std::vector<std::string> served;
    for (int i = 0; i < 4; ++i) served.push_back(Backend(call()));
    std::set<std::string> both = {a_.address(), b_.address()};
    EXPECT_EQ(std::set<std::string>(served.begin(), served.end()), both)
        << served[0] << " " << served[1] << " " << served[2] << " " << served[3];
    for (size_t i = 1; i < served.size(); ++i) EXPECT_NE(served[i], served[i - 1]);
  }

  static void SetDeadline(grpc::ClientContext* context) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }

  TestBackend a_, b_;
  std::shared_ptr<lbkit::Channel> channel_;
  std::unique_ptr<Echo::Stub> stub_;
};

TEST_F(CallStylesTest, SyncUnary) {
  ExpectAlternation([&] { return lbkit_test::Echo(*stub_, "sync"); });
}

TEST_F(CallStylesTest, AsyncUnaryOnACompletionQueue) {
  grpc::CompletionQueue cq;
  ExpectAlternation([&] {
    grpc::ClientContext context;
    SetDeadline(&context);
    EchoRequest request;
    request.set_message("async");
    EchoResponse response;
    grpc::Status status;
    auto rpc = stub_->AsyncUnaryEcho(&context, request, &cq);
    rpc->Finish(&response, &status, reinterpret_cast<void*>(7));
    void* tag = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(tag, reinterpret_cast<void*>(7));
    EXPECT_TRUE(ok);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.message();
  });
  lbkit_test::ShutdownAndDrain(cq);
}

TEST_F(CallStylesTest, CallbackUnary) {
  ExpectAlternation([&] {
    grpc::ClientContext context;
    SetDeadline(&context);
    EchoRequest request;
    request.set_message("callback");
    EchoResponse response;
    std::promise<grpc::Status> done;
    stub_->async()->UnaryEcho(&context, &request, &response,
                              [&done](grpc::Status status) { done.set_value(status); });
    grpc::Status status = done.get_future().get();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.message();
  });
}

TEST_F(CallStylesTest, SyncServerStreaming) {
  ExpectAlternation([&] {
    grpc::ClientContext context;
    SetDeadline(&context);
    EchoRequest request;
    request.set_message("server-stream");
    auto reader = stub_->ServerStreamingEcho(&context, request);
    EchoResponse response;
    std::string last;
    int count = 0;
    while (reader->Read(&response)) {
      last = response.message();
      ++count;
    }
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(count, 3);
    return last;
  });
}

TEST_F(CallStylesTest, SyncClientStreaming) {
  ExpectAlternation([&] {
    grpc::ClientContext context;
    SetDeadline(&context);
    EchoResponse response;
    auto writer = stub_->ClientStreamingEcho(&context, &response);
    EchoRequest request;
    for (int i = 0; i < 3; ++i) {
      request.set_message("part" + std::to_string(i));
      EXPECT_TRUE(writer->Write(request));
    }
    writer->WritesDone();
    EXPECT_TRUE(writer->Finish().ok());
    EXPECT_EQ(response.message().rfind("part2 x3 (from ", 0), 0u) << response.message();
    return response.message();
  });
}

TEST_F(CallStylesTest, SyncBidiStreaming) {
  ExpectAlternation([&] {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub_->BidirectionalStreamingEcho(&context);
    EchoRequest request;
    EchoResponse response;
    std::string first;
    for (int i = 0; i < 3; ++i) {
      request.set_message("bidi" + std::to_string(i));
      EXPECT_TRUE(stream->Write(request));
      EXPECT_TRUE(stream->Read(&response));
      // One stream, one connection: every message of it from one backend.
      if (i == 0) first = Backend(response.message());
      EXPECT_EQ(Backend(response.message()), first);
    }
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
    return response.message();
  });
}

TEST_F(CallStylesTest, AsyncBidiStreaming) {
  grpc::CompletionQueue cq;
  auto next = [&cq](intptr_t expected) {
    void* tag = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), expected);
    return ok;
  };
  ExpectAlternation([&] {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub_->PrepareAsyncBidirectionalStreamingEcho(&context, &cq);
    stream->StartCall(reinterpret_cast<void*>(1));
    EXPECT_TRUE(next(1));
    EchoRequest request;
    request.set_message("async-bidi");
    stream->Write(request, reinterpret_cast<void*>(2));
    EXPECT_TRUE(next(2));
    EchoResponse response;
    stream->Read(&response, reinterpret_cast<void*>(3));
    EXPECT_TRUE(next(3));
    stream->WritesDone(reinterpret_cast<void*>(4));
    EXPECT_TRUE(next(4));
    grpc::Status status;
    stream->Finish(&status, reinterpret_cast<void*>(5));
    EXPECT_TRUE(next(5));
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.message();
  });
  lbkit_test::ShutdownAndDrain(cq);
}

// A callback-API bidi stream: writes `count` messages one after another and
// reads replies until the server closes. At most one write and one read are
// outstanding at a time, as the API requires.
class BidiReactor final : public grpc::ClientBidiReactor<EchoRequest, EchoResponse> {
 public:
  BidiReactor(Echo::Stub* stub, int count) : count_(count) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    stub->async()->BidirectionalStreamingEcho(&context_, this);
    request_.set_message("callback-bidi");
    StartRead(&response_);
    StartWrite(&request_);
    StartCall();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return;
    if (++written_ < count_) {
      StartWrite(&request_);
    } else {
      StartWritesDone();
    }
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    replies_.push_back(response_.message());
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    done_ = true;
    cv_.notify_one();
  }
  grpc::Status Await(std::vector<std::string>* replies) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
    *replies = replies_;
    return status_;
  }

 private:
  grpc::ClientContext context_;
  EchoRequest request_;
  EchoResponse response_;
  int count_;
  int written_ = 0;
  std::vector<std::string> replies_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  grpc::Status status_;
};

TEST_F(CallStylesTest, CallbackBidiStreaming) {
  ExpectAlternation([&] {
    BidiReactor reactor(stub_.get(), 3);
    std::vector<std::string> replies;
    grpc::Status status = reactor.Await(&replies);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(replies.size(), 3u);
    return replies.empty() ? std::string() : replies.back();
  });
}

TEST_F(CallStylesTest, ManyThreadsShareTheChannel) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (Backend(lbkit_test::Echo(*stub_, "x")).find("127.0.0.1:") == 0) ++ok;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 400);
  uint64_t a_calls = 0, b_calls = 0;
  for (const auto& subchannel : channel_->Snapshot().subchannels) {
    (subchannel.address == a_.address() ? a_calls : b_calls) += subchannel.calls_started;
  }
  EXPECT_EQ(a_calls + b_calls, 400u) << "every call was counted once";
  EXPECT_EQ(a_calls, b_calls) << "round_robin splits evenly";
}

}  // namespace
