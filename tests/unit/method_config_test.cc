// methodConfig and retryThrottling parsing: gRPC's matching rules, gRPC's
// validation (gRFC A2, A6) with errors naming the problem, warnings for what
// lbkit does not honour, and the service config handed to subchannels.
#include <gtest/gtest.h>
#include <climits>

#include <chrono>
#include <string>

#include <grpcpp/client_context.h>
#include <nlohmann/json.hpp>

#include "core/method_config.h"
#include "lbkit/service_config.h"

namespace {

using lbkit::internal::MethodConfigTable;
using lbkit::internal::MethodSettings;

std::string Wrap(const std::string& method_configs) {
  return R"({"methodConfig":[)" + method_configs + "]}";
}

// The error message of parsing `json` ("" when OK).
std::string Error(const std::string& json) {
  lbkit::ServiceConfig config;
  grpc::Status status = lbkit::ParseServiceConfig(json, &config);
  return status.ok() ? "" : status.error_message();
}

lbkit::ServiceConfig Parsed(const std::string& json) {
  lbkit::ServiceConfig config;
  grpc::Status status = lbkit::ParseServiceConfig(json, &config);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return config;
}

std::chrono::milliseconds TimeoutOf(const MethodConfigTable& table, const std::string& path) {
  const MethodSettings* found = table.Find(path);
  if (found == nullptr || !found->has_timeout) return std::chrono::milliseconds(-1);
  return std::chrono::duration_cast<std::chrono::milliseconds>(found->timeout);
}

TEST(MethodConfig, NoMethodConfigMeansNoTable) {
  EXPECT_EQ(Parsed("").method_config, nullptr);
  EXPECT_EQ(Parsed(R"({"loadBalancingPolicy":"round_robin"})").method_config, nullptr);
}

TEST(MethodConfig, ExactNameThenServiceThenDefault) {
  lbkit::ServiceConfig config = Parsed(Wrap(R"(
      {"name":[{}],"timeout":"1s"},
      {"name":[{"service":"a.S"}],"timeout":"2s"},
      {"name":[{"service":"a.S","method":"M"},{"service":"b.T","method":"N"}],"timeout":"3s"})"));
  ASSERT_NE(config.method_config, nullptr);
  const MethodConfigTable& table = *config.method_config;
  EXPECT_EQ(TimeoutOf(table, "/a.S/M").count(), 3000);
  EXPECT_EQ(TimeoutOf(table, "/b.T/N").count(), 3000);
  EXPECT_EQ(TimeoutOf(table, "/a.S/Other").count(), 2000);
  EXPECT_EQ(TimeoutOf(table, "/b.T/Other").count(), 1000);
  EXPECT_EQ(TimeoutOf(table, "/c.U/M").count(), 1000);
  EXPECT_TRUE(table.has_call_settings());
}

TEST(MethodConfig, WithoutADefaultEntryOtherServicesMatchNothing) {
  lbkit::ServiceConfig config =
      Parsed(Wrap(R"({"name":[{"service":"a.S","method":""}],"waitForReady":true})"));
  ASSERT_NE(config.method_config, nullptr);
  ASSERT_NE(config.method_config->Find("/a.S/M"), nullptr);
  EXPECT_EQ(config.method_config->Find("/a.S/M")->wait_for_ready, 1);
  EXPECT_EQ(config.method_config->Find("/b.T/M"), nullptr);
  // A name with an empty service is the default, whatever it is spelled as.
  config = Parsed(Wrap(R"({"name":[{"service":null}],"waitForReady":false})"));
  ASSERT_NE(config.method_config->Find("/b.T/M"), nullptr);
  EXPECT_EQ(config.method_config->Find("/b.T/M")->wait_for_ready, 0);
}

TEST(MethodConfig, InvalidEntriesAreRejectedNamingTheProblem) {
  EXPECT_NE(Error(R"({"methodConfig":{}})").find("methodConfig: must be a list"),
            std::string::npos);
  EXPECT_NE(Error(Wrap(R"({"name":[{"method":"M"}]})"))
                .find("methodConfig[0].name[0]: method "
                      "\"M\" is given without a service"),
            std::string::npos);
  std::string duplicate = Error(Wrap(R"({"name":[{"service":"a.S"}]},
                                         {"name":[{"service":"a.S"}]})"));
  EXPECT_NE(duplicate.find("methodConfig[1].name[0]: duplicate name: service \"a.S\" is also "
                           "named by methodConfig[0].name[0]"),
            std::string::npos)
      << duplicate;
  EXPECT_NE(Error(Wrap(R"({"name":[{}]},{"name":[{"service":""}]})")).find("duplicate name"),
            std::string::npos);
  EXPECT_NE(Error(Wrap(R"({"name":[{"service":"a.S"}],"timeout":"5"})"))
                .find("methodConfig[0]: timeout must be a duration string"),
            std::string::npos);
  EXPECT_NE(Error(Wrap(R"({"name":[{"service":"a.S"}],"waitForReady":"yes"})"))
                .find("waitForReady must be true or false"),
            std::string::npos);
  EXPECT_NE(Error(Wrap(R"({"name":[{"service":"a.S"}],"maxRequestMessageBytes":-1})"))
                .find("maxRequestMessageBytes must be a whole number of bytes"),
            std::string::npos);
  EXPECT_NE(Error(Wrap(R"({"name":[{"service":7}]})")).find("service must be a string"),
            std::string::npos);
  EXPECT_NE(Error(Wrap(R"({"name":{"service":"a.S"}})")).find("name must be a list"),
            std::string::npos);
}

// A retryPolicy with `field` replaced by `value` (removed when value is "").
std::string RetryWith(const std::string& field, const std::string& value) {
  nlohmann::json policy = {{"maxAttempts", 3},
                           {"initialBackoff", "0.1s"},
                           {"maxBackoff", "1s"},
                           {"backoffMultiplier", 2},
                           {"retryableStatusCodes", {"UNAVAILABLE"}}};
  if (value.empty()) {
    policy.erase(field);
  } else {
    policy[field] = nlohmann::json::parse(value);
  }
  nlohmann::json entry = {{"name", {{{"service", "a.S"}}}}, {"retryPolicy", policy}};
  return Wrap(entry.dump());
}

TEST(MethodConfig, RetryPolicyFollowsA6) {
  EXPECT_EQ(Error(RetryWith("maxAttempts", "3")), "");
  EXPECT_NE(Error(RetryWith("maxAttempts", "1")).find("maxAttempts must be at least 2, got 1"),
            std::string::npos);
  EXPECT_NE(Error(RetryWith("maxAttempts", ""))
                .find("methodConfig[0].retryPolicy: maxAttempts "
                      "is required"),
            std::string::npos);
  EXPECT_NE(Error(RetryWith("initialBackoff", R"("0s")"))
                .find("initialBackoff must be greater "
                      "than 0"),
            std::string::npos);
  EXPECT_NE(Error(RetryWith("maxBackoff", R"("fast")")).find("maxBackoff must be a duration"),
            std::string::npos);
  EXPECT_NE(Error(RetryWith("backoffMultiplier", "0"))
                .find("backoffMultiplier must be a number "
                      "greater than 0"),
            std::string::npos);
  EXPECT_NE(Error(RetryWith("retryableStatusCodes", "[]"))
                .find("retryableStatusCodes must be a "
                      "non-empty list"),
            std::string::npos);
  EXPECT_NE(Error(RetryWith("retryableStatusCodes", R"(["NOT_A_CODE"])"))
                .find("\"NOT_A_CODE\" is not a status code name"),
            std::string::npos);
  EXPECT_NE(Error(R"({"retryThrottling":{"maxTokens":0,"tokenRatio":0.1}})")
                .find("retryThrottling: maxTokens must be a whole number greater than 0"),
            std::string::npos);
  EXPECT_NE(Error(R"({"retryThrottling":{"maxTokens":10}})").find("tokenRatio is required"),
            std::string::npos);
}

TEST(MethodConfig, TheGrpcSidePartGoesToSubchannelsInGrpcsOwnForm) {
  // Codes as numbers become names; more than 5 attempts are 5; every named
  // entry is passed, so that matching in gRPC's channel is lbkit's.
  lbkit::ServiceConfig config = Parsed(R"({"methodConfig":[
      {"name":[{"service":"a.S","method":"M"}],"timeout":"1s"},
      {"name":[{"service":"a.S"}],"maxResponseMessageBytes":"1024",
       "retryPolicy":{"maxAttempts":9,"initialBackoff":"0.1s","maxBackoff":"2s",
                      "backoffMultiplier":1.5,"retryableStatusCodes":[14,"ABORTED"]}}],
      "retryThrottling":{"maxTokens":10,"tokenRatio":0.5}})");
  ASSERT_NE(config.method_config, nullptr);
  nlohmann::json grpc_side =
      nlohmann::json::parse(config.method_config->subchannel_service_config());
  nlohmann::json expected = nlohmann::json::parse(R"({"methodConfig":[
      {"name":[{"service":"a.S","method":"M"}]},
      {"name":[{"service":"a.S"}],"maxResponseMessageBytes":1024,
       "retryPolicy":{"maxAttempts":5,"initialBackoff":"0.100000000s","maxBackoff":"2.000000000s",
                      "backoffMultiplier":1.5,"retryableStatusCodes":["UNAVAILABLE","ABORTED"]}}],
      "retryThrottling":{"maxTokens":10,"tokenRatio":0.5}})");
  EXPECT_EQ(grpc_side, expected) << grpc_side.dump();
  // Timeouts alone are lbkit's: nothing for the subchannels.
  config = Parsed(Wrap(R"({"name":[{"service":"a.S"}],"timeout":"1s"})"));
  EXPECT_EQ(config.method_config->subchannel_service_config(), "");
}

