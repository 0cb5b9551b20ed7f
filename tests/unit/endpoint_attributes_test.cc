// Endpoint attributes: parsing "key=value;..." text, the static target syntax
// that carries it, and the channel's handling of attributes from a resolver.
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "common/test_backend.h"
#include "core/endpoint_attributes.h"
#include "lbkit/channel.h"
#include "lbkit/registry.h"
#include "resolvers/static.h"

namespace {

using lbkit::EndpointAttributes;
using lbkit::internal::ParseEndpointAttributes;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---- ParseEndpointAttributes ----

TEST(ParseEndpointAttributes, ReadsWeightHashKeyAndFreeFormValues) {
  EndpointAttributes attributes;
  ASSERT_TRUE(ParseEndpointAttributes("weight=3;hash_key=a;zone=eu;rack=r-1/2", &attributes).ok());
  EXPECT_EQ(attributes.weight, 3u);
  EXPECT_EQ(attributes.hash_key, "a");
  EXPECT_EQ(attributes.values,
            (std::map<std::string, std::string>{{"zone", "eu"}, {"rack", "r-1/2"}}));
}

TEST(ParseEndpointAttributes, EmptyTextIsTheDefaults) {
  EndpointAttributes attributes;
  attributes.weight = 7;
  attributes.hash_key = "old";
  ASSERT_TRUE(ParseEndpointAttributes("", &attributes).ok());
  EXPECT_EQ(attributes, EndpointAttributes());
  EXPECT_EQ(attributes.weight, 1u);
}

TEST(ParseEndpointAttributes, WeightCoversOneToUint32Max) {
  EndpointAttributes attributes;
  ASSERT_TRUE(ParseEndpointAttributes("weight=1", &attributes).ok());
  EXPECT_EQ(attributes.weight, 1u);
  ASSERT_TRUE(ParseEndpointAttributes("weight=4294967295", &attributes).ok());
  EXPECT_EQ(attributes.weight, 4294967295u);
}

TEST(ParseEndpointAttributes, BadWeightsAreRejectedNamingTheRange) {
  for (const char* bad : {"weight=0", "weight=-1", "weight=+1", "weight= 1", "weight=1 ",
                          "weight=0x10", "weight=010", "weight=1.5", "weight=1e3",
                          "weight=4294967296", "weight=99999999999", "weight=abc", "weight="}) {
    EndpointAttributes attributes;
    grpc::Status status = ParseEndpointAttributes(bad, &attributes);
    ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_EQ(attributes, EndpointAttributes()) << "left unchanged: " << bad;
  }
  EndpointAttributes attributes;
  grpc::Status status = ParseEndpointAttributes("weight=0", &attributes);
  EXPECT_TRUE(
      Contains(status.error_message(), "weight must be a whole number from 1 to 4294967295"))
      << status.error_message();
}

TEST(ParseEndpointAttributes, MalformedTextIsInvalidArgumentNamingTheProblem) {
  struct Case {
    std::string text;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"=eu", "empty key"},
      {"zone", "no '='"},
      {"zone=", "empty value"},
      {"zone=eu;zone=us", "\"zone\" given twice"},
      {"weight=2;weight=2", "weight given twice"},
      {"hash_key=a;hash_key=b", "hash_key given twice"},
      {"zone=eu;", "empty attribute"},
      {";zone=eu", "empty attribute"},
      {"zone=eu;;rack=1", "empty attribute"},
      {"zone=e=u", "the value has '='"},
      {"zo ne=eu", "the key has a space"},
      {"zone=e u", "the value has a space"},
      {"zone=e\tu", "the value has the byte \\x09"},
      {"zone=eu\n", "the value has the byte \\x0a"},
      {std::string("zone=e\0u", 8), "the value has the byte \\x00"},
      {"zone=e\x7fu", "the value has the byte \\x7f"},
      {"zone=e,u", "the value has ','"},
  };
  for (const Case& c : cases) {
    EndpointAttributes attributes;
    grpc::Status status = ParseEndpointAttributes(c.text, &attributes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.text;
    EXPECT_TRUE(Contains(status.error_message(), c.reason))
        << c.text << " -> " << status.error_message();
    EXPECT_TRUE(Contains(status.error_message(), "endpoint attribute")) << status.error_message();
  }
}

TEST(ParseEndpointAttributes, ErrorsQuoteTheInputWithoutLosingTextAtANulByte) {
  EndpointAttributes attributes;
  grpc::Status status = ParseEndpointAttributes(std::string("zone=a\0b", 8), &attributes);
  EXPECT_TRUE(Contains(status.error_message(), "\"zone=a\\x00b\"")) << status.error_message();
  EXPECT_EQ(status.error_message().find('\0'), std::string::npos);
  EXPECT_TRUE(Contains(status.error_message(), "which it cannot hold")) << "the reason follows";
}

TEST(ParseEndpointAttributes, OverlongInputIsRejectedWithABoundedMessage) {
  EndpointAttributes attributes;
  std::string ok = "zone=" + std::string(lbkit::internal::kMaxEndpointAttributesText - 5, 'z');
  EXPECT_TRUE(ParseEndpointAttributes(ok, &attributes).ok()) << "exactly the limit is fine";
  std::string huge = "zone=" + std::string(1 << 20, 'z');
  grpc::Status status = ParseEndpointAttributes(huge, &attributes);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(status.error_message(), "longer than 4096 bytes")) << status.error_message();
  EXPECT_LT(status.error_message().size(), 300u);
  // A long bad value is quoted truncated too.
  status = ParseEndpointAttributes("zone=" + std::string(3000, 'z') + " ", &attributes);
  EXPECT_TRUE(Contains(status.error_message(), "bytes)")) << status.error_message();
  EXPECT_LT(status.error_message().size(), 300u);
}

