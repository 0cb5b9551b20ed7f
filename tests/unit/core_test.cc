// Core pieces: target parsing, the static resolver's address list, the work
// serializer and the picker slot.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <future>
#include <thread>

#include "common/test_backend.h"
#include "common/thread_count.h"
#include "core/address.h"
#include "core/picker_slot.h"
#include "core/trace.h"
#include "core/work_serializer.h"
#include "lbkit/resolver.h"
#include "resolvers/static.h"

namespace {

TEST(ParseTarget, SplitsSchemeAuthorityAndEndpoint) {
  lbkit::Target target;
  ASSERT_TRUE(lbkit::ParseTarget("static:///a:1,b:2", &target).ok());
  EXPECT_EQ(target.scheme, "static");
  EXPECT_EQ(target.authority, "");
  EXPECT_EQ(target.endpoint, "a:1,b:2");
  ASSERT_TRUE(lbkit::ParseTarget("dns://8.8.8.8/example.com:443", &target).ok());
  EXPECT_EQ(target.authority, "8.8.8.8");
  EXPECT_EQ(target.endpoint, "example.com:443");
  ASSERT_TRUE(lbkit::ParseTarget("manual:", &target).ok());
  EXPECT_EQ(target.scheme, "manual");
}

TEST(ParseTarget, MalformedTargetsAreClearErrors) {
  lbkit::Target target;
  EXPECT_NE(lbkit::ParseTarget("no-scheme-here", &target).error_message().find("no scheme"),
            std::string::npos);
  EXPECT_NE(lbkit::ParseTarget(":///x", &target).error_message().find("start with a letter"),
            std::string::npos);
  EXPECT_NE(lbkit::ParseTarget("we ird:///x", &target).error_message().find("bad character"),
            std::string::npos);
}

TEST(StaticAddressList, AcceptsHostsIpv6AndUnixAndRejectsTheRest) {
  std::vector<lbkit::Endpoint> endpoints;
  ASSERT_TRUE(
      lbkit::internal::ParseEndpointList("localhost:50050, [::1]:1,unix:/tmp/s", &endpoints).ok());
  EXPECT_EQ(endpoints, (std::vector<lbkit::Endpoint>{lbkit::Endpoint{{"localhost:50050"}},
                                                     lbkit::Endpoint{{"[::1]:1"}},
                                                     lbkit::Endpoint{{"unix:/tmp/s"}}}));
  for (const char* bad :
       {"", "a:1,,b:2", "nohost", "host:", "host:x", "host:70000", ":80", "::1:80", "[::1:80",
        "[]:1", "[zzz]:1", "[::1%]:1", "/127.0.0.1:80", "ho st:80", "unix:", "unix-abstract:"}) {
    grpc::Status status = lbkit::internal::ParseEndpointList(bad, &endpoints);
    EXPECT_FALSE(status.ok()) << bad;
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
  }
}

TEST(CheckAddress, NamesTheAddressAndTheReason) {
  using lbkit::internal::CheckAddress;
  for (const char* good : {"localhost:1", "127.0.0.1:65535", "[::1]:80", "[fe80::1%eth0]:80",
                           "unix:/tmp/s", "unix:///tmp/s", "unix-abstract:lbkit", "a_b.c-d:9"}) {
    EXPECT_TRUE(CheckAddress(good).ok()) << good << ": " << CheckAddress(good).error_message();
  }
  EXPECT_EQ(CheckAddress("[zzz]:1").error_message(),
            "bad address \"[zzz]:1\": not an IPv6 address between the brackets");
  std::string long_path = "unix:/" + std::string(200, 'p');
  grpc::Status status = CheckAddress(long_path);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("longer than the system's limit of 107"), std::string::npos)
      << status.error_message();
  // A huge address is not copied whole into the message.
  std::string huge(100000, 'h');
  EXPECT_LT(CheckAddress(huge + ":1").error_message().size(), 400u);
}

