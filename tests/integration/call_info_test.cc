// Per-call information between a policy and its calls, end to end against a
// real server: what a picker sees of a call (its deadline and wait-for-ready
// flag), the metadata a picker attaches (the backend receives it, for a call
// placed at once and for one that had to wait), and what the pick's
// done-callback learns of the call's end (the backend's trailing metadata and
// its ORCA load report, sent with lbkit::AddLoadReportTrailer).
#include <grpcpp/client_context.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/call_styles.h"
#include "common/load_reports.h"
#include "common/test_backend.h"
#include "common/test_policy.h"
#include "lbkit/lbkit.h"
#include "lbkit/server_load_report.h"

namespace {

using grpc::examples::echo::Echo;
using grpc::examples::echo::EchoRequest;
using grpc::examples::echo::EchoResponse;
using lbkit_test::OneCall;
using lbkit_test::Outcome;
using lbkit_test::Style;
using std::chrono::system_clock;

constexpr char kConfig[] = R"({"loadBalancingConfig":[{"call_info_recording":{}}]})";
constexpr char kPickKey[] = "x-lbkit-pick";  // what the test's picker attaches
constexpr char kCallKey[] = "x-test-call";   // names each call in the logs below
constexpr char kWantKey[] = "x-want";        // which trailers the backend adds
constexpr char kServedByKey[] = "x-served-by";

std::string ToString(grpc::string_ref ref) { return std::string(ref.data(), ref.size()); }

// --- The backend. ---

// Replies "pick=<the kPickKey values it received, comma-separated, or none>".
// Adds trailers when the call's kWantKey asks:
//   "report"     kServedByKey, and EveryFieldLoadReport() through
//                lbkit::AddLoadReportTrailer
//   "malformed"  kServedByKey, and the load report trailer lbkit reads
//                (kLbkitLoadReportTrailer) with bytes that are no protobuf
class InfoService final : public Echo::Service {
 public:
  grpc::Status UnaryEcho(grpc::ServerContext* context, const EchoRequest*,
                         EchoResponse* response) override {
    response->set_message(Seen(*context));
    AddTrailers(context);
    return grpc::Status::OK;
  }
  grpc::Status ServerStreamingEcho(grpc::ServerContext* context, const EchoRequest*,
                                   grpc::ServerWriter<EchoResponse>* writer) override {
    EchoResponse response;
    response.set_message(Seen(*context));
    writer->Write(response);
    AddTrailers(context);
    return grpc::Status::OK;
  }
  grpc::Status ClientStreamingEcho(grpc::ServerContext* context,
                                   grpc::ServerReader<EchoRequest>* reader,
                                   EchoResponse* response) override {
    EchoRequest request;
    while (reader->Read(&request)) {
    }
    response->set_message(Seen(*context));
    AddTrailers(context);
    return grpc::Status::OK;
  }
  grpc::Status BidirectionalStreamingEcho(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<EchoResponse, EchoRequest>* stream) override {
    EchoRequest request;
    EchoResponse response;
    response.set_message(Seen(*context));
    while (stream->Read(&request)) stream->Write(response);
    AddTrailers(context);
    return grpc::Status::OK;
  }

 private:
  static std::string Seen(const grpc::ServerContext& context) {
    std::string seen;
    auto [begin, end] = context.client_metadata().equal_range(kPickKey);
    for (auto it = begin; it != end; ++it) seen += (seen.empty() ? "" : ",") + ToString(it->second);
    return "pick=" + (seen.empty() ? std::string("none") : seen);
  }
  static void AddTrailers(grpc::ServerContext* context) {
    auto it = context->client_metadata().find(kWantKey);
    if (it == context->client_metadata().end()) return;
    const std::string want = ToString(it->second);
    context->AddTrailingMetadata(kServedByKey, "info-backend");
    if (want == "report") {
      lbkit::AddLoadReportTrailer(context, lbkit_test::EveryFieldLoadReport());
    } else if (want == "malformed") {
      context->AddTrailingMetadata(lbkit::kLbkitLoadReportTrailer, std::string("\x09\x01\x02", 3));
    }
  }
};

// InfoService on 127.0.0.1, on a port the kernel picks.
class InfoBackend {
 public:
  InfoBackend() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    EXPECT_NE(port, 0);
    address_ = "127.0.0.1:" + std::to_string(port);
  }
  ~InfoBackend() {
    if (server_ == nullptr) return;
    server_->Shutdown(system_clock::now());
    server_->Wait();
  }
  const std::string& address() const { return address_; }

