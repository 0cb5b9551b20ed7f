#include "common/call_styles.h"

#include <thread>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/client_callback.h>

namespace lbkit_test {
namespace {

using grpc::examples::echo::Echo;
using grpc::examples::echo::EchoRequest;
using grpc::examples::echo::EchoResponse;

class CallbackBidi final : public grpc::ClientBidiReactor<EchoRequest, EchoResponse> {
 public:
  CallbackBidi(Echo::Stub* stub, grpc::ClientContext* context, Done done) : done_(std::move(done)) {
    request_.set_message("m");
    stub->async()->BidirectionalStreamingEcho(context, this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (ok) reply_ = response_.message();
  }
  void OnDone(const grpc::Status& status) override {
    done_(status, reply_);
    delete this;
  }

 private:
  EchoRequest request_;
  EchoResponse response_;
  std::string reply_;
  Done done_;
};

}  // namespace

const char* Name(Style style) {
  switch (style) {
    case Style::kSyncUnary:
      return "SyncUnary";
    case Style::kAsyncUnary:
      return "AsyncUnary";
    case Style::kCallbackUnary:
      return "CallbackUnary";
    case Style::kSyncServerStreaming:
      return "SyncServerStreaming";
    case Style::kSyncClientStreaming:
      return "SyncClientStreaming";
    case Style::kSyncBidi:
      return "SyncBidi";
    case Style::kAsyncBidi:
      return "AsyncBidi";
    case Style::kCallbackBidi:
      return "CallbackBidi";
    case Style::kGenericCallbackUnary:
      return "GenericCallbackUnary";
    case Style::kGenericAsyncBidi:
      return "GenericAsyncBidi";
  }
  return "?";
}

bool IsSync(Style style) {
  return style == Style::kSyncUnary || style == Style::kSyncServerStreaming ||
         style == Style::kSyncClientStreaming || style == Style::kSyncBidi;
}

void* Tag(TagFn fn) { return new TagFn(std::move(fn)); }

grpc::ByteBuffer Serialize(const EchoRequest& request) {
  std::string bytes = request.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string ParseReply(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (buffer.Dump(&slices).ok()) {
    for (const auto& slice : slices)
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  EchoResponse response;
  response.ParseFromString(bytes);
  return response.message();
}

void StartCall(Style style, const std::shared_ptr<grpc::ChannelInterface>& channel,
               grpc::ClientContext* context, CqDriver* driver, std::vector<std::thread>* threads,
               Done done) {
  auto stub = std::shared_ptr<Echo::Stub>(Echo::NewStub(channel));
  EchoRequest request;
  request.set_message("m");
  switch (style) {
    case Style::kSyncUnary:
      threads->emplace_back([=] {
        EchoResponse response;
        grpc::Status status = stub->UnaryEcho(context, request, &response);
        done(status, response.message());
      });
      return;
    case Style::kSyncServerStreaming:
      threads->emplace_back([=] {
        EchoResponse response;
        std::string last;
        auto reader = stub->ServerStreamingEcho(context, request);
        while (reader->Read(&response)) last = response.message();
        grpc::Status status = reader->Finish();
        done(status, last);
      });
      return;
    case Style::kSyncClientStreaming:
      threads->emplace_back([=] {
        EchoResponse response;
        auto writer = stub->ClientStreamingEcho(context, &response);
        writer->Write(request);
        writer->WritesDone();
        grpc::Status status = writer->Finish();
        done(status, response.message());
      });
      return;
    case Style::kSyncBidi:
      threads->emplace_back([=] {
        EchoResponse response;
        std::string last;
        auto stream = stub->BidirectionalStreamingEcho(context);
        stream->Write(request);
        stream->WritesDone();
        while (stream->Read(&response)) last = response.message();
        grpc::Status status = stream->Finish();
        done(status, last);
      });
      return;
    case Style::kAsyncUnary: {
      struct State {
        EchoResponse response;
        grpc::Status status;
        std::unique_ptr<grpc::ClientAsyncResponseReader<EchoResponse>> rpc;
      };
      auto state = std::make_shared<State>();
      state->rpc = stub->AsyncUnaryEcho(context, request, driver->cq());
      state->rpc->Finish(&state->response, &state->status, Tag([state, done](bool) {
        // The reader lives in the call's arena: it goes before the test can
        // destroy the context (and with it the arena).
        state->rpc.reset();
        done(state->status, state->response.message());
      }));
      return;
    }
    case Style::kCallbackUnary: {
      auto response = std::make_shared<EchoResponse>();
      auto req = std::make_shared<EchoRequest>(request);
      stub->async()->UnaryEcho(
          context, req.get(), response.get(),
          [stub, req, response, done](grpc::Status status) { done(status, response->message()); });
      return;
    }
    case Style::kAsyncBidi: {
      struct State {
        EchoRequest request;
        EchoResponse response;
        std::string reply;
        grpc::Status status;
        std::unique_ptr<grpc::ClientAsyncReaderWriter<EchoRequest, EchoResponse>> stream;
      };
      auto state = std::make_shared<State>();
      state->request = request;
      state->stream = stub->PrepareAsyncBidirectionalStreamingEcho(context, driver->cq());
      auto finish = [state, done] {
        state->stream->Finish(&state->status, Tag([state, done](bool) {
          state->stream.reset();  // in the call's arena
          done(state->status, state->reply);
        }));
      };
      state->stream->StartCall(Tag([state, finish](bool) {
        state->stream->Write(state->request, Tag([state, finish](bool) {
                               state->stream->WritesDone(Tag([state, finish](bool) {
                                 state->stream->Read(&state->response,
                                                     Tag([state, finish](bool ok) {
                                                       if (ok)
                                                         state->reply = state->response.message();
                                                       finish();
                                                     }));
                               }));
                             }));
      }));
      return;
    }
    case Style::kCallbackBidi:
      new CallbackBidi(stub.get(), context,
                       [stub, done](const grpc::Status& status, const std::string& reply) {
                         done(status, reply);
                       });
      return;
    case Style::kGenericCallbackUnary: {
      auto generic = std::make_shared<grpc::GenericStub>(channel);
      auto buffers = std::make_shared<std::pair<grpc::ByteBuffer, grpc::ByteBuffer>>();
      buffers->first = Serialize(request);
      generic->UnaryCall(context, "/grpc.examples.echo.Echo/UnaryEcho", grpc::StubOptions(),
                         &buffers->first, &buffers->second,
                         [generic, buffers, done](grpc::Status status) {
                           done(status, status.ok() ? ParseReply(buffers->second) : "");
                         });
      return;
    }
    case Style::kGenericAsyncBidi: {
      struct State {
        grpc::ByteBuffer request;
        grpc::ByteBuffer response;
        std::string reply;
        grpc::Status status;
        std::unique_ptr<grpc::GenericClientAsyncReaderWriter> stream;
      };
      auto state = std::make_shared<State>();
      state->request = Serialize(request);
      grpc::GenericStub generic(channel);
      state->stream =
          generic.PrepareCall(context, "/grpc.examples.echo.Echo/UnaryEcho", driver->cq());
      state->stream->StartCall(Tag([state, done](bool) {
        state->stream->WriteLast(
            state->request, grpc::WriteOptions(), Tag([state, done](bool) {
              state->stream->Read(&state->response, Tag([state, done](bool ok) {
                if (ok) state->reply = ParseReply(state->response);
                state->stream->Finish(&state->status, Tag([state, done](bool) {
                  state->stream.reset();  // in the call's arena
                  done(state->status, state->reply);
                }));
              }));
            }));
      }));
      return;
    }
  }
}

}  // namespace lbkit_test