TEST(MethodConfig, HedgingAndUnknownFieldsAreWarningsNotErrors) {
  lbkit::ServiceConfig config = Parsed(Wrap(R"({"name":[{"service":"a.S"}],
      "hedgingPolicy":{"maxAttempts":2},"shinyField":true,
      "retryPolicy":{"maxAttempts":2,"initialBackoff":"1s","maxBackoff":"1s",
                     "backoffMultiplier":1,"retryableStatusCodes":["UNAVAILABLE"],
                     "perAttemptRecvTimeout":"1s"}},
      {"timeout":"1s"})"));
  ASSERT_EQ(config.warnings.size(), 4u);
  EXPECT_EQ(config.warnings[0],
            "methodConfig[0]: hedgingPolicy is not supported (gRPC C++'s core, which lbkit's "
            "subchannels use, does not implement hedging); calls are not hedged");
  EXPECT_EQ(config.warnings[1],
            "methodConfig[0].retryPolicy: field \"perAttemptRecvTimeout\" is "
            "not supported and is ignored");
  EXPECT_EQ(config.warnings[2],
            "methodConfig[0]: field \"shinyField\" is not supported and is ignored");
  EXPECT_EQ(config.warnings[3], "methodConfig[1] has no name and applies to no method");
}

TEST(MethodConfig, UnknownTopLevelFieldsAreWarningsToo) {
  // A retryPolicy misplaced at the top level is not silently dropped.
  lbkit::ServiceConfig config =
      Parsed(R"({"loadBalancingPolicy":"pick_first","retryPolicy":{"maxAttempts":3}})");
  ASSERT_EQ(config.warnings.size(), 1u);
  EXPECT_EQ(config.warnings[0], "field \"retryPolicy\" is not supported and is ignored");
}

