// Query API latency during full-speed ingest (issue #18: p99 <= 5 ms per query at 1000 q/s).
// Not a Google Benchmark: the figure is a latency distribution under an open-loop request rate
// while the real pipeline (embedded broker, generator at full speed, runner) ingests, which the
// Google Benchmark loop (closed loop, one timing per iteration batch) cannot express.
// Each query is scheduled at start + i / rate and timed from its scheduled time, so a stalled
// server shows up as latency of the queries behind it (no coordinated omission).
// Usage: bench_query_api [--seconds 20] [--rate 1000] [--ingest-rate 0] [--bootstrap HOST:PORT]
// The client runs in a child process; the server (embedded broker, generator, runner, HTTP) in
// this one.
// --ingest-rate: events per second from the in-process generator (0: as fast as the pipeline
// takes them: the generator sends to the 64 input partitions in turn and stays at most 400 000
// events ahead of what the API reports consumed, so that it never outruns the embedded broker's
// retention of ~5 MiB per partition; keyed by brand and unbounded, it produced twice what the
// pipeline took into three partitions, the consumer's offsets were reset again and again, and
// about one run in five consumed nothing).
// --bootstrap: consume from that broker instead, fed by another process (`socialpulse broker`
// and `socialpulse produce`): no broker and no generator in this process.
// --client-slice 1: the querying thread gets the HTTP thread's short scheduler slice
// (pipeline/thread_policy.h), as a latency-sensitive client would; 0 (default): an ordinary
// thread, whose own wait for a core counts in the latency.
// --client-fifo 1: the querying thread runs SCHED_FIFO (needs root or CAP_SYS_NICE), standing for
// a client on a machine of its own: the figure is then the server's, not the load generator's
// wait for one of the two cores the ingest keeps busy. The server's threads are unchanged.
// --busy-loops N: N more processes, each a busy loop at nice 19 (with --ingest-rate 1000: the
// cores kept busy by something the guest kernel always preempts for the client, to tell the
// virtual machine's stalls from the server's).
// Beside the latency it reports the stalls of the virtual CPUs (benchmarks/vcpu_stalls.h) and the
// p99 of the queries that overlap none of the stalls the guest did not cause.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/config.h"
#include "pipeline/memory_policy.h"
#include "pipeline/service.h"
#include "pipeline/thread_policy.h"
#include "benchmarks/vcpu_stalls.h"
#include "tests/support/test_support.h"

namespace {

using Clock = std::chrono::steady_clock;

// Where one query's time went (ms): the client's own wake-up after its scheduled time, connect,
// request sent to the response's first byte (the server's share: its thread's wait for a core and
// its work), and the rest of the response to close.
struct Phases {
  double wake = 0, connect = 0, first_byte = 0, rest = 0;
};

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// One GET on a new connection (the server closes after each response); the status, or 0.
int get(int port, const std::string& path, std::string* body = nullptr,
        Phases* phases = nullptr) {
  const auto t_start = Clock::now();
  const int fd = sp::testing::loopback_connect(port);
  if (fd < 0) return 0;
  const auto t_connected = Clock::now();
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n";
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string raw;
  char buf[65536];
  auto t_first = Clock::time_point{};
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
    if (raw.empty()) t_first = Clock::now();
    raw.append(buf, size_t(n));
  }
  ::close(fd);
  if (phases) {
    const auto t_end = Clock::now();
    if (raw.empty()) t_first = t_end;
    phases->connect = ms_between(t_start, t_connected);
    phases->first_byte = ms_between(t_connected, t_first);
    phases->rest = ms_between(t_first, t_end);
  }
  if (body) *body = raw.substr(std::min(raw.size(), raw.find("\r\n\r\n") + 4));
  return raw.starts_with("HTTP/1.1 ") ? std::atoi(raw.c_str() + 9) : 0;
}

// A number field of a JSON body (its first "name":), or 0.
double json_number(const std::string& body, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":";
  const auto at = body.find(key);
  return at == std::string::npos ? 0.0 : std::strtod(body.c_str() + at + key.size(), nullptr);
}

// consumed_total and the checkpoint number of the API's current checkpoint.
std::pair<double, double> consumed_total(int port) {
  std::string body;
  if (get(port, "/api/v1/kpis", &body) != 200) return {0, 0};
  return {json_number(body, "consumed_total"), json_number(body, "checkpoint")};
}

// What the API last reported consumed: the pace of the in-process generator at full speed (the
// server process's; the client process only measures).
std::atomic<uint64_t> g_consumed{0};

// consumed_total(port), also handed to the generator's pacer.
std::pair<double, double> pace_generator(int port) {
  const auto reported = consumed_total(port);
  if (reported.first > 0)
    g_consumed.store(static_cast<uint64_t>(reported.first), std::memory_order_relaxed);
  return reported;
}

