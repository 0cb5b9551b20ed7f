// Connectivity states, as gRPC defines them for channels and subchannels.
//
// Thread-safety: plain values and pure functions; safe everywhere.
#ifndef LBKIT_CONNECTIVITY_H_
#define LBKIT_CONNECTIVITY_H_

#include "lbkit/export.h"

namespace lbkit {

enum class ConnectivityState {
  kIdle,              // no connection and none wanted yet
  kConnecting,        // an attempt is under way
  kReady,             // calls can be placed
  kTransientFailure,  // attempts failed; retrying under backoff
  kShutdown,          // gone for good
};

// "IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE" or "SHUTDOWN".
LBKIT_EXPORT const char* ToString(ConnectivityState state);

}  // namespace lbkit

#endif  // LBKIT_CONNECTIVITY_H_