TEST(SplitHostPort, SplitsAsGrpcDoes) {
  using lbkit::internal::HostPort;
  using lbkit::internal::SplitHostPort;
  struct Case {
    const char* text;
    const char* host;
    const char* port;
    bool has_port;
    bool bracketed;
  };
  for (const Case& c :
       {Case{"a.test:80", "a.test", "80", true, false}, Case{"a.test", "a.test", "", false, false},
        Case{"[::1]:80", "::1", "80", true, true}, Case{"[::1]", "::1", "", false, true},
        Case{"::1", "::1", "", false, false},  // unbracketed IPv6: no port
        Case{"[fe80::1%eth0]:5", "fe80::1%eth0", "5", true, true}}) {
    HostPort split;
    ASSERT_TRUE(SplitHostPort(c.text, &split).ok()) << c.text;
    EXPECT_EQ(split.host, c.host) << c.text;
    EXPECT_EQ(split.port, c.port) << c.text;
    EXPECT_EQ(split.has_port, c.has_port) << c.text;
    EXPECT_EQ(split.bracketed, c.bracketed) << c.text;
  }
  struct Bad {
    const char* text;
    const char* why;
  };
  for (const Bad& bad : {Bad{"[::1:80", "'[' without ']'"},
                         Bad{"[zzz]:1", "not an IPv6 address between the brackets"},
                         Bad{"[::1]x", "text after ']' that is not \":port\""},
                         Bad{":80", "empty host"}, Bad{"a.test:", "empty port after ':'"}}) {
    HostPort split;
    EXPECT_EQ(SplitHostPort(bad.text, &split).error_message(), bad.why) << bad.text;
  }
}

TEST(JoinHostPort, BracketsIpv6HostsOnly) {
  EXPECT_EQ(lbkit::internal::JoinHostPort("a.test", "443"), "a.test:443");
  EXPECT_EQ(lbkit::internal::JoinHostPort("10.0.0.1", "53"), "10.0.0.1:53");
  EXPECT_EQ(lbkit::internal::JoinHostPort("::1", "53"), "[::1]:53");
}

TEST(AddressIpFamily, TellsLiteralsFromNames) {
  using lbkit::internal::AddressIpFamily;
  EXPECT_EQ(AddressIpFamily("127.0.0.1:1"), AF_INET);
  EXPECT_EQ(AddressIpFamily("[::1]:1"), AF_INET6);
  EXPECT_EQ(AddressIpFamily("[fe80::1%eth0]:1"), AF_INET6);
  EXPECT_EQ(AddressIpFamily("localhost:1"), 0);
  EXPECT_EQ(AddressIpFamily("unix:/tmp/s"), 0);
  EXPECT_EQ(AddressIpFamily("[zzz]:1"), 0);
}

TEST(IsWildcardAddress, KnowsEverySpellingOfTheWildcard) {
  using lbkit::internal::IsWildcardAddress;
  for (const char* wildcard : {"0.0.0.0:1", "[::]:1", "[::0]:1", "[0:0:0:0:0:0:0:0]:1"}) {
    EXPECT_TRUE(IsWildcardAddress(wildcard)) << wildcard;
  }
  for (const char* host : {"127.0.0.1:1", "[::1]:1", "localhost:1", "unix:/tmp/s"}) {
    EXPECT_FALSE(IsWildcardAddress(host)) << host;
  }
}