struct Options {
  double seconds = 20, rate = 1000, ingest_rate = 0;
  std::string bootstrap;
  bool client_slice = false;
  bool client_fifo = false;
  int busy_loops = 0;
};

// What the virtual CPUs' stalls explain: the watchers' stalls during the measurement, and the
// latency of the queries that overlap none of the stalls the guest kernel did not cause (the
// hypervisor did not run the CPU). Reported beside the whole distribution, never instead of it.
template <typename Percentile>
void report_vcpu_stalls(const sp::bench::VcpuStallWatch& watch,
                        const std::vector<std::pair<int64_t, int64_t>>& spans,
                        Percentile percentile) {
  if (watch.cpus() == 0 || spans.empty()) return;
  const auto stalls =
      sp::bench::summarize_vcpu_stalls(watch.stalls(), spans.front().first, spans.back().second);
  std::vector<double> clear;
  clear.reserve(spans.size());
  for (const auto& [due, done] : spans) {
    if (sp::bench::stalled_ns(stalls.host_intervals, due, done) == 0)
      clear.push_back(static_cast<double>(done - due) / 1e6);
  }
  std::printf(
      "  vCPU stalls (a watcher pinned to each of the %d CPUs woke > 10 ms late): %zu the guest "
      "did not cause (the CPU did not run; %.0f ms in all, longest %.1f ms), %zu behind the "
      "guest's own threads (longest %.1f ms)\n"
      "  queries overlapping none of the first kind: %zu of %zu, p99 %.3f ms\n",
      watch.cpus(), stalls.host, stalls.host_ms, stalls.host_max_ms, stalls.guest,
      stalls.guest_max_ms, clear.size(), spans.size(), percentile(clear, 0.99));
}

