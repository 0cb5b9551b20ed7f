#include "core/health_check.h"

#include <chrono>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include "core/io_loop.h"

namespace lbkit {
namespace internal {
namespace {

constexpr char kWatchMethod[] = "/grpc.health.v1.Health/Watch";

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromByteBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

bool ReadVarint(const std::string& bytes, size_t* pos, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64 && *pos < bytes.size(); shift += 7) {
    uint8_t byte = static_cast<uint8_t>(bytes[(*pos)++]);
    *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

// One Health/Watch stream on lbkit's own completion queue: start, send the
// request, read answers until the stream ends, then finish.
class Watch final : public HealthWatch {
 public:
  Watch(StatusCallback on_status, DoneCallback on_done)
      : on_status_(std::move(on_status)), on_done_(std::move(on_done)) {}

  void Begin(std::shared_ptr<Watch> self, const std::shared_ptr<grpc::Channel>& channel,
             const std::string& service) {
    self_ = std::move(self);  // released once every operation has completed
    request_ = ToByteBuffer(EncodeHealthCheckRequest(service));
    grpc::GenericStub stub(channel);
    creating_internal_call = true;
    call_ = stub.PrepareCall(&context_, kWatchMethod, IoLoop::Get().cq());
    creating_internal_call = false;
    pending_ = 1;
    call_->StartCall(&start_tag_);
  }

  void Cancel() override { context_.TryCancel(); }

 private:
  void OnStarted(bool ok) {
    if (ok) {
      pending_ += 2;
      call_->WriteLast(request_, grpc::WriteOptions(), &write_tag_);
      call_->Read(&response_, &read_tag_);
    } else {
      Finish();
    }
    Release();
  }
  void OnWritten(bool /*ok*/) { Release(); }
  void OnRead(bool ok) {
    if (!ok) {
      Finish();
    } else {
      ServingStatus status;
      if (!DecodeHealthCheckResponse(FromByteBuffer(response_), &status)) {
        status = ServingStatus::kUnknown;
      }
      on_status_(status);
      ++pending_;
      call_->Read(&response_, &read_tag_);
    }
    Release();
  }
  void Finish() {
    ++pending_;
    call_->Finish(&status_, &finish_tag_);
  }
  void OnFinished(bool /*ok*/) {
    on_done_(status_);
    on_status_ = nullptr;
    on_done_ = nullptr;
    Release();
  }
  // All on the IoLoop thread, so pending_ needs no lock.
  void Release() {
    if (--pending_ == 0) self_.reset();  // may destroy this object: nothing after it
  }

  grpc::ClientContext context_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  grpc::Status status_;
  StatusCallback on_status_;
  DoneCallback on_done_;
  int pending_ = 0;
  MethodTag<Watch> start_tag_{this, &Watch::OnStarted};
  MethodTag<Watch> write_tag_{this, &Watch::OnWritten};
  MethodTag<Watch> read_tag_{this, &Watch::OnRead};
  MethodTag<Watch> finish_tag_{this, &Watch::OnFinished};
  std::shared_ptr<Watch> self_;
};

}  // namespace

const char* ToString(ServingStatus status) {
  switch (status) {
    case ServingStatus::kUnknown:
      return "UNKNOWN";
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
  }
  return "UNKNOWN";
}

std::string EncodeHealthCheckRequest(const std::string& service) {
  if (service.empty()) return "";  // proto3 omits default values
  std::string out(1, '\x0a');      // field 1, length-delimited
  uint64_t length = service.size();
  while (length >= 0x80) {
    out.push_back(static_cast<char>((length & 0x7f) | 0x80));
    length >>= 7;
  }
  out.push_back(static_cast<char>(length));
  return out + service;
}

bool DecodeHealthCheckResponse(const std::string& bytes, ServingStatus* status) {
  *status = ServingStatus::kUnknown;
  size_t pos = 0;
  while (pos < bytes.size()) {
    uint64_t key;
    if (!ReadVarint(bytes, &pos, &key)) return false;
    uint64_t value;
    switch (key & 7) {
      case 0:  // varint
        if (!ReadVarint(bytes, &pos, &value)) return false;
        if (key >> 3 == 1) {
          *status = value <= 3 ? static_cast<ServingStatus>(value) : ServingStatus::kUnknown;
        }
        break;
      case 1:  // 64-bit
        pos += 8;
        break;
      case 2:  // length-delimited
        if (!ReadVarint(bytes, &pos, &value) || value > bytes.size() - pos) return false;
        pos += value;
        break;
      case 5:  // 32-bit
        pos += 4;
        break;
      default:
        return false;
    }
  }
  return pos == bytes.size();
}

std::shared_ptr<HealthWatch> HealthWatch::Start(const std::shared_ptr<grpc::Channel>& channel,
                                                const std::string& service,
                                                StatusCallback on_status, DoneCallback on_done) {
  auto watch = std::make_shared<Watch>(std::move(on_status), std::move(on_done));
  watch->Begin(watch, channel, service);
  return watch;
}

void ProbeConnectionError(const std::shared_ptr<grpc::Channel>& channel,
                          std::function<void(const grpc::Status&)> done) {
  struct Probe {
    grpc::ClientContext context;
    grpc::ByteBuffer request = ToByteBuffer("");
    grpc::ByteBuffer response;
    grpc::Status status;
    std::unique_ptr<grpc::GenericClientAsyncResponseReader> call;
  };
  auto probe = std::make_shared<Probe>();
  probe->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  grpc::GenericStub stub(channel);
  creating_internal_call = true;
  probe->call = stub.PrepareUnaryCall(&probe->context, "/lbkit.internal.Probe/LastConnectionError",
                                      probe->request, IoLoop::Get().cq());
  creating_internal_call = false;
  probe->call->StartCall();
  probe->call->Finish(&probe->response, &probe->status,
                      new FunctionTag([probe, done = std::move(done)](bool /*ok*/) mutable {
                        done(probe->status);
                        probe->call.reset();
                      }));
}

}  // namespace internal
}  // namespace lbkit
