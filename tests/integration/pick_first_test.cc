// pick_first against real sockets: Happy Eyeballs, sticky TRANSIENT_FAILURE,
// re-resolution after a drop.
#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include "common/test_backend.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using lbkit_test::Echo;
using lbkit_test::TestBackend;
using lbkit_test::TraceRecorder;

TEST(PickFirst, HappyEyeballsStartsTheNextAddressWhileTheFirstIsStillTrying) {
  TraceRecorder trace;
  lbkit_test::BlackholeListener blackhole;  // never answers
  TestBackend backend;
  auto resolver = lbkit::ManualResolver::Create();
  resolver->SetInitialState({{lbkit::Endpoint{{blackhole.address(), backend.address()}}}, ""});
  auto channel = lbkit_test::ManualChannel(resolver);
  auto stub = Echo::NewStub(channel);

  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Echo(*stub, "m", std::chrono::seconds(15)), "m (from " + backend.address() + ")");
  auto elapsed = std::chrono::steady_clock::now() - start;

  // The first attempt was started first and had not failed when the second
  // address won: the second was started by the attempt delay, not by a failure.
  std::vector<std::string> lines = trace.Lines();
  auto find = [&lines](const std::string& a, const std::string& b) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].find(a) != std::string::npos && lines[i].find(b) != std::string::npos) return i;
    }
    return lines.size();
  };
  size_t first_connecting = find("subchannel " + blackhole.address(), "IDLE -> CONNECTING");
  // The listener contract delivers the latest state, not every one: a fast
  // connection may go IDLE -> READY with no CONNECTING traced between.
  size_t second_connecting = find("subchannel " + backend.address(), "IDLE -> ");
  ASSERT_LT(first_connecting, lines.size());
  ASSERT_LT(second_connecting, lines.size());
  EXPECT_LT(first_connecting, second_connecting);
  EXPECT_EQ(trace.Count({"subchannel " + blackhole.address(), "TRANSIENT_FAILURE"}), 0);
  // Far sooner than the first attempt's connect timeout (20 s): it did not
  // wait for the first attempt to give up.
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}

TEST(PickFirst, StaysInTransientFailureAcrossBackoffRounds) {
  TraceRecorder trace;
  // Every attempt fails, and is counted: the listener accepts and closes, and
  // the client speaks TLS, so no attempt can get past its handshake (over
  // plaintext, gRPC 1.51 may call such a connection READY for a moment).
  lbkit_test::ClosingListener failing;
  lbkit::ChannelOptions options;
  options.channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  options.channel_args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  options.channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  grpc::Status status;
  auto channel =
      lbkit::CreateChannel("static:///" + failing.address(),
                           grpc::SslCredentials(grpc::SslCredentialsOptions()), options, &status);
  ASSERT_TRUE(status.ok());
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
  const int attempts_at_failure = failing.accepted();

  // Several more backoff rounds fail...
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return failing.accepted() >= attempts_at_failure + 3; }));
  // ...and the channel never left TRANSIENT_FAILURE (no flapping to CONNECTING).
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_TRANSIENT_FAILURE);
  const std::string channel_line = failing.address() + ": channel ";
  EXPECT_EQ(trace.Count({channel_line, "-> TRANSIENT_FAILURE"}), 1);
  EXPECT_EQ(trace.Count({channel_line + "TRANSIENT_FAILURE ->"}), 0);
  EXPECT_EQ(trace.Count({"subchannel " + failing.address(), "TRANSIENT_FAILURE ->"}), 0);

  // Calls fail at once, naming the address and gRPC's connection error.
  std::string reply = Echo(*stub, "m");
  EXPECT_EQ(reply.rfind("error: 14: pick_first: failed to connect to all addresses (" +
                            failing.address() + "); last error: connection to " +
                            failing.address() + " failed: ",
                        0),
            0u)
      << reply;
}

TEST(PickFirst, ADroppedConnectionAsksTheResolverToResolveAgain) {
  TestBackend backend;
  auto resolver = lbkit::ManualResolver::Create();
  resolver->SetInitialState({{lbkit::Endpoint{{backend.address()}}}, ""});
  auto channel = lbkit_test::ManualChannel(resolver);
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"), "m (from " + backend.address() + ")");
  EXPECT_EQ(resolver->reresolution_requests(), 0);
  backend.Stop();
  EXPECT_TRUE(lbkit_test::WaitFor([&] { return resolver->reresolution_requests() >= 1; }));
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_IDLE) << "IDLE until a call needs it";
}

}  // namespace