TEST(WorkSerializer, RunsTasksInOrderOneAtATime) {
  lbkit::internal::WorkSerializer serializer;
  std::vector<int> order;
  std::atomic<int> running{0};
  std::atomic<bool> overlapped{false};
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        serializer.Run([&, t, i] {
          if (running.fetch_add(1) != 0) overlapped = true;
          if (t == 0) order.push_back(i);
          running.fetch_sub(1);
        });
      }
    });
  }
  for (auto& thread : posters) thread.join();
  std::promise<void> done;
  serializer.Run([&] { done.set_value(); });
  done.get_future().wait();
  EXPECT_FALSE(overlapped.load());
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(WorkSerializer, TimersFireInDeadlineOrderAndCancelledOnesNever) {
  lbkit::internal::WorkSerializer serializer;
  std::vector<int> fired;
  std::promise<void> done;
  serializer.RunAfter(std::chrono::milliseconds(30), [&] { fired.push_back(2); });
  uint64_t cancelled =
      serializer.RunAfter(std::chrono::milliseconds(10), [&] { fired.push_back(99); });
  serializer.RunAfter(std::chrono::milliseconds(5), [&] { fired.push_back(1); });
  serializer.Cancel(cancelled);
  serializer.RunAfter(std::chrono::milliseconds(40), [&] { done.set_value(); });
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(fired, (std::vector<int>{1, 2}));
}

// A delay beyond the steady clock's range (int64 nanoseconds, about 292
// years) is clamped to 100 years: unclamped, 10^10 s wrapped around to a
// deadline in the past and fired at once.
TEST(WorkSerializer, AHugeDelayIsClampedNotWrappedAround) {
  lbkit::internal::WorkSerializer serializer;
  std::atomic<int> fired{0};
  std::promise<void> done;
  serializer.RunAfter(std::chrono::seconds(10'000'000'000), [&] { fired.fetch_add(1); });
  serializer.RunAfter(std::chrono::milliseconds::max(), [&] { fired.fetch_add(1); });
  serializer.RunAfter(std::chrono::milliseconds(20), [&] { done.set_value(); });
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(fired.load(), 0) << "a timer for 10,000 years fired within 20 ms";
}

TEST(WorkSerializer, RefusesWorkAfterShutdown) {
  lbkit::internal::WorkSerializer serializer;
  serializer.Shutdown();
  EXPECT_FALSE(serializer.Run([] {}));
  EXPECT_EQ(serializer.RunAfter(std::chrono::milliseconds(1), [] {}), 0u);
}

// Serializers own no thread: however many exist, the process has the fixed
// pool of lbkit-control threads (issue 12).
TEST(WorkSerializer, ManySerializersShareTheFixedPool) {
  using lbkit::internal::WorkSerializer;
  std::vector<std::unique_ptr<WorkSerializer>> serializers;
  std::atomic<int> ran{0};
  for (int i = 0; i < 200; ++i) {
    serializers.push_back(std::make_unique<WorkSerializer>());
    serializers.back()->Run([&] { ran.fetch_add(1); });
  }
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return ran.load() == 200; }, std::chrono::seconds(10)));
  EXPECT_EQ(lbkit_test::CountThreadsNamed("lbkit-control"), lbkit::internal::ControlPoolSize());
  EXPECT_GE(lbkit::internal::ControlPoolSize(), 2u);
}

// One more serializer than the pool has threads, each always re-posting a
// task: every pool thread always has a serializer to run. Stops on
// destruction.
class BusySerializers {
 public:
  BusySerializers() {
    for (size_t i = 0; i < lbkit::internal::ControlPoolSize() + 1; ++i) {
      busy_.push_back(std::make_unique<lbkit::internal::WorkSerializer>());
      Spin(busy_.back().get());
    }
  }
  ~BusySerializers() {
    stop_ = true;
    for (auto& s : busy_) s->Shutdown();
  }

 private:
  void Spin(lbkit::internal::WorkSerializer* s) {
    if (!stop_.load()) s->Run([this, s] { Spin(s); });
  }
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<lbkit::internal::WorkSerializer>> busy_;
};