TEST(MethodConfig, AZeroTimeoutIsNoTimeoutAsInGrpc) {
  lbkit::ServiceConfig config = Parsed(Wrap(R"({"name":[{"service":"a.S"}],"timeout":"0s"})"));
  lbkit::internal::MethodConfigSlot slot(config.method_config);
  grpc::ClientContext context;
  lbkit::internal::ApplyMethodConfig(slot, "/a.S/M", &context, /*wait_for_ready_explicit=*/false);
  EXPECT_EQ(context.deadline(), std::chrono::system_clock::time_point::max());
}

TEST(MethodConfig, ValuesGrpcCouldNotReadAreRefusedOrBounded) {
  // gRPC keeps 3 decimal places of tokenRatio and refuses 0.
  EXPECT_NE(Error(R"({"retryThrottling":{"maxTokens":10,"tokenRatio":0.0005}})")
                .find("tokenRatio must be a number of at least 0.001"),
            std::string::npos);
  // A ratio gRPC would read in exponent form is capped; a size beyond int64
  // is a size, not a negative number.
  lbkit::ServiceConfig config = Parsed(R"({"methodConfig":[{"name":[{"service":"a.S"}],
      "maxRequestMessageBytes":18446744073709551615}],
      "retryThrottling":{"maxTokens":10,"tokenRatio":1e21}})");
  ASSERT_NE(config.method_config, nullptr);
  nlohmann::json grpc_side =
      nlohmann::json::parse(config.method_config->subchannel_service_config());
  EXPECT_EQ(grpc_side["retryThrottling"]["tokenRatio"], 1000000.0) << grpc_side.dump();
  EXPECT_EQ(grpc_side["methodConfig"][0]["maxRequestMessageBytes"], INT32_MAX) << grpc_side.dump();
  EXPECT_EQ(grpc_side["retryThrottling"]["tokenRatio"].dump().find('e'), std::string::npos)
      << grpc_side.dump();
}

TEST(MethodConfig, ApplyShortensOnlyLaterDeadlines) {
  lbkit::ServiceConfig config =
      Parsed(Wrap(R"({"name":[{"service":"a.S"}],"timeout":"10s","waitForReady":true})"));
  lbkit::internal::MethodConfigSlot slot(config.method_config);
  auto now = std::chrono::system_clock::now();

  grpc::ClientContext none;  // no deadline: now + 10 s
  lbkit::internal::ApplyMethodConfig(slot, "/a.S/M", &none, /*wait_for_ready_explicit=*/false);
  EXPECT_LE(none.deadline(), std::chrono::system_clock::now() + std::chrono::seconds(10));
  EXPECT_GT(none.deadline(), now + std::chrono::seconds(9));

  grpc::ClientContext earlier;
  earlier.set_deadline(now + std::chrono::seconds(1));
  lbkit::internal::ApplyMethodConfig(slot, "/a.S/M", &earlier, /*wait_for_ready_explicit=*/false);
  EXPECT_LE(earlier.deadline(), now + std::chrono::seconds(1));

  grpc::ClientContext other;  // another service: untouched
  lbkit::internal::ApplyMethodConfig(slot, "/b.T/M", &other, /*wait_for_ready_explicit=*/false);
  EXPECT_EQ(other.deadline(), std::chrono::system_clock::time_point::max());
}

}  // namespace
