// Service config parsing: gRPC's loadBalancingConfig rules and the
// example policy's chooseSecond validation.
#include <gtest/gtest.h>

#include "custom_round_robin.h"
#include "lbkit/registry.h"
#include "lbkit/service_config.h"

namespace {

class ServiceConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(customlb::RegisterCustomRoundRobin().ok()); }

  // Parses and returns the error message ("" when OK).
  std::string Error(const std::string& json) {
    lbkit::ServiceConfig config;
    grpc::Status status = lbkit::ParseServiceConfig(json, &config);
    return status.ok() ? "" : status.error_message();
  }
};

TEST_F(ServiceConfigTest, NoConfigMeansPickFirst) {
  lbkit::ServiceConfig config;
  ASSERT_TRUE(lbkit::ParseServiceConfig("", &config).ok());
  EXPECT_EQ(config.policy_name, "pick_first");
  ASSERT_TRUE(lbkit::ParseServiceConfig("{}", &config).ok());
  EXPECT_EQ(config.policy_name, "pick_first");
  EXPECT_NE(config.config, nullptr);
}

TEST_F(ServiceConfigTest, FirstRegisteredPolicyWinsAndUnknownNamesAreSkipped) {
  lbkit::ServiceConfig config;
  grpc::Status status = lbkit::ParseServiceConfig(
      R"({"loadBalancingConfig":[{"no_such_policy":{}},{"round_robin":{}},{"pick_first":{}}]})",
      &config);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(config.policy_name, "round_robin");
}

TEST_F(ServiceConfigTest, CustomRoundRobinConfigIsParsed) {
  lbkit::ServiceConfig config;
  ASSERT_TRUE(lbkit::ParseServiceConfig(
                  R"({"loadBalancingConfig":[{"custom_round_robin":{"chooseSecond":7}}]})", &config)
                  .ok());
  EXPECT_EQ(config.policy_name, "custom_round_robin");
  auto parsed = std::static_pointer_cast<const customlb::CustomRoundRobinConfig>(config.config);
  EXPECT_EQ(parsed->choose_second, 7u);

  ASSERT_TRUE(
      lbkit::ParseServiceConfig(R"({"loadBalancingConfig":[{"custom_round_robin":{}}]})", &config)
          .ok());
  parsed = std::static_pointer_cast<const customlb::CustomRoundRobinConfig>(config.config);
  EXPECT_EQ(parsed->choose_second, 3u) << "the default";

  ASSERT_TRUE(lbkit::ParseServiceConfig(
                  R"({"loadBalancingConfig":[{"custom_round_robin":{"chooseSecond":0}}]})", &config)
                  .ok());
  parsed = std::static_pointer_cast<const customlb::CustomRoundRobinConfig>(config.config);
  EXPECT_EQ(parsed->choose_second, 0u);
}

TEST_F(ServiceConfigTest, InvalidJsonIsAnErrorThatQuotesIt) {
  std::string error = Error(R"({"loadBalancingConfig":[)");
  EXPECT_NE(error.find("not valid JSON"), std::string::npos) << error;
  EXPECT_NE(Error("[]").find("must be a JSON object"), std::string::npos);
}

TEST_F(ServiceConfigTest, NoRegisteredPolicyIsAnErrorListingWhatWasSkipped) {
  std::string error = Error(R"({"loadBalancingConfig":[{"foo":{}},{"bar":{}}]})");
  EXPECT_NE(error.find("no registered policy"), std::string::npos) << error;
  EXPECT_NE(error.find("foo, bar"), std::string::npos) << error;
  EXPECT_NE(error.find("round_robin"), std::string::npos) << "lists the registered ones: " << error;
  EXPECT_NE(Error(R"({"loadBalancingConfig":[]})").find("no registered policy"), std::string::npos);
}

TEST_F(ServiceConfigTest, MalformedListsAreErrors) {
  EXPECT_NE(Error(R"({"loadBalancingConfig":{"round_robin":{}}})").find("must be a list"),
            std::string::npos);
  EXPECT_NE(Error(R"({"loadBalancingConfig":[{"round_robin":{},"pick_first":{}}]})")
                .find("exactly one key"),
            std::string::npos);
  EXPECT_NE(Error(R"({"loadBalancingConfig":["round_robin"]})").find("exactly one key"),
            std::string::npos);
  EXPECT_NE(Error(R"({"loadBalancingConfig":[{"round_robin":3}]})").find("must be an object"),
            std::string::npos);
}

TEST_F(ServiceConfigTest, BadChooseSecondValuesAreRejectedWithTheValue) {
  for (const char* bad : {"-1", "2.5", "\"3\"", "true", "null", "[3]", "4294967296"}) {
    std::string error =
        Error(std::string(R"({"loadBalancingConfig":[{"custom_round_robin":{"chooseSecond":)") +
              bad + "}}]}");
    EXPECT_NE(error.find("chooseSecond must be a whole number"), std::string::npos)
        << bad << " -> " << error;
    EXPECT_NE(error.find(bad), std::string::npos) << "names the value: " << error;
    EXPECT_NE(error.find("custom_round_robin"), std::string::npos) << "names the policy: " << error;
  }
}

