// Test support: how many threads this process has, to check that something
// adds none (Linux: the entries of /proc/self/task).
#ifndef LBKIT_TESTS_COMMON_THREAD_COUNT_H_
#define LBKIT_TESTS_COMMON_THREAD_COUNT_H_

#include <dirent.h>

#include <cstring>

namespace lbkit_test {

// The number of threads of this process now; -1 if /proc is not readable.
inline int ThreadCount() {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(tasks)) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) ++count;
  }
  closedir(tasks);
  return count;
}

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_COMMON_THREAD_COUNT_H_