// ---- the static target syntax ----

TEST(StaticTarget, ParsesAttributesAfterEachAddress) {
  std::vector<lbkit::Endpoint> endpoints;
  ASSERT_TRUE(lbkit::internal::ParseEndpointList(
                  "10.0.0.1:50051;weight=3;hash_key=a;zone=eu, 10.0.0.2:50051", &endpoints)
                  .ok());
  ASSERT_EQ(endpoints.size(), 2u);
  EXPECT_EQ(endpoints[0].addresses, (std::vector<std::string>{"10.0.0.1:50051"}));
  EXPECT_EQ(endpoints[0].attributes.weight, 3u);
  EXPECT_EQ(endpoints[0].attributes.hash_key, "a");
  EXPECT_EQ(endpoints[0].attributes.values.at("zone"), "eu");
  EXPECT_EQ(endpoints[1], lbkit::Endpoint{{"10.0.0.2:50051"}}) << "no attributes: the defaults";
}

TEST(StaticTarget, MalformedAttributesMakeCreateChannelFailNamingTheProblem) {
  struct Case {
    std::string target;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"static:///10.0.0.1:1;weight=0", "weight must be a whole number"},
      {"static:///10.0.0.1:1;weight=2;weight=3", "weight given twice"},
      {"static:///10.0.0.1:1;zone", "no '='"},
      {"static:///10.0.0.1:1;=eu", "empty key"},
      {"static:///10.0.0.1:1;", "';' with nothing after it"},
      {"static:///10.0.0.1:1;zone=e u,10.0.0.2:1", "the value has a space"},
      {"static:///;weight=2", "no address before ';'"},
      {"static:///10.0.0.1:1,10.0.0.2:x;weight=2", "port must be a number"},
  };
  for (const Case& c : cases) {
    grpc::Status status;
    auto channel = lbkit::CreateChannel(c.target, grpc::InsecureChannelCredentials(), {}, &status);
    ASSERT_NE(channel, nullptr);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.target;
    EXPECT_TRUE(Contains(status.error_message(), c.reason))
        << c.target << " -> " << status.error_message();
    EXPECT_TRUE(Contains(status.error_message(), c.target)) << "names the target";
  }
}

