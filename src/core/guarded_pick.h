// GuardedPick: the data path's one call into a policy's Picker. Pick must not
// throw (picker.h), but one that does fails that call, not the process.
// Zero-cost exception handling keeps the call as fast as a bare Pick when
// nothing throws (lbkit-pick-benchmark's BM_SlotReadGuardedPick).
#ifndef LBKIT_SRC_CORE_GUARDED_PICK_H_
#define LBKIT_SRC_CORE_GUARDED_PICK_H_

#include "lbkit/picker.h"

namespace lbkit {
namespace internal {

// Inside a catch block: the pick result for a Pick that threw. Fails the call
// with INTERNAL naming the picker's type and what it threw; logs it (at most
// one line a second, with the number of throws in between).
[[gnu::cold, gnu::noinline]] PickResult PickThrew(const Picker& picker) noexcept;

inline PickResult GuardedPick(const Picker& picker, const PickArgs& args) {
  try {
    return picker.Pick(args);
  } catch (...) {
    return PickThrew(picker);
  }
}

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_GUARDED_PICK_H_
