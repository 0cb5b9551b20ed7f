// Test support: a policy that is pick_first with every pick passed through a
// function of the test's, to attach done-callbacks or metadata, or to record
// what the picker sees.
#ifndef LBKIT_TESTS_COMMON_TEST_POLICY_H_
#define LBKIT_TESTS_COMMON_TEST_POLICY_H_

#include <functional>
#include <string>

#include "lbkit/balancer.h"
#include "lbkit/picker.h"

namespace lbkit_test {

// Gets each pick of pick_first's picker (`result`) and returns the pick to use.
// Runs wherever Picker::Pick runs: thread-safe, quick, no blocking.
using PickWrapper =
    std::function<lbkit::PickResult(const lbkit::PickArgs& args, lbkit::PickResult result)>;

// Registers (or replaces) the policy `name`: pick_first, config `{}`, whose
// picks go through `wrap`.
grpc::Status RegisterWrappedPickFirst(const std::string& name, PickWrapper wrap);

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_COMMON_TEST_POLICY_H_