// The querying client, in a process of its own (forked before any thread exists): an in-process
// client shared the server's address space, so the server's page faults and memory maps held up
// the client's (one mmap lock per process). Prints the figures; the exit status says whether
// p99 <= 5 ms.
int run_client(int port, Options o, const sp::bench::VcpuStallWatch& watch) {
  if (o.client_slice) sp::mark_interactive_thread();
  if (o.client_fifo) {
    sched_param param{};
    param.sched_priority = 1;
    if (const int e = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param); e != 0) {
      std::fprintf(stderr, "bench_query_api: --client-fifo refused (%s); client stays SCHED_OTHER\n",
                   std::strerror(e));
      o.client_fifo = false;
    }
  }
  // Let ingest reach full speed before measuring.
  std::this_thread::sleep_for(std::chrono::seconds(5));

  const std::vector<std::string> queries = {
      "/api/v1/kpis", "/api/v1/kpis?brand=acme",
      "/api/v1/series?brand=acme&kpi=reputation_index&minutes=60",
      "/api/v1/series?brand=globex&kpi=emv&minutes=1440", "/api/v1/alerts"};
  const auto consumed_before = consumed_total(port);
  const auto n = static_cast<size_t>(o.seconds * o.rate);
  std::vector<double> latency_ms;
  latency_ms.reserve(n);
  std::vector<Phases> phases(n);
  std::vector<std::pair<int64_t, int64_t>> spans;  // [scheduled, done] of each query, steady ns
  spans.reserve(n);
  size_t errors = 0;
  const auto start = Clock::now();
  for (size_t i = 0; i < n; ++i) {
    const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(static_cast<double>(i) / o.rate));
    std::this_thread::sleep_until(due);
    phases[i].wake = ms_between(due, Clock::now());
    const std::string& query = queries[i % queries.size()];
    if (const int status = get(port, query, nullptr, &phases[i]); status != 200) {
      if (errors++ < 5) std::fprintf(stderr, "status %d for %s\n", status, query.c_str());
    }
    const auto done = Clock::now();
    latency_ms.push_back(std::chrono::duration<double, std::milli>(done - due).count());
    spans.emplace_back(sp::bench::steady_ns(due), sp::bench::steady_ns(done));
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const auto consumed_after = consumed_total(port);

  auto percentile = [](std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
  };
  auto phase_p99 = [&](double Phases::*field) {
    std::vector<double> v;
    v.reserve(phases.size());
    for (const Phases& ph : phases) v.push_back(ph.*field);
    return percentile(std::move(v), 0.99);
  };
  std::sort(latency_ms.begin(), latency_ms.end());
  auto pct = [&](double p) { return percentile(latency_ms, p); };
  std::printf(
      "bench_query_api: %zu queries at %.0f q/s over %.1f s, errors %zu\n"
      "  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n"
      "  ingest during the run: %.0f events/s (events consumed, from /api/v1/kpis), checkpoints "
      "%.0f..%.0f\n"
      "  p99 per phase, ms: client wake-up %.3f  connect %.3f  first byte (server) %.3f  rest "
      "%.3f\n"
      "  client process: %s\n"
      "  p99 <= 5 ms: %s\n",
      latency_ms.size(), o.rate, elapsed, errors, pct(0.5), pct(0.9), pct(0.99), pct(0.999),
      latency_ms.back(), (consumed_after.first - consumed_before.first) / elapsed,
      consumed_before.second, consumed_after.second, phase_p99(&Phases::wake),
      phase_p99(&Phases::connect), phase_p99(&Phases::first_byte), phase_p99(&Phases::rest),
      o.client_fifo    ? "SCHED_FIFO (a client with a core of its own)"
      : o.client_slice ? "SCHED_OTHER, short slice"
                       : "SCHED_OTHER (waits for a core like any other process)",
      pct(0.99) <= 5.0 ? "yes" : "NO");
  report_vcpu_stalls(watch, spans, percentile);
  std::fflush(stdout);
  return errors == 0 && pct(0.99) <= 5.0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--seconds") o.seconds = std::atof(argv[i + 1]);
    if (a == "--rate") o.rate = std::atof(argv[i + 1]);
    if (a == "--ingest-rate") o.ingest_rate = std::atof(argv[i + 1]);
    if (a == "--bootstrap") o.bootstrap = argv[i + 1];
    if (a == "--client-slice") o.client_slice = std::atoi(argv[i + 1]) != 0;
    if (a == "--client-fifo") o.client_fifo = std::atoi(argv[i + 1]) != 0;
    if (a == "--busy-loops") o.busy_loops = std::atoi(argv[i + 1]);
  }
  // The stall watchers and the client first, while this process has one thread: the client
  // waits for the port on a pipe.
  sp::bench::VcpuStallWatch watch;
  if (!watch.start()) std::fprintf(stderr, "bench_query_api: no vCPU stall watchers\n");
  std::vector<pid_t> busy;
  for (int i = 0; i < o.busy_loops; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::nice(19) == -1) std::_Exit(1);
      for (;;) asm volatile("" ::: "memory");  // spin
    }
    if (pid > 0) busy.push_back(pid);
  }
  int port_pipe[2];
  if (::pipe(port_pipe) != 0) return 1;
  const pid_t client = ::fork();
  if (client < 0) return 1;
  if (client == 0) {
    ::close(port_pipe[1]);
    int port = 0;
    if (::read(port_pipe[0], &port, sizeof port) != sizeof port || port == 0) return 1;
    return run_client(port, o, watch);
  }
  ::close(port_pipe[0]);
  auto tell_client = [&](int port) {
    (void)!::write(port_pipe[1], &port, sizeof port);
    ::close(port_pipe[1]);
  };

  sp::keep_freed_memory_for_reuse();  // as the binary does (app/main.cc)
  sp::Config config;
  config.brands.tracked = {{"acme", true}, {"globex", false}, {"initech", false}};
  config.metrics.listen = "127.0.0.1:0";
  config.state.path = (std::filesystem::temp_directory_path() /
                       ("socialpulse-bench-api-" + std::to_string(::getpid())))
                          .string();
  config.kafka.embedded_partitions = 64;
  sp::ServiceOptions options;
  options.with_traffic = o.bootstrap.empty();
  if (!o.bootstrap.empty()) config.kafka.bootstrap_servers = o.bootstrap;
  options.traffic.rate = o.ingest_rate;
  if (o.ingest_rate == 0) {
    options.traffic.partitions = config.kafka.embedded_partitions;
    options.traffic.max_ahead = 400'000;
    options.traffic.consumed = [] { return g_consumed.load(std::memory_order_relaxed); };
  }
  std::atomic<int> port{0};
  options.on_started = [&](const std::string& url, const std::string&) {
    port = std::atoi(url.c_str() + url.rfind(':') + 1);
  };
  std::atomic<bool> stop{false};
  sp::Status status;
  std::thread service([&] { status = sp::run_service(config, options, stop); });

  // Wait for the first checkpoint on the API.
  const auto ready_deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < ready_deadline && (port == 0 || pace_generator(port).second == 0)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const bool ready = port != 0 && pace_generator(port).second != 0;
  tell_client(ready ? port.load() : 0);
  if (!ready) std::fprintf(stderr, "bench_query_api: no checkpoint within 60 s\n");
  // Pace the generator (20 requests a second of its own, besides the client's 1000) until the
  // client is done.
  int client_status = 0;
  while (::waitpid(client, &client_status, WNOHANG) == 0) {
    if (ready) (void)pace_generator(port);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (const pid_t pid : busy) ::kill(pid, SIGKILL);
  for (const pid_t pid : busy) ::waitpid(pid, nullptr, 0);
  stop = true;
  service.join();
  std::filesystem::remove_all(config.state.path);
  if (!status) std::fprintf(stderr, "service: %s\n", status.error().message.c_str());
  return ready && WIFEXITED(client_status) ? WEXITSTATUS(client_status) : 1;
}
