// Server side of per-call load reports: lets any grpc++ server (sync, async
// or callback) tell lbkit's pickers, and gRPC's own ORCA-aware clients, how
// loaded it is, in the trailer gRPC's ORCA uses.
//
// grpc++ 1.51 has grpcpp/ext/call_metric_recorder.h, but its switch
// (EnableCallMetricRecording) is not exported by every build of the library
// (Debian's is one) and its recorder has no qps, eps, application
// utilization or named metrics; this helper needs neither.
#ifndef LBKIT_SERVER_LOAD_REPORT_H_
#define LBKIT_SERVER_LOAD_REPORT_H_

#include <string>

#include <grpcpp/server_context.h>

#include "lbkit/export.h"
#include "lbkit/load_report.h"

namespace lbkit {

// `report` serialized as an xds.data.orca.v3.OrcaLoadReport (the wire format
// gRPC's ORCA reads): what the `endpoint-load-metrics-bin` trailer carries.
LBKIT_EXPORT std::string SerializeLoadReport(const LoadReport& report);

// Adds `report` to the trailing metadata of the call `context` serves, twice
// (load_report.h says why): as gRPC's ORCA trailer kLoadReportTrailer and as
// kLbkitLoadReportTrailer, which lbkit's client reads. Call it once per call, before the call's
// status is sent: in a sync handler before it returns, in an async one before Finish(), in a
// callback reactor before Finish(). Like ServerContextBase::AddTrailingMetadata, which it uses, it
// is not thread-safe against other uses of `context`. Works with ServerContext,
// CallbackServerContext and GenericServerContext. A second report for the
// same call adds a second trailer; lbkit's client reads the last one.
LBKIT_EXPORT void AddLoadReportTrailer(grpc::ServerContextBase* context, const LoadReport& report);

}  // namespace lbkit

#endif  // LBKIT_SERVER_LOAD_REPORT_H_
