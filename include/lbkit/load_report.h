// A backend's load report for one call: what gRPC's ORCA calls an
// xds.data.orca.v3.OrcaLoadReport, as a plain struct.
//
// gRPC's ORCA carries it in the binary trailer `endpoint-load-metrics-bin`.
// gRPC C++'s core (1.51, and later versions alike) takes that trailer for its
// own load-balancing policies and never hands it to the application or to a
// client interceptor, so lbkit's client cannot read it there. lbkit's server
// helper (server_load_report.h) therefore sends the same bytes twice: under
// gRPC's name, for gRPC's own ORCA-aware clients (gRPC-Go, gRPC-Java, xDS
// weighted round robin), and under kLbkitLoadReportTrailer, which gRPC passes
// through and lbkit's client reads. A picker's done-callback gets it from
// CallDoneInfo::load_report() (picker.h). A report from a server that sends
// only gRPC's trailer (ORCA through gRPC's own CallMetricRecorder, or a server
// in another language) does not reach lbkit's client: gRPC C++ offers no
// public way to read it.
#ifndef LBKIT_LOAD_REPORT_H_
#define LBKIT_LOAD_REPORT_H_

#include <map>
#include <string>

#include "lbkit/export.h"

namespace lbkit {

// gRPC's ORCA trailer: a serialized xds.data.orca.v3.OrcaLoadReport.
inline constexpr char kLoadReportTrailer[] = "endpoint-load-metrics-bin";
// The same bytes under a name gRPC C++ lets applications see; what lbkit's
// client reads.
inline constexpr char kLbkitLoadReportTrailer[] = "lbkit-endpoint-load-metrics-bin";

// Every field is what the backend reported; a field it did not set is 0 (or
// an empty map), as protobuf gives it, so "not reported" and "0" look alike.
struct LBKIT_EXPORT LoadReport {
  // Fraction of the available CPU in use; may exceed 1.0 past a soft limit.
  double cpu_utilization = 0;
  // Fraction of the available memory in use, in [0, 1].
  double mem_utilization = 0;
  // An application-defined utilization (for example the larger of CPU and
  // memory); may exceed 1.0.
  double application_utilization = 0;
  // Requests per second the backend serves, all services together
  // (ORCA's rps_fractional).
  double qps = 0;
  // Errors per second the backend serves.
  double eps = 0;
  // Absolute costs of this request, by name (bytes of storage, ...).
  std::map<std::string, double> request_cost;
  // Other utilizations, each a fraction in [0, 1], by name.
  std::map<std::string, double> utilization;
  // Application-defined opaque metrics, by name.
  std::map<std::string, double> named_metrics;
};

}  // namespace lbkit

#endif  // LBKIT_LOAD_REPORT_H_