// A serializer that always has work gives its pool thread up after a batch:
// with one more such serializer than there are pool threads, another
// serializer's task still runs.
TEST(WorkSerializer, BusySerializersDoNotStarveOthers) {
  BusySerializers busy;
  lbkit::internal::WorkSerializer other;
  std::promise<void> ran;
  other.Run([&] { ran.set_value(); });
  EXPECT_EQ(ran.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

// RunAndWait from a pool thread, while every other pool thread waits too,
// completes: a waiter runs an idle serializer's work itself.
TEST(WorkSerializer, RunAndWaitOnEveryPoolThreadAtOnceDoesNotDeadlock) {
  using lbkit::internal::WorkSerializer;
  const size_t n = lbkit::internal::ControlPoolSize();
  std::vector<std::unique_ptr<WorkSerializer>> outer, inner;
  std::atomic<size_t> arrived{0};
  std::atomic<size_t> finished{0};
  for (size_t i = 0; i < n; ++i) {
    outer.push_back(std::make_unique<WorkSerializer>());
    inner.push_back(std::make_unique<WorkSerializer>());
  }
  for (size_t i = 0; i < n; ++i) {
    WorkSerializer* in = inner[i].get();
    outer[i]->Run([&, in] {
      // Hold this pool thread until every pool thread holds one.
      arrived.fetch_add(1);
      lbkit_test::WaitFor([&] { return arrived.load() == n; }, std::chrono::seconds(10));
      bool on_inner = false;
      EXPECT_TRUE(in->RunAndWait([&] { on_inner = in->IsCurrent(); }));
      EXPECT_TRUE(on_inner);
      finished.fetch_add(1);
    });
  }
  EXPECT_TRUE(lbkit_test::WaitFor([&] { return finished.load() == n; }, std::chrono::seconds(10)));
  EXPECT_EQ(arrived.load(), n);
}

// Timers fire even while every pool thread always has a serializer to run
// (each turn checks the timers first).
TEST(WorkSerializer, TimersFireWhileEveryPoolThreadIsBusy) {
  BusySerializers busy;
  lbkit::internal::WorkSerializer timed;
  std::promise<void> fired;
  timed.RunAfter(std::chrono::milliseconds(10), [&] { fired.set_value(); });
  EXPECT_EQ(fired.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

// A task of A waits for B, whose task waits for A again: A is current on
// that thread (further up its stack), so the inner wait runs at once rather
// than waiting for itself.
TEST(WorkSerializer, NestedRunAndWaitBackIntoTheOuterSerializerDoesNotHang) {
  lbkit::internal::WorkSerializer a, b;
  std::atomic<bool> ran{false};
  std::promise<void> done;
  a.Run([&] {
    b.RunAndWait([&] {
      EXPECT_TRUE(a.IsCurrent());
      a.RunAndWait([&] { ran = true; });
    });
    done.set_value();
  });
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(ran.load());
}

// An application's thread (or gRPC's) that waits for a serializer never
// runs its tasks itself: policy code stays on lbkit's control threads.
TEST(WorkSerializer, RunAndWaitFromOutsideThePoolRunsOnThePool) {
  lbkit::internal::WorkSerializer serializer;
  std::thread::id ran_on;
  ASSERT_TRUE(serializer.RunAndWait([&] { ran_on = std::this_thread::get_id(); }));
  EXPECT_NE(ran_on, std::this_thread::get_id());
  EXPECT_NE(ran_on, std::thread::id());
}

// Shutdown from another thread runs what was queued before it, returns
// only when none of it runs any more, and refuses what comes after.
TEST(WorkSerializer, ShutdownRunsWhatWasQueuedAndWaitsForIt) {
  lbkit::internal::WorkSerializer serializer;
  std::atomic<bool> release{false};
  std::atomic<bool> started{false};
  std::atomic<int> ran{0};
  serializer.Run([&] {
    started = true;
    lbkit_test::WaitFor([&] { return release.load(); }, std::chrono::seconds(10));
    ran.fetch_add(1);
  });
  for (int i = 0; i < 10; ++i) serializer.Run([&] { ran.fetch_add(1); });
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return started.load(); }, std::chrono::seconds(10)));
  std::thread releaser([&] {
    // Releases the running task only once Shutdown has begun (the serializer
    // refuses work), so Shutdown has to wait for it and for the 10 behind it.
    lbkit_test::WaitFor([&] { return !serializer.Run([] {}); }, std::chrono::seconds(10));
    release = true;
  });
  serializer.Shutdown();
  releaser.join();
  EXPECT_EQ(ran.load(), 11);
  EXPECT_FALSE(serializer.Run([&] { ran.fetch_add(1); }));
  EXPECT_FALSE(serializer.RunAndWait([&] { ran.fetch_add(1); }));
  EXPECT_EQ(ran.load(), 11);
}

// A timer cancelled on its serializer after it came due, but before its
// task ran, does not run.
TEST(WorkSerializer, CancelOnTheSerializerWinsOverADueTimer) {
  lbkit::internal::WorkSerializer serializer;
  std::atomic<bool> fired{false};
  std::promise<void> done;
  uint64_t id = 0;
  serializer.Run([&] {
    id = serializer.RunAfter(std::chrono::milliseconds(1), [&] { fired = true; });
    // Stay on the serializer until the timer is due and queued behind us.
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
    lbkit_test::WaitFor([&] { return std::chrono::steady_clock::now() >= until; },
                        std::chrono::seconds(1));
    serializer.Cancel(id);
  });
  serializer.RunAfter(std::chrono::milliseconds(100), [&] { done.set_value(); });
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_FALSE(fired.load());
}

// A picker that records whether it was used after being destroyed.
class CheckedPicker final : public lbkit::Picker {
 public:
  explicit CheckedPicker(std::atomic<int>* destroyed) : destroyed_(destroyed) {}
  ~CheckedPicker() override {
    alive_ = false;
    destroyed_->fetch_add(1);
  }
  lbkit::PickResult Pick(const lbkit::PickArgs&) const override {
    return alive_ ? lbkit::PickResult::Queue()
                  : lbkit::PickResult::Fail(grpc::Status(grpc::StatusCode::INTERNAL, "dead"));
  }

 private:
  std::atomic<bool> alive_{true};
  std::atomic<int>* destroyed_;
};

TEST(PickerSlot, ReadersNeverSeeAFreedPickerWhileTheWriterSwapsThem) {
  std::atomic<int> destroyed{0};
  lbkit::internal::PickerSlot slot(std::make_shared<CheckedPicker>(&destroyed));
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0}, reads{0};
  std::vector<std::thread> readers;
  lbkit::PickArgs args;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!stop) {
        auto picker = slot.Read();
        if (picker->Pick(args).kind() != lbkit::PickResult::Kind::kQueue) bad++;
        reads++;
      }
    });
  }
  // Swap while the readers are demonstrably reading.
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return reads.load() > 100; }));
  long reads_before = reads.load();
  int published = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((published < 2000 || reads.load() < reads_before + 2000) &&
         std::chrono::steady_clock::now() < deadline) {
    slot.Publish(std::make_shared<CheckedPicker>(&destroyed)).reset();
    ++published;
  }
  long reads_during = reads.load() - reads_before;
  stop = true;
  for (auto& thread : readers) thread.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(destroyed.load(), published) << "every replaced picker was released";
  EXPECT_GE(reads_during, 2000) << "readers ran while pickers were swapped";
}

TEST(Trace, ParsesFlagLists) {
  using lbkit::internal::ParseTraceFlags;
  using lbkit::internal::TraceFlag;
  EXPECT_EQ(ParseTraceFlags(""), 0u);
  EXPECT_EQ(ParseTraceFlags("pick"), static_cast<unsigned>(TraceFlag::kPick));
  EXPECT_EQ(ParseTraceFlags("resolver,policy"), static_cast<unsigned>(TraceFlag::kResolver) |
                                                    static_cast<unsigned>(TraceFlag::kPolicy));
  EXPECT_EQ(ParseTraceFlags("all") & static_cast<unsigned>(TraceFlag::kSubchannel),
            static_cast<unsigned>(TraceFlag::kSubchannel));
  EXPECT_EQ(ParseTraceFlags("bogus"), 0u);
}

}  // namespace
