#pragma once
// Scheduling of the throughput threads. The pipeline, the source worker, librdkafka's threads
// and the demo's traffic generator run flat out during a backlog; the HTTP thread, and a client
// on the same machine, must still get a core within milliseconds (issue #18: p99 <= 5 ms per query
// during full-speed ingest). Two levers, both on the throughput threads only:
// - SCHED_BATCH: they never preempt a waking thread;
// - nice +10 (kThroughputNice): a thread of ordinary priority (the HTTP event loop, a scraper,
//   a query client) that wakes up gets a core ~9 times sooner in the fair scheduler's terms. On a
//   machine where nothing else wants the CPU they keep all of it: nice only weighs contention.
// Threads inherit the policy and nice value of the thread that creates them, which is how
// librdkafka's, RocksDB's and the embedded broker's threads become throughput threads too.
// Without CAP_SYS_NICE a thread can raise its nice value but never lower it again: a thread that
// must stay interactive is created before its creator is marked (run_service starts the HTTP
// server first). Best effort: where the platform refuses, nothing else changes.
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>

#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#endif

namespace sp {

inline void set_thread_policy([[maybe_unused]] int policy) {
#if defined(__linux__)
  sched_param param{};
  param.sched_priority = 0;
  (void)pthread_setschedparam(pthread_self(), policy, &param);
#endif
}

// How many nice steps below the process's first marked thread the throughput threads run.
inline constexpr int kThroughputNice = 10;

// The nice value a throughput thread gets in a process whose base nice value is `base` (19 is the
// lowest priority there is).
constexpr int throughput_nice(int base) { return std::min(19, base + kThroughputNice); }

namespace thread_policy_detail {
inline constexpr int kUnset = 100;
// The nice value of the first thread marked a throughput thread, before the mark: the priority
// the process's interactive threads have.
inline std::atomic<int> base_nice{kUnset};
}  // namespace thread_policy_detail

// The calling thread (and the threads it creates from now on) are throughput threads: SCHED_BATCH
// and kThroughputNice below the process's base. Marking one again changes nothing.
inline void mark_throughput_thread() {
#if defined(__linux__)
  set_thread_policy(SCHED_BATCH);
  // getpriority and setpriority with PRIO_PROCESS and 0 act on the calling thread on Linux.
  const int nice = getpriority(PRIO_PROCESS, 0);
  int base = thread_policy_detail::kUnset;
  (void)thread_policy_detail::base_nice.compare_exchange_strong(base, nice);
  base = thread_policy_detail::base_nice.load();
  const int target = throughput_nice(base);
  if (nice < target) (void)setpriority(PRIO_PROCESS, 0, target);
#endif
}

// The calling thread answers requests: the ordinary time-sharing policy, whatever its creator's,
// with a short time slice. Linux's EEVDF scheduler (6.6 on) gives a thread an earlier virtual
// deadline the shorter its slice, and since 6.12 lets a waking thread with a shorter slice preempt
// the running one: a request then waits for the current thread's next check, not for its whole
// slice. Older kernels ignore sched_runtime for SCHED_OTHER; unprivileged threads may set it.
// A thread created by a throughput thread also goes back to the process's base nice value where it
// may (CAP_SYS_NICE); otherwise, and for any other thread, its nice value is kept.
inline void mark_interactive_thread() {
#if defined(__linux__)
  // Created by a throughput thread: back to the process's base where it may.
  const bool was_throughput = sched_getscheduler(0) == SCHED_BATCH;
  set_thread_policy(SCHED_OTHER);
  const int base = thread_policy_detail::base_nice.load();
  if (was_throughput && base != thread_policy_detail::kUnset &&
      getpriority(PRIO_PROCESS, 0) > base) {
    (void)setpriority(PRIO_PROCESS, 0, base);
  }
#else
  set_thread_policy(SCHED_OTHER);
#endif
#if defined(__linux__) && defined(SYS_sched_setattr)
  struct {  // struct sched_attr, SCHED_ATTR_SIZE_VER0 (glibc 2.36 has no wrapper)
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
  } attr{};
  attr.size = sizeof attr;
  attr.sched_policy = SCHED_OTHER;
  attr.sched_nice = getpriority(PRIO_PROCESS, 0);  // this thread's, as set above: kept
  attr.sched_runtime = 100'000;                    // ns: the shortest slice the kernel accepts
  (void)syscall(SYS_sched_setattr, 0, &attr, 0U);
#endif
}

// Names the calling thread for `top -H`, perf and /proc/<pid>/task/*/comm (at most 15 characters).
// Never called on the main thread: its name is the process name that ps and pkill match.
inline void name_thread([[maybe_unused]] const char* name) {
#if defined(__linux__)
  (void)pthread_setname_np(pthread_self(), name);
#endif
}

// Makes the calling thread a throughput thread for a scope, then restores its policy and, where
// it may (CAP_SYS_NICE), its nice value (a test thread that runs a service returns to what it was;
// without the capability it keeps the throughput nice value).
class ThroughputScope {
 public:
  ThroughputScope() {
    sched_param param{};
    if (pthread_getschedparam(pthread_self(), &policy_, &param) != 0) policy_ = SCHED_OTHER;
#if defined(__linux__)
    nice_ = getpriority(PRIO_PROCESS, 0);
#endif
    mark_throughput_thread();
  }
  ~ThroughputScope() {
    set_thread_policy(policy_);
#if defined(__linux__)
    (void)setpriority(PRIO_PROCESS, 0, nice_);
#endif
  }
  ThroughputScope(const ThroughputScope&) = delete;
  ThroughputScope& operator=(const ThroughputScope&) = delete;

 private:
  int policy_ = SCHED_OTHER;
  int nice_ = 0;
};

}  // namespace sp
