// Times a virtual CPU did not run at all, measured beside a benchmark (issue #18).
// On a virtual machine the hypervisor may stop a virtual CPU for a while (on the 2-core reference
// VM: ~100 ms at a time whenever both cores are busy, even with two nice-19 busy loops as the only
// load). Everything on that CPU then waits, whatever its priority, and a latency benchmark sees it
// as its own tail. A watcher process pinned to each CPU sleeps 1 ms again and again; a wake-up more
// than `threshold` late is a stall. Its own scheduler statistics tell the two causes apart: if the
// guest kernel kept the watcher runnable for most of the stall (run_delay in
// /proc/thread-self/schedstat), the guest's own threads held the CPU; if not, the CPU itself did
// not run (the guest never saw the watcher waiting). Header-only, for the benchmarks.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

namespace sp::bench {

struct VcpuStall {
  int64_t start_ns = 0;  // steady_clock (CLOCK_MONOTONIC, the same in every process)
  int64_t end_ns = 0;
  int cpu = 0;
  bool guest_waited = false;  // the guest kept the watcher runnable for most of it
  double ms() const { return static_cast<double>(end_ns - start_ns) / 1e6; }
};

// A steady_clock time as the watchers record it (ns since the clock's epoch).
inline int64_t steady_ns(
    std::chrono::steady_clock::time_point t = std::chrono::steady_clock::now()) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// One watcher process per CPU, started with start() before the caller has threads (fork).
// The stalls are in memory shared with every process forked after start(), so a client
// process can read them too.
class VcpuStallWatch {
 public:
  static constexpr int kMaxCpus = 8;
  static constexpr int kMaxStalls = 4096;

  VcpuStallWatch() = default;
  VcpuStallWatch(const VcpuStallWatch&) = delete;
  VcpuStallWatch& operator=(const VcpuStallWatch&) = delete;
  ~VcpuStallWatch() { stop(); }

  // Starts the watchers; false (and nothing runs) when the shared memory or a fork fails.
  bool start(std::chrono::milliseconds threshold = std::chrono::milliseconds(10)) {
    void* mem = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return false;
    shared_ = new (mem) Shared();
    owner_ = ::getpid();
    cpus_ = std::min<int>(kMaxCpus, static_cast<int>(std::thread::hardware_concurrency()));
    for (int cpu = 0; cpu < cpus_; ++cpu) {
      const pid_t pid = ::fork();
      if (pid < 0) return false;
      if (pid == 0) {
        watch(cpu, threshold.count() * 1'000'000);
        std::_Exit(0);
      }
      pids_.push_back(pid);
    }
    return true;
  }

  // Stops the watchers (only in the process that started them: a process forked later shares
  // the watchers, not their ownership).
  void stop() {
    if (shared_ == nullptr || pids_.empty() || ::getpid() != owner_) return;
    shared_->stop.store(true, std::memory_order_release);
    for (const pid_t pid : pids_) ::waitpid(pid, nullptr, 0);
    pids_.clear();
  }

  // Watching is on from start() until disarmed; disarmed, the watchers only check every 50 ms
  // whether to watch again (so that they cost nothing measurable beside a throughput figure).
  void arm(bool on) {
    if (shared_ != nullptr) shared_->armed.store(on, std::memory_order_release);
  }

  // The stalls recorded so far, every CPU's.
  std::vector<VcpuStall> stalls() const {
    std::vector<VcpuStall> out;
    if (shared_ == nullptr) return out;
    for (int cpu = 0; cpu < cpus_; ++cpu) {
      const uint32_t n =
          std::min<uint32_t>(kMaxStalls, shared_->count[cpu].load(std::memory_order_acquire));
      out.insert(out.end(), shared_->stalls[cpu], shared_->stalls[cpu] + n);
    }
    return out;
  }

  int cpus() const { return cpus_; }

 private:
  struct Shared {
    std::atomic<bool> stop{false};
    std::atomic<bool> armed{true};
    std::atomic<uint32_t> count[kMaxCpus]{};
    VcpuStall stalls[kMaxCpus][kMaxStalls];
  };

