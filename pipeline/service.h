#pragma once
// Wires one socialpulse process: optional embedded broker, HTTP endpoints, the runner, and for
// the demo an in-process traffic generator. Also the standalone load generator of `produce`.
#include <atomic>
#include <functional>
#include <string>

#include "base/result.h"
#include "pipeline/config.h"
#include "pipeline/event_generator.h"
#include "pipeline/runner.h"

namespace sp {

struct TrafficOptions {
  GeneratorOptions generator;
  double rate = 500;        // events per second of event time (0 = as fast as possible)
  uint64_t events = 0;      // 0 = until stopped
  Millis backfill{0};       // event time starts this far in the past (on a minute boundary)...
  double time_scale = 1.0;  // ...and runs this much faster than the wall clock until it is now,
                            // producing time_scale times `rate` events per wall-clock second
  // Benchmarks at full speed (rate 0). partitions > 0: events go to partitions 0..partitions-1 in
  // turn instead of by key (the demo's key is the brand: three partitions would carry all). With
  // consumed and max_ahead set, the generator waits while it is more than max_ahead events ahead
  // of consumed() (what the pipeline reports consumed), so that it keeps the pipeline busy
  // without outrunning the embedded broker's retention (~5 MiB per partition).
  int partitions = 0;
  std::function<uint64_t()> consumed;
  uint64_t max_ahead = 0;
};

struct ServiceOptions {
  bool with_traffic = false;  // demo: generate traffic into the configured input topic
  TrafficOptions traffic;
  Millis duration{0};  // 0 = until stopped
  std::function<void(const std::string& metrics_url, const std::string& bootstrap)> on_started;
  bool narrate = false;          // demo: tell the KPIs' story on stdout (demo_narrator.h)
  RunnerTestHooks runner_hooks;  // tests only
  // SIGHUP (SPEC 2 v2): each increment of *reload_requests re-reads the configuration through
  // reload_config and applies its `roi` section (spend, currency) without a restart. A file that
  // does not load, or whose spend names brands or channels the running instance does not have,
  // is logged and changes nothing. Both unset: no reload.
  const std::atomic<uint64_t>* reload_requests = nullptr;
  std::function<Result<Config>()> reload_config;
};

// The roi section of `reloaded` for an instance running `running`, or why it cannot apply:
// spend may only name the running instance's brands and channels (its metric labels).
Result<SpendValues> reloadable_spend(const Config& running, const Config& reloaded);

// Runs until `stop` (exit code 0 semantics) or a fatal error.
Status run_service(const Config& config, const ServiceOptions& options, std::atomic<bool>& stop);

// Produces synthetic traffic to `bootstrap`/`topic` until done or `stop`.
Status produce_traffic(const std::string& bootstrap, const std::string& topic,
                       const std::map<std::string, std::string>& properties,
                       const TrafficOptions& options, const std::atomic<bool>& stop);

// `produce --scenario seasonal`: the SeasonalScenario's `history` up to now, as fast as the broker
// takes it, then returns; each injected crisis is logged (the ground truth of a detection test).
Status produce_seasonal(const std::string& bootstrap, const std::string& topic,
                        const std::map<std::string, std::string>& properties,
                        const SeasonalOptions& options, Millis history,
                        const std::atomic<bool>& stop);

// Standalone embedded broker until `stop`; `on_started` receives the bootstrap address.
Status run_broker(const Config& config, int partitions, std::atomic<bool>& stop,
                  const std::function<void(const std::string&)>& on_started);

}  // namespace sp
