// The registries refuse what no channel could use, and a name taken already
// unless replacement is asked for.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "lbkit/lbkit.h"

namespace {

class NamedBuilder final : public lbkit::BalancerBuilder {
 public:
  explicit NamedBuilder(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    *config = std::make_shared<lbkit::BalancerConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper*) const override { return nullptr; }

 private:
  std::string name_;
};

class NamedFactory final : public lbkit::ResolverFactory {
 public:
  explicit NamedFactory(std::string scheme) : scheme_(std::move(scheme)) {}
  std::string scheme() const override { return scheme_; }
  grpc::Status Create(const lbkit::Target&, std::shared_ptr<lbkit::Resolver>*) const override {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "test factory");
  }

 private:
  std::string scheme_;
};

TEST(RegisterBalancer, RefusesANullBuilder) {
  grpc::Status status = lbkit::RegisterBalancer(nullptr);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "lbkit::RegisterBalancer: the builder is null");
}

TEST(RegisterBalancer, RefusesAnEmptyName) {
  grpc::Status status = lbkit::RegisterBalancer(std::make_shared<NamedBuilder>(""));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "lbkit::RegisterBalancer: the policy name is empty");
  EXPECT_EQ(lbkit::FindBalancer(""), nullptr);
}

TEST(RegisterBalancer, RefusesWhitespaceControlAndNonAsciiBytesInTheName) {
  for (const std::string& name :
       {std::string("round robin"), std::string("tab\tbed"), std::string("nul\0byte", 8),
        std::string("trailing\n"), std::string("caf\xc3\xa9")}) {
    grpc::Status status = lbkit::RegisterBalancer(std::make_shared<NamedBuilder>(name));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
    EXPECT_NE(status.error_message().find("printable ASCII"), std::string::npos)
        << status.error_message();
    // The name is quoted printable: no raw control byte reaches a log.
    for (char c : status.error_message()) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << name;
    EXPECT_EQ(lbkit::FindBalancer(name), nullptr) << name;
  }
}

TEST(RegisterBalancer, RefusesADuplicateNameAndKeepsTheFirst) {
  auto first = std::make_shared<NamedBuilder>("registry_test_duplicate");
  ASSERT_TRUE(lbkit::RegisterBalancer(first, lbkit::OnDuplicate::kReplace).ok());
  grpc::Status status =
      lbkit::RegisterBalancer(std::make_shared<NamedBuilder>("registry_test_duplicate"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(status.error_message(),
            "lbkit::RegisterBalancer: a policy named \"registry_test_duplicate\" is registered "
            "already (pass OnDuplicate::kReplace to replace it)");
  EXPECT_EQ(lbkit::FindBalancer("registry_test_duplicate"), first);
}

TEST(RegisterBalancer, RefusesToReplaceABuiltInImplicitly) {
  for (const char* name : {"pick_first", "round_robin", "random", "least_request", "ring_hash",
                           "weighted_round_robin", "outlier_detection"}) {
    auto builtin = lbkit::FindBalancer(name);
    ASSERT_NE(builtin, nullptr);
    grpc::Status status = lbkit::RegisterBalancer(std::make_shared<NamedBuilder>(name));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS) << name;
    EXPECT_NE(status.error_message().find("\"" + std::string(name) + "\""), std::string::npos)
        << status.error_message();
    EXPECT_EQ(lbkit::FindBalancer(name), builtin);
  }
}

TEST(RegisterBalancer, ExplicitReplacementReplaces) {
  auto first = std::make_shared<NamedBuilder>("registry_test_replaced");
  auto second = std::make_shared<NamedBuilder>("registry_test_replaced");
  ASSERT_TRUE(lbkit::RegisterBalancer(first, lbkit::OnDuplicate::kReplace).ok());
  EXPECT_TRUE(lbkit::RegisterBalancer(second, lbkit::OnDuplicate::kReplace).ok());
  EXPECT_EQ(lbkit::FindBalancer("registry_test_replaced"), second);
}

TEST(RegisterResolverFactory, RefusesANullFactoryAndSchemesNoTargetCouldName) {
  grpc::Status status = lbkit::RegisterResolverFactory(nullptr);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "lbkit::RegisterResolverFactory: the factory is null");
  for (const char* scheme : {"", "1dns", "my scheme", "a:b", "a/b"}) {
    status = lbkit::RegisterResolverFactory(std::make_shared<NamedFactory>(scheme));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << scheme;
    EXPECT_NE(status.error_message().find("is not a URI scheme"), std::string::npos)
        << status.error_message();
  }
}

TEST(RegisterResolverFactory, RefusesADuplicateSchemeBuiltInsIncluded) {
  for (const char* scheme : {"static", "manual", "dns", "etcd"}) {
    auto builtin = lbkit::FindResolverFactory(scheme);
    grpc::Status status = lbkit::RegisterResolverFactory(std::make_shared<NamedFactory>(scheme));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS) << scheme;
    EXPECT_EQ(status.error_message(), "lbkit::RegisterResolverFactory: scheme \"" +
                                          std::string(scheme) +
                                          "\" is registered already (pass OnDuplicate::kReplace "
                                          "to replace it)");
    EXPECT_EQ(lbkit::FindResolverFactory(scheme), builtin);
  }
}

TEST(RegisterResolverFactory, ExplicitReplacementReplaces) {
  auto first = std::make_shared<NamedFactory>("registry-test+x.y");
  auto second = std::make_shared<NamedFactory>("registry-test+x.y");
  ASSERT_TRUE(lbkit::RegisterResolverFactory(first, lbkit::OnDuplicate::kReplace).ok());
  EXPECT_EQ(lbkit::RegisterResolverFactory(second).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(lbkit::FindResolverFactory("registry-test+x.y"), first);
  EXPECT_TRUE(lbkit::RegisterResolverFactory(second, lbkit::OnDuplicate::kReplace).ok());
  EXPECT_EQ(lbkit::FindResolverFactory("registry-test+x.y"), second);
}

}  // namespace