 private:
  InfoService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

// --- The policy: pick_first, recording what its picker sees and what each
// pick's done-callback gets, and attaching metadata when told to. ---

struct SeenPick {
  std::string call;  // the call's kCallKey
  system_clock::time_point deadline;
  bool wait_for_ready = false;
};

struct SeenEnd {
  std::string call;
  grpc::Status status;
  std::multimap<std::string, std::string> trailers;
  std::optional<lbkit::LoadReport> load_report;
};

class Recorder {
 public:
  void Reset(std::string attach_key = "", std::string attach_value = "") {
    std::lock_guard<std::mutex> lock(mu_);
    picks_.clear();
    ends_.clear();
    attach_key_ = std::move(attach_key);
    attach_value_ = std::move(attach_value);
  }

  lbkit::PickResult Pick(const lbkit::PickArgs& args, lbkit::PickResult result) {
    auto it = args.metadata->find(kCallKey);
    std::string call = it == args.metadata->end() ? "" : it->second;
    std::string key;
    std::string value;
    {
      std::lock_guard<std::mutex> lock(mu_);
      picks_.push_back({call, args.deadline, args.wait_for_ready});
      key = attach_key_;
      value = attach_value_;
    }
    if (result.kind() != lbkit::PickResult::Kind::kComplete) return result;
    lbkit::PickResult complete = lbkit::PickResult::Complete(
        result.subchannel(), [this, call](const lbkit::CallDoneInfo& info) { Ended(call, info); });
    if (!key.empty()) complete.AddMetadata(key, value);
    return complete;
  }

  // Every pick of `call`, in order.
  std::vector<SeenPick> PicksOf(const std::string& call) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<SeenPick> picks;
    for (const SeenPick& pick : picks_) {
      if (pick.call == call) picks.push_back(pick);
    }
    return picks;
  }
  // The end of `call`'s used pick, if its done-callback has run.
  std::optional<SeenEnd> EndOf(const std::string& call) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const SeenEnd& end : ends_) {
      if (end.call == call && end.status.error_message().rfind("lbkit: pick not used", 0) != 0) {
        return end;
      }
    }
    return std::nullopt;
  }

 private:
  void Ended(const std::string& call, const lbkit::CallDoneInfo& info) {
    SeenEnd end{call, info.status(), {}, std::nullopt};
    for (const auto& [key, value] : info.trailing_metadata()) {
      end.trailers.emplace(ToString(key), ToString(value));
    }
    if (const lbkit::LoadReport* report = info.load_report()) end.load_report = *report;
    std::lock_guard<std::mutex> lock(mu_);
    ends_.push_back(std::move(end));
  }

  std::mutex mu_;
  std::vector<SeenPick> picks_;
  std::vector<SeenEnd> ends_;
  std::string attach_key_;
  std::string attach_value_;
};

Recorder& Rec() {
  static auto* recorder = new Recorder();
  return *recorder;
}

class CallInfoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static const bool registered =
        lbkit_test::RegisterWrappedPickFirst("call_info_recording", [](const lbkit::PickArgs& args,
                                                                       lbkit::PickResult result) {
          return Rec().Pick(args, std::move(result));
        }).ok();
    ASSERT_TRUE(registered);
    Rec().Reset();
    resolver_ = lbkit::ManualResolver::Create();
    channel_ = lbkit_test::ManualChannel(resolver_);  // no state yet: calls wait
  }

  // The picker attaches `key: value` to every call it completes from now on.
  void Attach(const std::string& key, const std::string& value) { Rec().Reset(key, value); }
  // Gives the channel the backend; calls waiting so far are placed.
  void Deliver() { resolver_->SetInitialState({{lbkit::Endpoint{{backend_.address()}}}, kConfig}); }
  void DeliverAndWaitReady() {
    Deliver();
    ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel_, GRPC_CHANNEL_READY));
  }
  void WaitQueued(size_t n) {
    ASSERT_TRUE(lbkit_test::WaitFor([&] { return channel_->Snapshot().queued_calls == n; }))
        << channel_->Snapshot().queued_calls << " queued";
  }

  InfoBackend backend_;
  std::shared_ptr<lbkit::ManualResolver> resolver_;
  std::shared_ptr<lbkit::Channel> channel_;
};

// --- Every call style. ---

class CallInfoStyleTest : public CallInfoTest, public ::testing::WithParamInterface<Style> {
 protected:
  // The done-callback of `call` ran before the application saw the status
  // (picker.h: for a direct call gRPC hands the status to lbkit first; for a
  // relayed one lbkit has it before it finishes the relayed call). It got the
  // backend's trailers and every field of its load report.
  void ExpectTrailersAndLoadReport(const std::string& call) {
    std::optional<SeenEnd> end = Rec().EndOf(call);
    ASSERT_TRUE(end.has_value()) << "no done-callback by the time the application had the status";
    EXPECT_TRUE(end->status.ok()) << end->status.error_message();
    auto served_by = end->trailers.find(kServedByKey);
    ASSERT_NE(served_by, end->trailers.end());
    EXPECT_EQ(served_by->second, "info-backend");
    ASSERT_TRUE(end->load_report.has_value());
    lbkit_test::ExpectSameLoadReport(*end->load_report, lbkit_test::EveryFieldLoadReport());
  }
};

