#include "orca/load_report.h"

#include <climits>

#include "lbkit/server_load_report.h"
#include "orca_load_report.pb.h"

namespace lbkit {
namespace internal {
namespace {

void CopyMap(const google::protobuf::Map<std::string, double>& from,
             std::map<std::string, double>* to) {
  to->clear();
  for (const auto& [key, value] : from) to->emplace(key, value);
}

void CopyMap(const std::map<std::string, double>& from,
             google::protobuf::Map<std::string, double>* to) {
  for (const auto& [key, value] : from) (*to)[key] = value;
}

}  // namespace

bool ParseLoadReport(std::string_view bytes, LoadReport* report) {
  if (bytes.size() > static_cast<size_t>(INT_MAX)) return false;
  orca::OrcaLoadReport message;
  if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return false;
  report->cpu_utilization = message.cpu_utilization();
  report->mem_utilization = message.mem_utilization();
  report->application_utilization = message.application_utilization();
  report->qps = message.rps_fractional();
  report->eps = message.eps();
  CopyMap(message.request_cost(), &report->request_cost);
  CopyMap(message.utilization(), &report->utilization);
  CopyMap(message.named_metrics(), &report->named_metrics);
  return true;
}

}  // namespace internal

std::string SerializeLoadReport(const LoadReport& report) {
  internal::orca::OrcaLoadReport message;
  message.set_cpu_utilization(report.cpu_utilization);
  message.set_mem_utilization(report.mem_utilization);
  message.set_application_utilization(report.application_utilization);
  message.set_rps_fractional(report.qps);
  message.set_eps(report.eps);
  internal::CopyMap(report.request_cost, message.mutable_request_cost());
  internal::CopyMap(report.utilization, message.mutable_utilization());
  internal::CopyMap(report.named_metrics, message.mutable_named_metrics());
  return message.SerializeAsString();
}

void AddLoadReportTrailer(grpc::ServerContextBase* context, const LoadReport& report) {
  std::string bytes = SerializeLoadReport(report);
  context->AddTrailingMetadata(kLoadReportTrailer, bytes);
  context->AddTrailingMetadata(kLbkitLoadReportTrailer, bytes);
}

}  // namespace lbkit
