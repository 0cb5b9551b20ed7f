// The hand-written grpc.health.v1 message encoding.
#include <gtest/gtest.h>

#include "core/health_check.h"

namespace {

using lbkit::internal::DecodeHealthCheckResponse;
using lbkit::internal::EncodeHealthCheckRequest;
using lbkit::internal::ServingStatus;

TEST(HealthCodec, EncodesTheServiceNameAsField1) {
  EXPECT_EQ(EncodeHealthCheckRequest(""), "");
  EXPECT_EQ(EncodeHealthCheckRequest("ab"), std::string("\x0a\x02"
                                                        "ab",
                                                        4));
  std::string long_name(200, 'x');
  EXPECT_EQ(EncodeHealthCheckRequest(long_name), std::string("\x0a\xc8\x01", 3) + long_name)
      << "lengths over 127 take a two-byte varint";
}

TEST(HealthCodec, DecodesTheStatusAndSkipsUnknownFields) {
  ServingStatus status;
  ASSERT_TRUE(DecodeHealthCheckResponse(std::string("\x08\x01", 2), &status));
  EXPECT_EQ(status, ServingStatus::kServing);
  ASSERT_TRUE(DecodeHealthCheckResponse(std::string("\x08\x02", 2), &status));
  EXPECT_EQ(status, ServingStatus::kNotServing);
  ASSERT_TRUE(DecodeHealthCheckResponse("", &status));
  EXPECT_EQ(status, ServingStatus::kUnknown) << "proto3 default";
  // An unknown length-delimited field 2, then the status.
  ASSERT_TRUE(DecodeHealthCheckResponse(std::string("\x12\x03"
                                                    "abc"
                                                    "\x08\x03",
                                                    7),
                                        &status));
  EXPECT_EQ(status, ServingStatus::kServiceUnknown);
}

TEST(HealthCodec, RejectsMalformedBytes) {
  ServingStatus status;
  EXPECT_FALSE(DecodeHealthCheckResponse(std::string("\x08", 1), &status));
  EXPECT_FALSE(DecodeHealthCheckResponse(std::string("\x12\x05"
                                                     "ab",
                                                     4),
                                         &status));
  EXPECT_FALSE(DecodeHealthCheckResponse(std::string("\x0b", 1), &status));
}

}  // namespace