TEST_P(CallInfoStyleTest, AttachedMetadataReachesTheBackendForACallPlacedAtOnce) {
  Attach(kPickKey, "direct-7");
  DeliverAndWaitReady();
  OneCall call(GetParam(), channel_, std::chrono::seconds(20), true, {{kCallKey, "c"}});
  Outcome outcome = call.Wait();
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  EXPECT_EQ(outcome.reply, "pick=direct-7");
}

TEST_P(CallInfoStyleTest, AttachedMetadataReachesTheBackendForACallThatWaited) {
  Attach(kPickKey, "queued-9");
  OneCall call(GetParam(), channel_, std::chrono::seconds(20), true, {{kCallKey, "c"}});
  WaitQueued(1);
  Deliver();
  Outcome outcome = call.Wait();
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  EXPECT_EQ(outcome.reply, "pick=queued-9") << "once, on the real call only";
}

TEST_P(CallInfoStyleTest, DoneCallbackGetsTrailersAndLoadReportOfACallPlacedAtOnce) {
  DeliverAndWaitReady();
  OneCall call(GetParam(), channel_, std::chrono::seconds(20), true,
               {{kCallKey, "c"}, {kWantKey, "report"}});
  Outcome outcome = call.Wait();
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ExpectTrailersAndLoadReport("c");
}

TEST_P(CallInfoStyleTest, DoneCallbackGetsTrailersAndLoadReportOfACallThatWaited) {
  OneCall call(GetParam(), channel_, std::chrono::seconds(20), true,
               {{kCallKey, "c"}, {kWantKey, "report"}});
  WaitQueued(1);
  Deliver();
  Outcome outcome = call.Wait();
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ExpectTrailersAndLoadReport("c");
}

INSTANTIATE_TEST_SUITE_P(EveryStyle, CallInfoStyleTest,
                         ::testing::Values(Style::kSyncUnary, Style::kAsyncUnary,
                                           Style::kCallbackUnary, Style::kSyncServerStreaming,
                                           Style::kSyncClientStreaming, Style::kSyncBidi,
                                           Style::kAsyncBidi, Style::kCallbackBidi,
                                           Style::kGenericCallbackUnary, Style::kGenericAsyncBidi),
                         [](const ::testing::TestParamInfo<Style>& info) {
                           return std::string(lbkit_test::Name(info.param));
                         });

// --- Load reports that do not parse. ---

// The call `call` ended OK, its malformed report trailer arrived, and its
// done-callback got no report from it.
void ExpectTheTrailerButNoReport(const std::string& call) {
  std::optional<SeenEnd> end = Rec().EndOf(call);
  ASSERT_TRUE(end.has_value());
  EXPECT_TRUE(end->status.ok()) << end->status.error_message();
  EXPECT_EQ(end->trailers.count(lbkit::kLbkitLoadReportTrailer), 1u) << "the trailer arrived";
  EXPECT_FALSE(end->load_report.has_value()) << "and gave no report";
}

TEST_F(CallInfoTest, AMalformedLoadReportGivesNoReportForACallPlacedAtOnce) {
  DeliverAndWaitReady();
  OneCall call(Style::kSyncUnary, channel_, std::chrono::seconds(20), true,
               {{kCallKey, "c"}, {kWantKey, "malformed"}});
  ASSERT_TRUE(call.Wait().status.ok());
  ExpectTheTrailerButNoReport("c");
}

TEST_F(CallInfoTest, AMalformedLoadReportGivesNoReportForACallThatWaited) {
  OneCall call(Style::kAsyncUnary, channel_, std::chrono::seconds(20), true,
               {{kCallKey, "c"}, {kWantKey, "malformed"}});
  WaitQueued(1);
  Deliver();
  ASSERT_TRUE(call.Wait().status.ok());
  ExpectTheTrailerButNoReport("c");
}

TEST_F(CallInfoTest, GrpcKeepsItsOrcaTrailerFromTheCallSoTheHelperSendsACopy) {
  DeliverAndWaitReady();
  OneCall call(Style::kSyncUnary, channel_, std::chrono::seconds(20), true,
               {{kCallKey, "c"}, {kWantKey, "report"}});
  ASSERT_TRUE(call.Wait().status.ok());
  std::optional<SeenEnd> end = Rec().EndOf("c");
  ASSERT_TRUE(end.has_value());
  // lbkit::AddLoadReportTrailer sent both; gRPC C++'s core took the first for
  // itself (load_report.h). Should a gRPC pass it through, this fails, and
  // the copy can go.
  EXPECT_EQ(end->trailers.count(lbkit::kLoadReportTrailer), 0u);
  EXPECT_EQ(end->trailers.count(lbkit::kLbkitLoadReportTrailer), 1u);
  EXPECT_TRUE(end->load_report.has_value());
}

