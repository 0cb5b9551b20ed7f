// Test support: the threads of this process, to check that something adds
// none (Linux: the entries of /proc/self/task).
#ifndef LBKIT_TESTS_COMMON_THREAD_COUNT_H_
#define LBKIT_TESTS_COMMON_THREAD_COUNT_H_

#include <dirent.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

namespace lbkit_test {

// The names of this process's threads now, one per thread, sorted; empty if
// /proc is not readable.
inline std::vector<std::string> ThreadNameList() {
  std::vector<std::string> names;
  if (DIR* tasks = opendir("/proc/self/task")) {
    while (dirent* entry = readdir(tasks)) {
      if (entry->d_name[0] == '.') continue;
      std::ifstream comm(std::string("/proc/self/task/") + entry->d_name + "/comm");
      std::string name;
      std::getline(comm, name);
      names.push_back(name);
    }
    closedir(tasks);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The same, as one line, for a failure message.
inline std::string ThreadNames() {
  std::string text;
  for (const std::string& name : ThreadNameList()) text += name + " ";
  return text;
}

// How many of this process's threads are named `name` now.
inline size_t CountThreadsNamed(const std::string& name) {
  std::vector<std::string> names = ThreadNameList();
  return static_cast<size_t>(std::count(names.begin(), names.end(), name));
}

// gRPC's timer threads ("grpc_global_timer"): a process-wide pool that gRPC
// grows by a thread or two while many timers fire at once (a thread busy
// running them starts another to watch the next deadline), and shrinks
// again. A test that something adds no thread of its own leaves them out.
constexpr char kGrpcTimerThreads[] = "grpc_global_tim";

// The number of threads of this process now, leaving out those whose name
// starts with `except` (when not empty); -1 if /proc is not readable.
inline int ThreadCount(const std::string& except = "") {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    if (!except.empty()) {
      std::ifstream comm(std::string("/proc/self/task/") + entry->d_name + "/comm");
      std::string name;
      if (std::getline(comm, name) && name.rfind(except, 0) == 0) continue;
    }
    ++count;
  }
  closedir(tasks);
  return count;
}

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_COMMON_THREAD_COUNT_H_
