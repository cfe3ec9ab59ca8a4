#pragma once
// Scheduling of the throughput threads. The pipeline, the source worker, librdkafka's threads
// and the demo's traffic generator run flat out during a backlog; the HTTP thread must still
// answer a query or a scrape within milliseconds (issue #18: p99 <= 5 ms during full-speed
// ingest). Linux's SCHED_BATCH leaves those threads their full share of CPU but lets a waking
// interactive thread (the HTTP event loop, SCHED_OTHER) preempt them at once instead of waiting
// for a scheduler period. Threads inherit the policy of the thread that creates them, which is
// how librdkafka's and the embedded broker's threads become throughput threads too.
// Best effort: where the platform refuses, nothing else changes.
#include <pthread.h>
#include <sched.h>

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

// The calling thread (and the threads it creates from now on) are throughput threads.
inline void mark_throughput_thread() {
#if defined(__linux__)
  set_thread_policy(SCHED_BATCH);
#endif
}

// The calling thread answers requests: the ordinary time-sharing policy, whatever its creator's,
// with a short time slice. Linux's EEVDF scheduler (6.6 on) gives a thread an earlier virtual
// deadline the shorter its slice, and since 6.12 lets a waking thread with a shorter slice preempt
// the running one: a request then waits for the current thread's next check, not for its whole
// slice (the throughput threads keep the default slice and their CPU share: nice is unchanged).
// Older kernels ignore sched_runtime for SCHED_OTHER; unprivileged threads may set it.
inline void mark_interactive_thread() {
  set_thread_policy(SCHED_OTHER);
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
  attr.sched_nice = getpriority(PRIO_PROCESS, 0);  // this thread's: kept
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

// Makes the calling thread a throughput thread for a scope, then restores its policy (a test
// thread that runs a service returns to what it was).
class ThroughputScope {
 public:
  ThroughputScope() {
    sched_param param{};
    if (pthread_getschedparam(pthread_self(), &policy_, &param) != 0) policy_ = SCHED_OTHER;
    mark_throughput_thread();
  }
  ~ThroughputScope() { set_thread_policy(policy_); }
  ThroughputScope(const ThroughputScope&) = delete;
  ThroughputScope& operator=(const ThroughputScope&) = delete;

 private:
  int policy_ = SCHED_OTHER;
};

}  // namespace sp
