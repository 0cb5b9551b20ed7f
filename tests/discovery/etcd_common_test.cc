// The pieces the etcd resolver and registrar share (src/discovery/
// etcd_common.h), and the test harness that runs real etcd members.
#include <gtest/gtest.h>

#include "common/etcd_cluster.h"
#include "common/test_backend.h"
#include "discovery/etcd_common.h"

namespace lbkit {
namespace internal {
namespace {

TEST(EtcdTarget, ParsesMembersAndService) {
  EtcdTarget target;
  ASSERT_TRUE(ParseEtcdTarget("etcd://127.0.0.1:2379,[::1]:2380/svc/echo", &target).ok());
  EXPECT_EQ(target.members, (std::vector<std::string>{"127.0.0.1:2379", "[::1]:2380"}));
  EXPECT_EQ(target.service, "svc/echo");
  EXPECT_EQ(target.prefix(), "svc/echo/");
}

TEST(EtcdTarget, RejectsBadTargetsNamingTheProblem) {
  EtcdTarget target;
  auto error = [&](const std::string& uri) {
    grpc::Status status = ParseEtcdTarget(uri, &target);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << uri;
    return status.error_message();
  };
  EXPECT_NE(error("etcd:///svc").find("no etcd member"), std::string::npos);
  EXPECT_NE(error("etcd://127.0.0.1:2379/").find("no service name"), std::string::npos);
  EXPECT_NE(error("etcd://127.0.0.1:2379,,127.0.0.1:1/s").find("empty etcd member"),
            std::string::npos);
  EXPECT_NE(error("etcd://127.0.0.1/s").find("no port"), std::string::npos);
  EXPECT_NE(error("etcd://127.0.0.1:99999/s").find("etcd member"), std::string::npos);
  EXPECT_NE(error("dns://127.0.0.1:1/s").find("etcd://"), std::string::npos);
}

TEST(EtcdKeys, PrefixRangeEndCoversThePrefix) {
  EXPECT_EQ(PrefixRangeEnd("svc/"), "svc0");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
  EXPECT_EQ(EtcdEndpointKey("svc", "10.0.0.1:80"), "svc/10.0.0.1:80");
}

TEST(EtcdValue, RoundTripsAddressAndAttributes) {
  EndpointAttributes attributes;
  attributes.weight = 7;
  attributes.hash_key = "k1";
  attributes.values["zone"] = "eu";
  std::string value = EncodeEtcdEndpoint("10.0.0.1:80", attributes);
  EtcdEndpointValue decoded;
  ASSERT_TRUE(DecodeEtcdEndpoint(value, &decoded).ok()) << value;
  EXPECT_FALSE(decoded.remove);
  EXPECT_EQ(decoded.endpoint, (Endpoint{{"10.0.0.1:80"}, attributes}));
  EXPECT_EQ(EncodeEtcdEndpoint("h:1", {}), R"({"Addr":"h:1","Op":0})");
}

TEST(EtcdValue, ReadsWhatGoWrites) {
  EtcdEndpointValue decoded;
  ASSERT_TRUE(
      DecodeEtcdEndpoint(R"({"Op":0,"Addr":"127.0.0.1:5","Metadata":null})", &decoded).ok());
  EXPECT_EQ(decoded.endpoint, (Endpoint{{"127.0.0.1:5"}}));
  // etcd 3.5's endpoints package writes no "Op"; metadata can be anything.
  ASSERT_TRUE(DecodeEtcdEndpoint(
                  R"({"Addr":"127.0.0.1:5","Metadata":{"weight":"3","n":2,"zone":"eu"}})", &decoded)
                  .ok());
  EXPECT_EQ(decoded.endpoint.attributes.weight, 3u);
  EXPECT_EQ(decoded.endpoint.attributes.values.at("n"), "2");
  EXPECT_EQ(decoded.endpoint.attributes.values.at("zone"), "eu");
  ASSERT_TRUE(DecodeEtcdEndpoint(R"({"Addr":"127.0.0.1:5","Metadata":"blue"})", &decoded).ok());
  EXPECT_EQ(decoded.endpoint.attributes.values.at("metadata"), "\"blue\"");
  ASSERT_TRUE(DecodeEtcdEndpoint(R"({"Op":1,"Addr":"127.0.0.1:5"})", &decoded).ok());
  EXPECT_TRUE(decoded.remove);
}

TEST(EtcdValue, RejectsBadValuesNamingTheProblem) {
  EtcdEndpointValue decoded;
  auto error = [&](const std::string& value) {
    grpc::Status status = DecodeEtcdEndpoint(value, &decoded);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << value;
    return status.error_message();
  };
  EXPECT_NE(error("127.0.0.1:5").find("not JSON"), std::string::npos);
  EXPECT_NE(error("[1]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(error(R"({"Op":0})").find("Addr"), std::string::npos);
  EXPECT_NE(error(R"({"Op":2,"Addr":"h:1"})").find("\"Op\""), std::string::npos);
  EXPECT_NE(error(R"({"Addr":"h:1","Metadata":{"weight":0}})").find("weight"), std::string::npos);
  EXPECT_NE(error(R"({"Addr":"h:1","Metadata":{"weight":-1}})").find("weight"), std::string::npos);
  EXPECT_NE(error(R"({"Addr":"h:99999"})").find("port"), std::string::npos);
  // Hostile values: huge, or nested deep enough to exhaust a stack if
  // anything recursed over them; brackets inside strings do not count.
  EXPECT_NE(error(std::string(70000, ' ')).find("more than 65536"), std::string::npos);
  std::string deep =
      R"({"Addr":"h:1","Metadata":)" + std::string(30000, '[') + std::string(30000, ']') + "}";
  EXPECT_NE(error(deep).find("nests deeper than 32"), std::string::npos);
  ASSERT_TRUE(
      DecodeEtcdEndpoint(
          R"({"Addr":"h:1","Metadata":{"note":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}})", &decoded)
          .ok());
  // Bytes that are not UTF-8: an error, never an exception.
  EXPECT_NE(error("{\"Addr\":\"h:1\",\"Metadata\":{\"n\":[\"\xff\"]}}").find("not JSON"),
            std::string::npos);
}

TEST(EtcdCluster, ServesPutListCompactAndEtcdctl) {
  lbkit_test::EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  ASSERT_TRUE(etcd.Put("svc/a", "1").ok());
  ASSERT_EQ(etcd.Etcdctl({"put", "svc/b", "2"}), 0);
  std::vector<std::string> keys, values;
  ASSERT_TRUE(etcd.List("svc/", &keys, &values).ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"svc/a", "svc/b"}));
  EXPECT_EQ(values, (std::vector<std::string>{"1", "2"}));
  EXPECT_TRUE(etcd.Compact().ok());
  etcd.Kill(0);
  EXPECT_FALSE(etcd.Put("svc/c", "3").ok());
  ASSERT_TRUE(etcd.Restart(0));
  ASSERT_TRUE(etcd.List("svc/", &keys).ok());
  EXPECT_EQ(keys.size(), 2u);
}

TEST(EtcdCluster, ThreeMembersElectANewLeaderWhenTheLeaderIsKilled) {
  lbkit_test::EtcdCluster etcd(3);
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  int leader = etcd.Leader();
  ASSERT_GE(leader, 0);
  etcd.Kill(leader);
  int next = -1;
  ASSERT_TRUE(lbkit_test::WaitFor([&] {
    next = etcd.Leader();
    return next >= 0;
  }));
  EXPECT_NE(next, leader);
  EXPECT_TRUE(etcd.Put("k", "v").ok());
}

}  // namespace
}  // namespace internal
}  // namespace lbkit
