// The data path's guards around policy code: GuardedPick, the one call into a
// policy's Picker, and RunDone, the one call of a pick's done-callback.
// Neither may throw (picker.h), but one that does fails that call (Pick) or
// is logged (done-callback), never the process.
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

// `threw`, if not null, is set when Pick threw: the call then fails even if it
// is wait-for-ready (a throw is a bug in the picker, not "not ready yet", and
// a picker that always throws would otherwise hold the call until its
// deadline, or for ever).
inline PickResult GuardedPick(const Picker& picker, const PickArgs& args, bool* threw = nullptr) {
  try {
    return picker.Pick(args);
  } catch (...) {
    if (threw != nullptr) *threw = true;
    return PickThrew(picker);
  }
}

// Inside a catch block: logs that a done-callback threw (rate-limited as
// PickThrew's lines are). The call's own status is unaffected.
[[gnu::cold, gnu::noinline]] void DoneThrew() noexcept;

// Runs `done` with `info` if it is set; what it throws is logged, not
// propagated (done-callbacks run inside gRPC's completion-queue and callback
// threads, destructors and lbkit's I/O thread, none of which may see it).
inline void RunDone(const CallDoneCallback& done, const CallDoneInfo& info) noexcept {
  if (!done) return;
  try {
    done(info);
  } catch (...) {
    DoneThrew();
  }
}

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_GUARDED_PICK_H_
