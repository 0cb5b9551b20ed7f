// The ORCA load report's wire format, for lbkit's client side (CallDoneInfo)
// and its server helper (server_load_report.h). The generated protobuf type
// stays in load_report.cc.
#ifndef LBKIT_SRC_ORCA_LOAD_REPORT_H_
#define LBKIT_SRC_ORCA_LOAD_REPORT_H_

#include <string_view>

#include "lbkit/load_report.h"

namespace lbkit {
namespace internal {

// Parses a serialized xds.data.orca.v3.OrcaLoadReport into *report. Returns
// false, leaving *report unspecified, if `bytes` is not one.
bool ParseLoadReport(std::string_view bytes, LoadReport* report);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_ORCA_LOAD_REPORT_H_