// --- What the picker sees of a call. ---

// One sync UnaryEcho named `call`, with `deadline` (none if max()) and
// wait-for-ready as given.
grpc::Status CallWith(const std::shared_ptr<lbkit::Channel>& channel, const std::string& call,
                      system_clock::time_point deadline, bool wait_for_ready) {
  grpc::ClientContext context;
  if (deadline != system_clock::time_point::max()) context.set_deadline(deadline);
  context.set_wait_for_ready(wait_for_ready);
  context.AddMetadata(kCallKey, call);
  EchoResponse response;
  return Echo::NewStub(channel)->UnaryEcho(&context, EchoRequest(), &response);
}

// Every pick of `call` saw `deadline` (to the microsecond: gRPC keeps
// nanoseconds, system_clock may not) and `wait_for_ready`.
void ExpectPicksSaw(const std::string& call, system_clock::time_point deadline,
                    bool wait_for_ready) {
  std::vector<SeenPick> picks = Rec().PicksOf(call);
  ASSERT_FALSE(picks.empty()) << call;
  for (const SeenPick& pick : picks) {
    if (deadline == system_clock::time_point::max()) {
      EXPECT_EQ(pick.deadline, system_clock::time_point::max()) << call << ": no deadline";
    } else {
      auto off = std::chrono::duration_cast<std::chrono::microseconds>(pick.deadline - deadline);
      EXPECT_LE(std::abs(off.count()), 1) << call << ": deadline off by " << off.count() << " us";
    }
    EXPECT_EQ(pick.wait_for_ready, wait_for_ready) << call;
  }
}

TEST_F(CallInfoTest, PickerSeesTheDeadlineAndWaitForReadyOfACallPlacedAtOnce) {
  DeliverAndWaitReady();
  const system_clock::time_point deadline = system_clock::now() + std::chrono::seconds(30);
  ASSERT_TRUE(CallWith(channel_, "with", deadline, true).ok());
  ASSERT_TRUE(CallWith(channel_, "without", system_clock::time_point::max(), false).ok());
  ExpectPicksSaw("with", deadline, true);
  ExpectPicksSaw("without", system_clock::time_point::max(), false);
}

TEST_F(CallInfoTest, PickerSeesTheDeadlineAndWaitForReadyOfACallThatWaited) {
  const system_clock::time_point deadline = system_clock::now() + std::chrono::seconds(30);
  grpc::Status with;
  grpc::Status without;
  std::thread first([&] { with = CallWith(channel_, "with", deadline, true); });
  WaitQueued(1);
  // Fail-fast, yet it waits: no picker has failed it.
  std::thread second(
      [&] { without = CallWith(channel_, "without", system_clock::time_point::max(), false); });
  WaitQueued(2);
  Deliver();
  first.join();
  second.join();
  ASSERT_TRUE(with.ok()) << with.error_message();
  ASSERT_TRUE(without.ok()) << without.error_message();
  ExpectPicksSaw("with", deadline, true);
  ExpectPicksSaw("without", system_clock::time_point::max(), false);
}

// --- Metadata gRPC could not send. ---

TEST_F(CallInfoTest, AnInvalidAttachedKeyFailsACallPlacedAtOnceWithInternalNamingIt) {
  Attach("Bad Key", "v");
  DeliverAndWaitReady();
  grpc::Status status = CallWith(channel_, "c", system_clock::time_point::max(), true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(status.error_message().find("\"Bad Key\""), std::string::npos)
      << status.error_message();
  std::optional<SeenEnd> end = Rec().EndOf("c");
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->status.error_code(), grpc::StatusCode::INTERNAL) << "the done-callback hears it";
}

TEST_F(CallInfoTest, AnInvalidAttachedKeyFailsAWaitingCallWithInternalNamingIt) {
  Attach("x-value-with-newline", "a\nb");
  grpc::Status status;
  std::thread caller(
      [&] { status = CallWith(channel_, "c", system_clock::time_point::max(), true); });
  WaitQueued(1);
  Deliver();
  caller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL) << "even wait-for-ready";
  EXPECT_NE(status.error_message().find("\"x-value-with-newline\""), std::string::npos)
      << status.error_message();
  std::optional<SeenEnd> end = Rec().EndOf("c");
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->status.error_code(), grpc::StatusCode::INTERNAL) << "the done-callback hears it";
}

}  // namespace
