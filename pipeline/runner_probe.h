#pragma once
// The runner's metrics: what it observes itself (message append -> /metrics latency, checkpoint
// durations and failures) and the /metrics snapshot it publishes after every checkpoint, with the
// Topology's counts and operator metrics around the runner's own families. Latency and
// checkpoint histograms are process-local observations, not state: they start empty after a
// restart.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "operators/keyed_state.h"
#include "operators/operator.h"
#include "pipeline/metrics_registry.h"
#include "pipeline/source_worker.h"
#include "pipeline/timestamp_sample.h"

namespace sp {

class ConsumerGroup;
class CounterContinuity;
class HttpServer;
class PartitionTable;
class Topology;

// What the state changelog adds to /metrics.
struct ChangelogStats {
  uint64_t bytes_total = 0;
  size_t partitions_assigned = 0;
  size_t partitions_restoring = 0;
};

// Contract: one thread calls; without an HttpServer nothing is published (publishing() false).
class RunnerProbe {
 public:
  // `label_topics`: consumer lag series are labelled topic/partition (several input topics).
  RunnerProbe(HttpServer* http, size_t max_series, bool label_topics);

  bool publishing() const { return http_ != nullptr; }

  // Hot path: keeps a uniform sample of the append timestamps (ms since the epoch, <= 0: none)
  // of the messages consumed since the last publish.
  void sample_latency(int64_t append_ms) {
    latency_samples_.offer([append_ms] { return append_ms; });
  }
  void checkpoint_written(std::chrono::steady_clock::duration took);
  // Counts a checkpoint that could not be written and republishes the last snapshot with it.
  void checkpoint_failed();
  // ---- /readyz facts (pipeline/readiness.h); the HTTP thread judges them ----
  void report_state(size_t assigned, bool checkpoint_failing, bool restoring, bool stopping,
                    bool failed);
  // Consumed messages are progress, and proof that a broker answers.
  void batch_consumed(const SourceWorker::Batch& batch);
  void broker_reachable();
  // librdkafka's error_cb (source thread): logged; every broker down is a readiness fact.
  void kafka_error(int err, const char* reason);
  // librdkafka's statistics JSON: a broker in state UP ends a broker loss even when no message
  // flows (an idle topic after an outage).
  void client_stats(std::string_view json);
  // Whether any owned partition has messages left (progress against lag).
  void report_lag(const PartitionTable& partitions, const ConsumerGroup& consumer);

  // The metrics.max_series admission order (metrics_registry.h) is instance state: restored once
  // at start, written with a checkpoint when it grew. Keys `series/admitted/<chunk>`, instance
  // scope.
  Status restore_series(StateReader& in);
  void checkpoint_series(StateWriter& out);

  // The alert records of a committed checkpoint (topology.pending()): the query API serves them
  // with the next published snapshot.
  void alerts_committed(const std::vector<OutputRecord>& records);

  // How long one assigned partition took to restore (local store or changelog).
  void partition_restored(std::chrono::steady_clock::duration took);

  // A new snapshot for /metrics: the Topology's metrics, the consumer lag of the owned
  // partitions and the runner's own (state_bytes: in memory plus RocksDB), built now (right after
  // a checkpoint's commit: the values it stored) and exposed by publish_prepared(), once the
  // changelog has that checkpoint. The pipeline goes on consuming meanwhile, and what it counts
  // must not show before it is stored: a kill -9 restarts from the stored checkpoint, and a
  // counter that had shown more would go down.
  void prepare_metrics(const Topology& topology, const CounterContinuity& counters,
                       const PartitionTable& partitions, const ConsumerGroup& consumer,
                       uint64_t state_bytes, const ChangelogStats& changelog);
  // Exposes the prepared snapshot (nothing when none is); its sampled latencies are observed
  // against the wall clock now: the values are exposed from this moment on.
  void publish_prepared();
  // Forgets the prepared snapshot (its checkpoint did not reach the changelog): its alerts and
  // latency samples go with the next one.
  void drop_prepared();

  // Shutdown (issue #15 item 4): an instance that leaves takes its series with it, so its last
  // increments count only once a scraper has read them. Waits until the latest snapshot was
  // served, while a scraper is expected (two scrape intervals after its last scrape, measured
  // from the last two) and until `deadline`; at once when nothing ever scraped. True: served.
  bool wait_final_scrape(std::chrono::steady_clock::time_point deadline) const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // bounds.size() + 1
    double sum = 0;
    explicit Histogram(std::vector<double> b);
    void observe(double v);
  };

  static constexpr std::string_view kLatencyFamily = "socialpulse_event_latency_seconds";

  // While checkpoints fail, /metrics keeps the last stored state (a counter must not run ahead
  // of what a crash would leave) but the failure count itself has to be visible to alerting.
  void publish_checkpoint_failures();

  static constexpr size_t kLatencySampleCap = 1 << 14;
  HttpServer* http_;
  const bool label_topics_;
  MetricsRegistry registry_;
  TimestampSample latency_samples_{kLatencySampleCap, 7};  // append times, ms since the epoch
  Histogram latency_;
  Histogram checkpoint_duration_;
  Histogram restore_duration_;
  uint64_t checkpoint_failures_ = 0;
  std::shared_ptr<const MetricsSnapshot> last_snapshot_;
  std::vector<std::string> alerts_;  // committed, not yet in a snapshot
  // prepare_metrics() -> publish_prepared(): the snapshot (owned here alone until published),
  // its alerts and its latency samples.
  std::shared_ptr<const MetricsSnapshot> prepared_;
  std::vector<std::string> prepared_alerts_;
  std::vector<int64_t> prepared_latency_samples_;
};

}  // namespace sp