  // run_delay (ns spent runnable but not running) of the calling thread, or -1.
  static int64_t run_delay_ns(int fd) {
    char buf[128];
    if (::lseek(fd, 0, SEEK_SET) != 0) return -1;
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char* rest = nullptr;
    (void)std::strtoll(buf, &rest, 10);  // time on the CPU
    return std::strtoll(rest, nullptr, 10);
  }

  void watch(int cpu, int64_t threshold_ns) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0) return;
    const int fd = ::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    constexpr int64_t kSleepNs = 1'000'000;
    while (!shared_->stop.load(std::memory_order_acquire)) {
      if (!shared_->armed.load(std::memory_order_acquire)) {
        const timespec idle{0, 50'000'000};
        ::nanosleep(&idle, nullptr);
        continue;
      }
      const int64_t delay_before = fd >= 0 ? run_delay_ns(fd) : -1;
      const int64_t t0 = steady_ns();
      const timespec pause{0, kSleepNs};
      ::nanosleep(&pause, nullptr);
      const int64_t t1 = steady_ns();
      const int64_t late = t1 - t0 - kSleepNs;
      if (late <= threshold_ns) continue;
      const int64_t delay_after = fd >= 0 ? run_delay_ns(fd) : -1;
      VcpuStall s;
      s.start_ns = t0 + kSleepNs;
      s.end_ns = t1;
      s.cpu = cpu;
      s.guest_waited = delay_before < 0 || delay_after < 0 || (delay_after - delay_before) * 2 > late;
      const uint32_t i = shared_->count[cpu].load(std::memory_order_relaxed);
      if (i >= kMaxStalls) continue;
      shared_->stalls[cpu][i] = s;
      shared_->count[cpu].store(i + 1, std::memory_order_release);
    }
    if (fd >= 0) ::close(fd);
  }

  Shared* shared_ = nullptr;
  pid_t owner_ = 0;
  int cpus_ = 0;
  std::vector<pid_t> pids_;
};

// The stalls of every CPU that overlap [from_ns, to_ns], counted by cause; those the guest did
// not cause also as sorted disjoint intervals (for stalled_ns()).
struct VcpuStallSummary {
  size_t host = 0;   // the CPU did not run
  size_t guest = 0;  // behind the guest's own threads
  double host_ms = 0, host_max_ms = 0, guest_max_ms = 0;
  std::vector<std::pair<int64_t, int64_t>> host_intervals;
};

inline VcpuStallSummary summarize_vcpu_stalls(std::vector<VcpuStall> stalls, int64_t from_ns,
                                              int64_t to_ns) {
  std::sort(stalls.begin(), stalls.end(),
            [](const VcpuStall& a, const VcpuStall& b) { return a.start_ns < b.start_ns; });
  VcpuStallSummary out;
  for (const VcpuStall& st : stalls) {
    if (st.end_ns < from_ns || st.start_ns > to_ns) continue;
    if (st.guest_waited) {
      ++out.guest;
      out.guest_max_ms = std::max(out.guest_max_ms, st.ms());
      continue;
    }
    ++out.host;
    out.host_ms += st.ms();
    out.host_max_ms = std::max(out.host_max_ms, st.ms());
    auto& merged = out.host_intervals;
    if (!merged.empty() && st.start_ns <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, st.end_ns);
    } else {
      merged.emplace_back(st.start_ns, st.end_ns);
    }
  }
  return out;
}

// Nanoseconds of [from, to] inside `merged` (VcpuStallSummary::host_intervals).
inline int64_t stalled_ns(const std::vector<std::pair<int64_t, int64_t>>& merged, int64_t from,
                          int64_t to) {
  int64_t sum = 0;
  for (const auto& [a, b] : merged) {
    if (a >= to) break;
    if (b > from) sum += std::min(b, to) - std::max(a, from);
  }
  return sum;
}

}  // namespace sp::bench