TEST_F(ServiceConfigTest, ARejectedConfigDoesNotFallThroughToTheNextPolicy) {
  // gRPC: the first registered policy is chosen; if its config is bad, that is
  // the error (no silent fallback).
  EXPECT_NE(Error(R"({"loadBalancingConfig":[{"custom_round_robin":{"chooseSecond":-1}},)"
                  R"({"round_robin":{}}]})")
                .find("chooseSecond"),
            std::string::npos);
}

TEST_F(ServiceConfigTest, LegacyLoadBalancingPolicyStringIsAccepted) {
  lbkit::ServiceConfig config;
  ASSERT_TRUE(lbkit::ParseServiceConfig(R"({"loadBalancingPolicy":"ROUND_ROBIN"})", &config).ok());
  EXPECT_EQ(config.policy_name, "round_robin");
}

TEST_F(ServiceConfigTest, PickFirstValidatesShuffleAddressList) {
  EXPECT_EQ(Error(R"({"loadBalancingConfig":[{"pick_first":{"shuffleAddressList":true}}]})"), "");
  EXPECT_NE(Error(R"({"loadBalancingConfig":[{"pick_first":{"shuffleAddressList":"yes"}}]})")
                .find("shuffleAddressList must be true or false"),
            std::string::npos);
}

// A policy whose parser throws, as nlohmann's at() does on a missing key.
class ThrowingBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "throwing_parser"; }
  grpc::Status ParseConfig(const nlohmann::json& json,
                           std::shared_ptr<const lbkit::BalancerConfig>*) const override {
    (void)json.at("required").get<int>();  // throws when the key is missing
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper*) const override { return nullptr; }
};

TEST(ServiceConfigHardening, AParserThatThrowsIsAConfigErrorNotACrash) {
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<ThrowingBuilder>(), lbkit::OnDuplicate::kReplace)
          .ok());
  lbkit::ServiceConfig config;
  grpc::Status status =
      lbkit::ParseServiceConfig(R"({"loadBalancingConfig":[{"throwing_parser":{}}]})", &config);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message().rfind(
                "invalid service config: policy \"throwing_parser\": its config parser threw: ", 0),
            0u)
      << status.error_message();
}

TEST(ServiceConfigHardening, DeepNestingIsRefusedBeforeParsing) {
  lbkit::ServiceConfig config;
  std::string deep = std::string(80000, '[') + std::string(80000, ']');
  grpc::Status status = lbkit::ParseServiceConfig(deep, &config);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "invalid service config: nested deeper than 64 levels");
  // Brackets inside strings are text, not nesting.
  std::string brackets_in_a_string =
      R"({"healthCheckConfig":{"serviceName":")" + std::string(1000, '[') + R"("}})";
  EXPECT_TRUE(lbkit::ParseServiceConfig(brackets_in_a_string, &config).ok());
}

TEST(ServiceConfigHardening, ConfigsOverTheSizeLimitAreRefusedBeforeParsing) {
  lbkit::ServiceConfig config;
  // Exactly at the limit: parsed (a long health-check service name).
  const std::string head = R"({"healthCheckConfig":{"serviceName":")";
  const std::string tail = R"("}})";
  std::string at_limit =
      head + std::string(lbkit::kMaxServiceConfigBytes - head.size() - tail.size(), 's') + tail;
  ASSERT_EQ(at_limit.size(), lbkit::kMaxServiceConfigBytes);
  EXPECT_TRUE(lbkit::ParseServiceConfig(at_limit, &config).ok());
  // One byte over: refused, and the message says by how much.
  std::string over =
      head + std::string(at_limit.size() - head.size() - tail.size() + 1, 's') + tail;
  grpc::Status status = lbkit::ParseServiceConfig(over, &config);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "invalid service config: 4194305 bytes, over the limit of "
            "4194304 (kMaxServiceConfigBytes)");
}

TEST(ServiceConfigHardening, MessagesQuoteABoundedPrintableExcerpt) {
  lbkit::ServiceConfig config;
  std::string huge = "{" + std::string(100000, 'x');
  grpc::Status status = lbkit::ParseServiceConfig(huge, &config);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(status.error_message().size(), 400u);
  EXPECT_NE(status.error_message().find("(100001 bytes)"), std::string::npos);
  std::string with_nul("{\"a\":\0}", 7);
  status = lbkit::ParseServiceConfig(with_nul, &config);
  EXPECT_NE(status.error_message().find("\\x00}"), std::string::npos) << status.error_message();
}

}  // namespace