TEST(StaticTarget, FourSlashesAreRejectedClearlyAndUnixSocketsStillWork) {
  grpc::Status status;
  lbkit::CreateChannel("static:////127.0.0.1:p", grpc::InsecureChannelCredentials(), {}, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(status.error_message(), "starts with '/' (one slash too many?"))
      << status.error_message();
  lbkit::CreateChannel("static:////127.0.0.1:1", grpc::InsecureChannelCredentials(), {}, &status);
  EXPECT_TRUE(Contains(status.error_message(), "one slash too many")) << status.error_message();

  for (const char* good : {"static:///unix:/tmp/x.sock", "static:///unix:///tmp/x.sock",
                           "static:///unix:/tmp/x.sock;zone=local,127.0.0.1:1"}) {
    lbkit::CreateChannel(good, grpc::InsecureChannelCredentials(), {}, &status);
    EXPECT_TRUE(status.ok()) << good << ": " << status.error_message();
  }
}

// ---- attributes through a channel ----

// A policy that records the endpoints it is given and publishes a queueing
// picker (it never connects).
class RecordingBalancer final : public lbkit::Balancer {
 public:
  RecordingBalancer(lbkit::Helper* helper, std::mutex* mu, std::vector<lbkit::Endpoint>* seen)
      : helper_(helper), mu_(mu), seen_(seen) {}
  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    {
      std::lock_guard<std::mutex> lock(*mu_);
      *seen_ = update.endpoints;
    }
    helper_->UpdateState(
        {lbkit::ConnectivityState::kConnecting, std::make_shared<lbkit::QueuePicker>(), {}});
    return grpc::Status::OK;
  }
  void ResolverError(const grpc::Status&) override {}

 private:
  lbkit::Helper* helper_;
  std::mutex* mu_;
  std::vector<lbkit::Endpoint>* seen_;
};

class RecordingBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "test_attributes_recorder"; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    *config = std::make_shared<lbkit::BalancerConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override {
    return std::make_unique<RecordingBalancer>(helper, &mu, &seen);
  }
  std::vector<lbkit::Endpoint> Seen() const {
    std::lock_guard<std::mutex> lock(mu);
    return seen;
  }

  mutable std::mutex mu;
  mutable std::vector<lbkit::Endpoint> seen;
};

TEST(ResolverUpdate, AttributesReachThePolicyAndWeightZeroEndpointsAreDropped) {
  auto builder = std::make_shared<RecordingBuilder>();
  ASSERT_TRUE(lbkit::RegisterBalancer(builder, lbkit::OnDuplicate::kReplace).ok());
  auto resolver = lbkit::ManualResolver::Create();
  lbkit::ResolverState state;
  lbkit::Endpoint weighted{{"127.0.0.1:1"}};
  weighted.attributes.weight = 5;
  weighted.attributes.hash_key = "k";
  weighted.attributes.values["zone"] = "eu";
  lbkit::Endpoint zero{{"127.0.0.1:2"}};
  zero.attributes.weight = 0;
  lbkit::Endpoint bad_address{{"no-port", "127.0.0.1:3"}};
  bad_address.attributes.values["zone"] = "us";
  state.endpoints = {weighted, zero, bad_address};
  state.service_config = R"({"loadBalancingConfig":[{"test_attributes_recorder":{}}]})";
  resolver->SetInitialState(state);
  lbkit::ChannelOptions options;
  options.resolver = resolver;
  auto channel = lbkit::CreateChannel("manual:///", grpc::InsecureChannelCredentials(), options);
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return !builder->Seen().empty(); }));
  lbkit::Endpoint kept{{"127.0.0.1:3"}};
  kept.attributes = bad_address.attributes;
  EXPECT_EQ(builder->Seen(), (std::vector<lbkit::Endpoint>{weighted, kept}))
      << "attributes kept, the weight-0 endpoint dropped, the bad address dropped";
  channel->Shutdown();
}

TEST(ResolverUpdate, OnlyWeightZeroEndpointsIsAResolverErrorSayingSo) {
  auto resolver = lbkit::ManualResolver::Create();
  lbkit::Endpoint zero{{"127.0.0.1:2"}};
  zero.attributes.weight = 0;
  resolver->SetInitialState({{zero}, ""});
  lbkit::ChannelOptions options;
  options.resolver = resolver;
  auto channel = lbkit::CreateChannel("manual:///", grpc::InsecureChannelCredentials(), options);
  ASSERT_TRUE(lbkit_test::WaitFor([&] {
    return Contains(channel->Snapshot().last_error, "weight 0");
  })) << channel->Snapshot().last_error;
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_TRANSIENT_FAILURE);
  channel->Shutdown();
}

}  // namespace
