#include "pipeline/thread_policy.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

namespace sp {
namespace {

// The calling thread's se.slice (ns) from /proc, or -1 where the kernel does not show it.
long long own_slice_ns() {
  std::ifstream in("/proc/thread-self/sched");
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("se.slice")) continue;
    return std::stoll(line.substr(line.find(':') + 1));
  }
  return -1;
}

// Custom slices for SCHED_OTHER: Linux 6.12 on.
bool kernel_takes_custom_slices() {
  utsname u{};
  if (uname(&u) != 0) return false;
  int major = 0;
  int minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 12);
}

TEST(ThreadPolicy, ThroughputThreadsAreBatchAndTheInteractiveOneIsOrdinaryWithAShortSlice) {
  std::thread([] {
    mark_throughput_thread();
    EXPECT_EQ(sched_getscheduler(0), SCHED_BATCH);
    mark_interactive_thread();
    EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
    if (kernel_takes_custom_slices()) {
      EXPECT_EQ(own_slice_ns(), 100'000);
    }
  }).join();
}

// Whether this process may lower a thread's nice value again (CAP_SYS_NICE or RLIMIT_NICE), tried
// on a throwaway thread.
bool may_lower_nice() {
  bool may = false;
  std::thread([&] {
    const int nice = getpriority(PRIO_PROCESS, 0);
    if (nice >= 19 || setpriority(PRIO_PROCESS, 0, nice + 1) != 0) return;
    may = setpriority(PRIO_PROCESS, 0, nice) == 0;
  }).join();
  return may;
}


TEST(ThreadPolicy, ThroughputThreadsRunBelowTheirCreatorAndPassItOnOnce) {
  const int base = getpriority(PRIO_PROCESS, 0);
  std::thread([&] {
    mark_throughput_thread();
    EXPECT_EQ(getpriority(PRIO_PROCESS, 0), throughput_nice(base));
    mark_throughput_thread();  // already one: unchanged
    EXPECT_EQ(getpriority(PRIO_PROCESS, 0), throughput_nice(base));
    std::thread([&] {  // what librdkafka's threads get from the thread that creates them
      EXPECT_EQ(sched_getscheduler(0), SCHED_BATCH);
      EXPECT_EQ(getpriority(PRIO_PROCESS, 0), throughput_nice(base));
    }).join();
  }).join();
  EXPECT_EQ(getpriority(PRIO_PROCESS, 0), base);  // the creator's own is untouched
}

TEST(ThreadPolicy, AnInteractiveThreadMadeByAThroughputThreadGivesTheStepsBackWhereItMay) {
  const int base = getpriority(PRIO_PROCESS, 0);
  const bool may = may_lower_nice();
  std::thread([&] {
    mark_throughput_thread();
    std::thread([&] {
      mark_interactive_thread();
      EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
      EXPECT_EQ(getpriority(PRIO_PROCESS, 0), may ? base : throughput_nice(base));
    }).join();
  }).join();
}

// A process started under SCHED_BATCH (`chrt -b`): its HTTP thread, created before any mark, is
// not raised above the process's priority.
TEST(ThreadPolicy, AnInteractiveThreadNeverRisesAboveTheProcessPriority) {
  const int base = getpriority(PRIO_PROCESS, 0);
  std::thread([&] {
    set_thread_policy(SCHED_BATCH);  // inherited, not marked
    mark_interactive_thread();
    EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
    EXPECT_EQ(getpriority(PRIO_PROCESS, 0), base);
  }).join();
}

TEST(ThreadPolicy, TheInteractiveThreadKeepsItsNiceValue) {
  std::thread([] {
    ASSERT_EQ(setpriority(PRIO_PROCESS, 0, 3), 0);  // this thread only (Linux)
    mark_interactive_thread();
    EXPECT_EQ(getpriority(PRIO_PROCESS, 0), 3);
    EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
  }).join();
}

TEST(ThreadPolicy, AThroughputScopeRestoresThePolicyAndWhereItMayTheNiceValueItFound) {
  const int base = getpriority(PRIO_PROCESS, 0);
  const bool may = may_lower_nice();
  std::thread([&] {
    {
      const ThroughputScope scope;
      EXPECT_EQ(sched_getscheduler(0), SCHED_BATCH);
      EXPECT_EQ(getpriority(PRIO_PROCESS, 0), throughput_nice(base));
    }
    EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
    EXPECT_EQ(getpriority(PRIO_PROCESS, 0), may ? base : throughput_nice(base));
  }).join();
}

TEST(ThreadPolicy, ANamedThreadShowsItsNameToTopAndPerf) {
  std::string name;
  std::thread t([&] {
    name_thread("sp-test-name");
    std::ifstream comm("/proc/thread-self/comm");
    std::getline(comm, name);
  });
  t.join();
  EXPECT_EQ(name, "sp-test-name");
}

}  // namespace
}  // namespace sp
