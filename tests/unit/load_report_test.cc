// The ORCA load report: lbkit's serialization and parse, checked against the
// wire bytes of gRPC's xds.data.orca.v3.OrcaLoadReport; CallDoneInfo's lazy
// parse of the trailer; the check of metadata a picker attaches.
#include <cstdint>
#include <cstring>
#include <map>
#include <string>

#include <grpcpp/support/string_ref.h>
#include <gtest/gtest.h>

#include "common/load_reports.h"
#include "core/call_info.h"
#include "lbkit/picker.h"
#include "lbkit/server_load_report.h"
#include "orca/load_report.h"

namespace {

using lbkit::CallDoneInfo;
using lbkit::LoadReport;
using lbkit::internal::ParseLoadReport;
using lbkit_test::EveryFieldLoadReport;
using lbkit_test::ExpectSameLoadReport;

// A double field in wire format: tag (field << 3 | 1), then 8 bytes little-endian.
std::string DoubleField(int field, double value) {
  std::string out(1, static_cast<char>(field << 3 | 1));
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  for (int i = 0; i < 8; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
  return out;
}

// One map<string, double> entry of field `field` (key 1, value 2); short keys only.
std::string MapEntry(int field, const std::string& key, double value) {
  std::string entry = std::string(1, '\x0a') + static_cast<char>(key.size()) + key;
  entry += DoubleField(2, value);
  return std::string(1, static_cast<char>(field << 3 | 2)) + static_cast<char>(entry.size()) +
         entry;
}

TEST(LoadReportCodec, SerializeThenParseKeepsEveryField) {
  LoadReport parsed;
  ASSERT_TRUE(ParseLoadReport(lbkit::SerializeLoadReport(EveryFieldLoadReport()), &parsed));
  ExpectSameLoadReport(parsed, EveryFieldLoadReport());
}

TEST(LoadReportCodec, ParsesGrpcFieldNumbersWrittenByHand) {
  // xds.data.orca.v3.OrcaLoadReport: cpu 1, mem 2, rps (deprecated uint64) 3,
  // request_cost 4, utilization 5, rps_fractional 6, eps 7, named_metrics 8,
  // application_utilization 9.
  std::string bytes = DoubleField(1, 0.25) + DoubleField(2, 0.5) +
                      std::string("\x18\x05", 2) +  // rps = 5: read by nobody, skipped
                      MapEntry(4, "bytes", 4096) + MapEntry(4, "db_rows", 3) +
                      MapEntry(5, "disk", 0.125) + DoubleField(6, 1234.5) + DoubleField(7, 6.75) +
                      MapEntry(8, "queue_depth", 17) + MapEntry(8, "shards", 2) +
                      DoubleField(9, 1.5);
  LoadReport parsed;
  ASSERT_TRUE(ParseLoadReport(bytes, &parsed));
  ExpectSameLoadReport(parsed, EveryFieldLoadReport());
}

TEST(LoadReportCodec, SerializesWithGrpcFieldNumbers) {
  LoadReport report;
  report.cpu_utilization = 0.25;
  report.qps = 2;
  report.application_utilization = 1.5;
  EXPECT_EQ(lbkit::SerializeLoadReport(report),
            DoubleField(1, 0.25) + DoubleField(6, 2) + DoubleField(9, 1.5));
  report = LoadReport();
  report.named_metrics["x"] = 1;
  EXPECT_EQ(lbkit::SerializeLoadReport(report), MapEntry(8, "x", 1));
}

TEST(LoadReportCodec, RejectsMalformedBytes) {
  LoadReport parsed;
  EXPECT_FALSE(ParseLoadReport(std::string("\x09\x00\x00", 3), &parsed)) << "truncated double";
  EXPECT_FALSE(ParseLoadReport(std::string("\xff\xff\xff\xff", 4), &parsed)) << "bad tag varint";
  EXPECT_FALSE(ParseLoadReport(std::string("\x42\x7f\x0a", 3), &parsed)) << "entry overruns";
  EXPECT_FALSE(ParseLoadReport("not a protobuf at all", &parsed));
  EXPECT_TRUE(ParseLoadReport("", &parsed)) << "an empty report is a report of zeros";
}

TEST(CallDoneInfo, LoadReportIsNullWithoutTrailers) {
  CallDoneInfo info(grpc::Status::OK);
  EXPECT_TRUE(info.trailing_metadata().empty());
  EXPECT_EQ(info.load_report(), nullptr);
}

TEST(CallDoneInfo, LoadReportIsParsedOnceFromTheTrailer) {
  std::string bytes = lbkit::SerializeLoadReport(EveryFieldLoadReport());
  CallDoneInfo::Metadata trailers;
  trailers.emplace("x-other", "value");
  trailers.emplace(lbkit::kLbkitLoadReportTrailer, grpc::string_ref(bytes.data(), bytes.size()));
  CallDoneInfo info(grpc::Status::OK, &trailers);
  EXPECT_EQ(info.trailing_metadata().size(), 2u);
  const LoadReport* report = info.load_report();
  ASSERT_NE(report, nullptr);
  ExpectSameLoadReport(*report, EveryFieldLoadReport());
  EXPECT_EQ(info.load_report(), report) << "parsed once, kept";
}

TEST(CallDoneInfo, GrpcsOwnTrailerNameIsReadToo) {
  // gRPC C++ 1.51 never passes it to applications (load_report.h); a gRPC
  // that did would need nothing more from lbkit.
  std::string bytes = lbkit::SerializeLoadReport(EveryFieldLoadReport());
  CallDoneInfo::Metadata trailers;
  trailers.emplace(lbkit::kLoadReportTrailer, grpc::string_ref(bytes.data(), bytes.size()));
  CallDoneInfo info(grpc::Status::OK, &trailers);
  ASSERT_NE(info.load_report(), nullptr);
  ExpectSameLoadReport(*info.load_report(), EveryFieldLoadReport());
}

TEST(CallDoneInfo, MalformedTrailerGivesNoReport) {
  std::string bytes("\x09\x01\x02", 3);
  CallDoneInfo::Metadata trailers;
  trailers.emplace(lbkit::kLbkitLoadReportTrailer, grpc::string_ref(bytes.data(), bytes.size()));
  CallDoneInfo info(grpc::Status::OK, &trailers);
  EXPECT_EQ(info.load_report(), nullptr);
  EXPECT_EQ(info.load_report(), nullptr);
}

TEST(CallDoneInfo, TheLastOfSeveralReportsCounts) {
  LoadReport first;
  first.cpu_utilization = 0.1;
  LoadReport last;
  last.cpu_utilization = 0.9;
  std::string a = lbkit::SerializeLoadReport(first);
  std::string b = lbkit::SerializeLoadReport(last);
  CallDoneInfo::Metadata trailers;
  trailers.emplace(lbkit::kLbkitLoadReportTrailer, grpc::string_ref(a.data(), a.size()));
  trailers.emplace(lbkit::kLbkitLoadReportTrailer, grpc::string_ref(b.data(), b.size()));
  CallDoneInfo info(grpc::Status::OK, &trailers);
  ASSERT_NE(info.load_report(), nullptr);
  EXPECT_EQ(info.load_report()->cpu_utilization, 0.9);
}

grpc::Status Check(const std::string& key, const std::string& value) {
  return lbkit::internal::CheckPickMetadata({{key, value}});
}

TEST(PickMetadataCheck, AcceptsWhatGrpcSends) {
  EXPECT_TRUE(Check("x-route", "shard-7").ok());
  EXPECT_TRUE(Check("a.b_c-9", "printable ~ ASCII").ok());
  EXPECT_TRUE(Check("x-trace-bin", std::string("\x00\xff\x10", 3)).ok()) << "any bytes in -bin";
  EXPECT_TRUE(lbkit::internal::CheckPickMetadata({}).ok());
}

TEST(PickMetadataCheck, RejectsWithInternalNamingTheKey) {
  for (const auto& [key, value] : std::map<std::string, std::string>{{"", "v"},
                                                                     {"X-Upper", "v"},
                                                                     {"has space", "v"},
                                                                     {":path", "/x"},
                                                                     {"grpc-timeout", "1S"},
                                                                     {"content-type", "text/plain"},
                                                                     {"x-ctl", "line\nbreak"},
                                                                     {"x-high", "caf\xc3\xa9"}}) {
    grpc::Status status = Check(key, value);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL) << key;
    EXPECT_NE(status.error_message().find("picker attached invalid metadata: key \"" + key + "\""),
              std::string::npos)
        << status.error_message();
  }
}

}  // namespace

namespace {

TEST(PickResultMetadata, NothingIsAttachedUntilAsked) {
  lbkit::PickResult result = lbkit::PickResult::Complete(nullptr);
  EXPECT_EQ(result.metadata(), nullptr);
  EXPECT_TRUE(result.TakeMetadata().empty());
}

TEST(PickResultMetadata, AttachedEntriesKeepTheirOrderAndSurviveACopy) {
  lbkit::PickResult result =
      lbkit::PickResult::Complete(nullptr).AddMetadata("a", "1").AddMetadata("b", "2");
  lbkit::PickResult copy = result;
  result.AddMetadata("c", "3");
  ASSERT_NE(copy.metadata(), nullptr);
  EXPECT_EQ(*copy.metadata(), (lbkit::PickResult::MetadataList{{"a", "1"}, {"b", "2"}}))
      << "a copy has its own list";
  EXPECT_EQ(result.TakeMetadata(),
            (lbkit::PickResult::MetadataList{{"a", "1"}, {"b", "2"}, {"c", "3"}}));
}

}  // namespace
