// Test support: a load report with every field set, and a field-by-field
// comparison.
#ifndef LBKIT_TESTS_COMMON_LOAD_REPORTS_H_
#define LBKIT_TESTS_COMMON_LOAD_REPORTS_H_

#include <gtest/gtest.h>

#include "lbkit/load_report.h"

namespace lbkit_test {

// Every field set, each to a value no other field has.
inline lbkit::LoadReport EveryFieldLoadReport() {
  lbkit::LoadReport report;
  report.cpu_utilization = 0.25;
  report.mem_utilization = 0.5;
  report.application_utilization = 1.5;
  report.qps = 1234.5;
  report.eps = 6.75;
  report.request_cost = {{"bytes", 4096}, {"db_rows", 3}};
  report.utilization = {{"disk", 0.125}};
  report.named_metrics = {{"queue_depth", 17}, {"shards", 2}};
  return report;
}

inline void ExpectSameLoadReport(const lbkit::LoadReport& got, const lbkit::LoadReport& want) {
  EXPECT_EQ(got.cpu_utilization, want.cpu_utilization);
  EXPECT_EQ(got.mem_utilization, want.mem_utilization);
  EXPECT_EQ(got.application_utilization, want.application_utilization);
  EXPECT_EQ(got.qps, want.qps);
  EXPECT_EQ(got.eps, want.eps);
  EXPECT_EQ(got.request_cost, want.request_cost);
  EXPECT_EQ(got.utilization, want.utilization);
  EXPECT_EQ(got.named_metrics, want.named_metrics);
}

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_COMMON_LOAD_REPORTS_H_
