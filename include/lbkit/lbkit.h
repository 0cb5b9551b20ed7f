// Umbrella header: everything a program or a policy needs.
#ifndef LBKIT_LBKIT_H_
#define LBKIT_LBKIT_H_

#include "lbkit/balancer.h"           // IWYU pragma: export
#include "lbkit/channel.h"            // IWYU pragma: export
#include "lbkit/connectivity.h"       // IWYU pragma: export
#include "lbkit/dns_resolver.h"       // IWYU pragma: export
#include "lbkit/endpoint_sharding.h"  // IWYU pragma: export
#include "lbkit/etcd.h"               // IWYU pragma: export
#include "lbkit/picker.h"             // IWYU pragma: export
#include "lbkit/registry.h"           // IWYU pragma: export
#include "lbkit/resolver.h"           // IWYU pragma: export
#include "lbkit/service_config.h"     // IWYU pragma: export
#include "lbkit/version.h"            // IWYU pragma: export

#endif  // LBKIT_LBKIT_H_
