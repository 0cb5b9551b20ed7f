// lbkit's log lines go through gRPC's log facility (src/core/trace.h): a
// gpr_set_log_function sees them with their severity and the file and line
// of the lbkit code that logged, GRPC_VERBOSITY's filter applies, and an
// unknown LBKIT_TRACE category is warned about once.
#include <grpc/support/log.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "core/trace.h"

namespace {

using lbkit::internal::TraceFlag;

struct Logged {
  std::string file;
  int line;
  gpr_log_severity severity;
  std::string message;
};

std::mutex g_mu;
std::vector<Logged>* g_logged = nullptr;  // guarded by g_mu

void Capture(gpr_log_func_args* args) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_logged != nullptr) {
    g_logged->push_back({args->file, args->line, args->severity, args->message});
  }
}

// Installs Capture as gRPC's log function, with `verbosity`, for the life of
// the object; then back to gRPC's default function and verbosity (ERROR).
class CapturedLog {
 public:
  explicit CapturedLog(gpr_log_severity verbosity) {
    {
      std::lock_guard<std::mutex> lock(g_mu);
      g_logged = &logged_;
    }
    gpr_set_log_verbosity(verbosity);
    gpr_set_log_function(Capture);
  }
  ~CapturedLog() {
    gpr_set_log_function(nullptr);  // gRPC's default function
    gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
    std::lock_guard<std::mutex> lock(g_mu);
    g_logged = nullptr;
  }
  // Lines whose message contains `part` (gRPC's own lines are not lbkit's).
  std::vector<Logged> With(const std::string& part) const {
    std::lock_guard<std::mutex> lock(g_mu);
    std::vector<Logged> out;
    for (const Logged& l : logged_) {
      if (l.message.find(part) != std::string::npos) out.push_back(l);
    }
    return out;
  }

 private:
  std::vector<Logged> logged_;  // guarded by g_mu
};

// The one line of `lines` came from this file's `line`, as `message`, at
// `severity`.
void ExpectOneLineFromHere(const std::vector<Logged>& lines, const std::string& message,
                           gpr_log_severity severity, int line) {
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].message, message);
  EXPECT_EQ(lines[0].severity, severity);
  const std::string file = lines[0].file;
  const std::string here = "trace_test.cc";
  EXPECT_TRUE(file.size() >= here.size() &&
              file.compare(file.size() - here.size(), here.size(), here) == 0)
      << file;
  EXPECT_EQ(lines[0].line, line);
}

TEST(TraceLog, TraceLinesReachGprLogFunctionAsInfoWithCallerLocation) {
  CapturedLog log(GPR_LOG_SEVERITY_DEBUG);
  lbkit::internal::SetTraceForTesting(static_cast<unsigned>(TraceFlag::kPolicy),
                                      [](const std::string&) {});
  const int line = __LINE__ + 1;
  lbkit::internal::Trace(TraceFlag::kPolicy, "state ", 42);
  lbkit::internal::Trace(TraceFlag::kPick, "not enabled");
  lbkit::internal::SetTraceForTesting(0, nullptr);

  ExpectOneLineFromHere(log.With("lbkit "), "lbkit policy: state 42", GPR_LOG_SEVERITY_INFO, line);
}

TEST(TraceLog, LogLinesAreErrorsWithCallerLocation) {
  CapturedLog log(GPR_LOG_SEVERITY_ERROR);
  const int line = __LINE__ + 1;
  lbkit::internal::LogLine("service config rejected");

  ExpectOneLineFromHere(log.With("lbkit"), "lbkit: service config rejected", GPR_LOG_SEVERITY_ERROR,
                        line);
}

TEST(TraceLog, VerbosityFiltersTraceLines) {
  // GRPC_VERBOSITY=ERROR (gRPC's default): INFO trace lines are not logged,
  // though a test's sink still sees them.
  CapturedLog log(GPR_LOG_SEVERITY_ERROR);
  std::vector<std::string> sunk;
  std::mutex sunk_mu;
  lbkit::internal::SetTraceForTesting(static_cast<unsigned>(TraceFlag::kPick),
                                      [&](const std::string& l) {
                                        std::lock_guard<std::mutex> lock(sunk_mu);
                                        sunk.push_back(l);
                                      });
  lbkit::internal::Trace(TraceFlag::kPick, "hidden");
  lbkit::internal::SetTraceForTesting(0, nullptr);
  EXPECT_TRUE(log.With("lbkit pick").empty());
  EXPECT_EQ(sunk, std::vector<std::string>{"lbkit pick: hidden"});
}

TEST(TraceLog, UnknownCategoriesAreNamedInOneWarning) {
  CapturedLog log(GPR_LOG_SEVERITY_DEBUG);
  EXPECT_EQ(lbkit::internal::TraceFlagsFromEnvironment("pick,bogus,,polcy"),
            static_cast<unsigned>(TraceFlag::kPick));
  std::vector<Logged> lines = log.With("LBKIT_TRACE");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].severity, GPR_LOG_SEVERITY_ERROR);
  EXPECT_EQ(lines[0].message,
            "lbkit: LBKIT_TRACE names unknown categories \"bogus\", \"polcy\" (ignored); the "
            "known ones are resolver, policy, subchannel, pick, all");

  // Known names only, or no LBKIT_TRACE: no warning.
  EXPECT_EQ(
      lbkit::internal::TraceFlagsFromEnvironment("resolver,subchannel"),
      static_cast<unsigned>(TraceFlag::kResolver) | static_cast<unsigned>(TraceFlag::kSubchannel));
  EXPECT_EQ(lbkit::internal::TraceFlagsFromEnvironment(nullptr), 0u);
  EXPECT_EQ(log.With("LBKIT_TRACE").size(), 1u);
}

TEST(TraceLog, ParseTraceFlagsListsUnknownNames) {
  std::vector<std::string> unknown;
  EXPECT_EQ(lbkit::internal::ParseTraceFlags("all,nope", &unknown) &
                static_cast<unsigned>(TraceFlag::kSubchannel),
            static_cast<unsigned>(TraceFlag::kSubchannel));
  EXPECT_EQ(unknown, std::vector<std::string>{"nope"});
}

int CountingLogCalls = 0;
void CountUnknownCategoryWarnings(gpr_log_func_args* args) {
  if (std::string(args->message).find("unknown categor") != std::string::npos) ++CountingLogCalls;
}

// The process reads LBKIT_TRACE once: many trace points, one warning. Run in
// a fresh process (gtest's threadsafe death-test style re-executes the test
// binary), where nothing has read LBKIT_TRACE yet.
TEST(TraceLogDeathTest, UnknownCategoryWarnedOncePerProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("LBKIT_TRACE", "pick,bogus", 1);
        gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
        gpr_set_log_function(CountUnknownCategoryWarnings);
        bool pick = false;
        for (int i = 0; i < 5; ++i) {
          pick = lbkit::internal::TraceEnabled(TraceFlag::kPick);
          lbkit::internal::Trace(TraceFlag::kResolver, "off");
        }
        lbkit::internal::SetTraceForTesting(0, nullptr);  // restores LBKIT_TRACE's flags
        std::exit(pick && CountingLogCalls == 1 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
