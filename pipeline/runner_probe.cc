#include "pipeline/runner_probe.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <thread>

#include "operators/topology.h"
#include "pipeline/consumer_group.h"
#include "pipeline/counter_continuity.h"
#include "pipeline/http_server.h"
#include "pipeline/partition_table.h"
#include "pipeline/version.h"

namespace sp {

RunnerProbe::Histogram::Histogram(std::vector<double> b)
    : bounds(std::move(b)), counts(bounds.size() + 1) {}

void RunnerProbe::Histogram::observe(double v) {
  const auto i =
      static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin());
  ++counts[i];
  sum += v;
}

RunnerProbe::RunnerProbe(HttpServer* http, size_t max_series, bool label_topics)
    : http_(http),
      label_topics_(label_topics),
      registry_(max_series),
      latency_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 5, 10, 30, 60}),
      checkpoint_duration_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}),
      restore_duration_({0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}) {}

namespace {
// `series/admitted/<8 hex digits>`: chunk n of the admission order.
constexpr std::string_view kAdmittedPrefix = "series/admitted/";
}  // namespace

Status RunnerProbe::restore_series(StateReader& in) {
  ScopedStateReader scoped(in, state_scope(CounterContinuity::kOwner, kGlobalPartition));
  std::vector<std::string> chunks;
  // Fixed-width hex: key order is chunk order.
  auto scanned =
      scoped.scan(kAdmittedPrefix, [&](std::string_view, std::string_view bytes) -> Status {
        chunks.emplace_back(bytes);
        return {};
      });
  if (!scanned) return scanned;
  return registry_.restore_admitted(chunks);
}

void RunnerProbe::checkpoint_series(StateWriter& out) {
  // Only the chunks that grew. A failed commit loses them until the series set grows again; a
  // restart then re-admits the current series in exposition order, where they came from anyway.
  if (!registry_.admitted_changed()) return;
  ScopedStateWriter scoped(out, state_scope(CounterContinuity::kOwner, kGlobalPartition));
  char key[40];
  for (size_t c = registry_.first_unwritten_chunk(); c < registry_.admitted_chunks(); ++c) {
    std::snprintf(key, sizeof key, "%.*s%08zx", static_cast<int>(kAdmittedPrefix.size()),
                  kAdmittedPrefix.data(), c);
    scoped.put(key, registry_.encode_admitted_chunk(c));
  }
  registry_.mark_admitted_written();
}

void RunnerProbe::report_state(size_t assigned, bool checkpoint_failing, bool restoring,
                               bool stopping, bool failed) {
  if (http_ == nullptr) return;
  Readiness& r = http_->readiness();
  r.set_assigned_partitions(assigned);
  r.set_checkpoint_failing(checkpoint_failing);
  r.set_restoring(restoring);
  if (stopping) r.set_stopping();
  if (failed) r.set_failed();
}

void RunnerProbe::batch_consumed(const SourceWorker::Batch& batch) {
  if (http_ == nullptr) return;
  const auto items = batch.items();
  const bool consumed = std::any_of(items.begin(), items.end(), [](const auto& item) {
    return item.outcome != SourceWorker::Outcome::kafka_error;
  });
  if (consumed) {
    http_->readiness().note_progress(std::chrono::steady_clock::now());
    http_->readiness().broker_reachable();
  }
}

void RunnerProbe::broker_reachable() {
  if (http_ != nullptr) http_->readiness().broker_reachable();
}

void RunnerProbe::kafka_error(int err, const char* reason) {
  spdlog::warn("msg=\"kafka client error\" error=\"{}\" reason=\"{}\"",
               rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)), reason);
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && http_ != nullptr)
    http_->readiness().broker_lost(std::chrono::steady_clock::now());
}

void RunnerProbe::client_stats(std::string_view json) {
  if (http_ == nullptr || !http_->readiness().is_broker_lost()) return;
  // Each broker object reads `"source":"<kind>", "state":"<STATE>"`; the client's internal
  // pseudo-broker (source "internal") is always UP and proves nothing. Nothing else in the JSON
  // has that spelling (the group's is `"state": "up"`, partitions have "fetch_state").
  constexpr std::string_view kUp = R"("state":"UP")";
  constexpr std::string_view kInternal = R"("source":"internal")";
  for (size_t at = json.find(kUp); at != std::string_view::npos; at = json.find(kUp, at + 1)) {
    const size_t from = at > 48 ? at - 48 : 0;
    if (json.substr(from, at - from).find(kInternal) != std::string_view::npos) continue;
    spdlog::info("msg=\"broker reachable again\"");
    http_->readiness().broker_reachable();
    return;
  }
}

void RunnerProbe::report_lag(const PartitionTable& partitions, const ConsumerGroup& consumer) {
  if (http_ == nullptr) return;
  bool lag = false;
  for (const auto& [id, slot] : partitions) {
    if (consumer.lag(slot.topic, slot.partition, slot.state->next_offset) > 0) {
      lag = true;
      break;
    }
  }
  http_->readiness().note_lag(lag, std::chrono::steady_clock::now());
}

void RunnerProbe::partition_restored(std::chrono::steady_clock::duration took) {
  restore_duration_.observe(std::chrono::duration<double>(took).count());
}

void RunnerProbe::alerts_committed(const std::vector<OutputRecord>& records) {
  if (http_ == nullptr) return;
  for (const OutputRecord& r : records) {
    if (r.topic == OutputRecord::Topic::alerts) alerts_.push_back(r.value);
  }
}

void RunnerProbe::checkpoint_written(std::chrono::steady_clock::duration took) {
  checkpoint_duration_.observe(std::chrono::duration<double>(took).count());
}

void RunnerProbe::checkpoint_failed() {
  ++checkpoint_failures_;
  publish_checkpoint_failures();
}

void RunnerProbe::prepare_metrics(const Topology& topology, const CounterContinuity& counters,
                                  const PartitionTable& partitions, const ConsumerGroup& consumer,
                                  uint64_t state_bytes, const ChangelogStats& changelog) {
  if (http_ == nullptr) return;
  drop_prepared();
  // The latencies of what this snapshot holds: observed, and its histogram filled in, when it
  // is exposed (publish_prepared()).
  prepared_latency_samples_ = latency_samples_.take();
  const double now_s =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

  // The order of the calls below is the exposition order of /metrics.
  registry_.begin();
  counters.collect(topology, registry_, [&] {
    registry_.family("socialpulse_consumer_lag_messages",
                     "Messages behind the partition's high watermark", MetricType::gauge);
    for (const auto& [id, slot] : partitions) {
      const int64_t lag = consumer.lag(slot.topic, slot.partition, slot.state->next_offset);
      const std::string label = label_topics_ ? slot.topic + "/" + std::to_string(slot.partition)
                                              : std::to_string(slot.partition);
      const std::array<LabelPair, 1> labels{{{"partition", label}}};
      registry_.add(labels, static_cast<double>(std::max<int64_t>(0, lag)));
    }
    const EventTime wm = topology.watermark();
    if (wm > kMinEventTime) {
      const double wm_s = static_cast<double>(to_epoch_ms(wm)) / 1000.0;
      registry_.family("socialpulse_watermark_timestamp_seconds", "Pipeline event-time watermark",
                       MetricType::gauge);
      registry_.add({}, wm_s);
      registry_.family("socialpulse_watermark_delay_seconds",
                       "Wall clock minus the pipeline watermark", MetricType::gauge);
      registry_.add({}, now_s - wm_s);
    }
    registry_.family("socialpulse_checkpoint_duration_seconds", "Time to write one checkpoint",
                     MetricType::histogram);
    registry_.add_histogram({}, checkpoint_duration_.bounds, checkpoint_duration_.counts,
                            checkpoint_duration_.sum);
    registry_.family("socialpulse_checkpoint_failures_total",
                     "Checkpoints that could not be written", MetricType::counter);
    registry_.add({}, static_cast<double>(checkpoint_failures_));
    registry_.family(kLatencyFamily, "Message append to value exposed on /metrics",
                     MetricType::histogram);
    registry_.add_histogram({}, latency_.bounds, latency_.counts, latency_.sum);
    registry_.family("socialpulse_state_bytes", "Bytes of state: in memory plus RocksDB",
                     MetricType::gauge);
    registry_.add({}, static_cast<double>(state_bytes));
    registry_.family("socialpulse_build_info", "Build information", MetricType::gauge);
    const std::array<LabelPair, 1> version{{{"version", kSocialpulseVersion}}};
    registry_.add(version, 1.0);
    registry_.family("socialpulse_partitions_assigned", "Input partitions this instance owns",
                     MetricType::gauge);
    registry_.add({}, static_cast<double>(changelog.partitions_assigned));
    registry_.family("socialpulse_partitions_restoring",
                     "Assigned input partitions whose state is still being restored",
                     MetricType::gauge);
    registry_.add({}, static_cast<double>(changelog.partitions_restoring));
    registry_.family("socialpulse_state_restore_seconds",
                     "Time to restore one assigned partition's state (local store or changelog)",
                     MetricType::histogram);
    registry_.add_histogram({}, restore_duration_.bounds, restore_duration_.counts,
                            restore_duration_.sum);
    registry_.family("socialpulse_changelog_bytes_total",
                     "Bytes of state produced to the state changelog by this process",
                     MetricType::counter);
    registry_.add({}, static_cast<double>(changelog.bytes_total));
  });
  prepared_ = registry_.finish();
  prepared_alerts_ = std::move(alerts_);
  alerts_.clear();
}

void RunnerProbe::publish_prepared() {
  if (http_ == nullptr || !prepared_) return;
  // The sampled latencies end now, when the values become visible; the snapshot's histogram,
  // built before them, is brought up to this moment.
  const double now_s =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (int64_t ts : prepared_latency_samples_)
    latency_.observe(std::max(0.0, now_s - static_cast<double>(ts) / 1000.0));
  prepared_latency_samples_.clear();
  auto snapshot = std::const_pointer_cast<MetricsSnapshot>(prepared_);
  for (auto& family : *snapshot) {
    if (family.name != kLatencyFamily || family.metric.empty()) continue;
    auto& h = family.metric.front().histogram;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.bucket.size() && i < latency_.counts.size(); ++i) {
      cumulative += latency_.counts[i];
      h.bucket[i].cumulative_count = cumulative;
    }
    h.sample_count = cumulative;
    h.sample_sum = latency_.sum;
  }
  last_snapshot_ = std::move(prepared_);
  prepared_.reset();
  http_->publish(last_snapshot_, std::move(prepared_alerts_));
  prepared_alerts_.clear();
}

void RunnerProbe::drop_prepared() {
  if (!prepared_) return;
  prepared_.reset();
  // Not exposed: the next snapshot holds these values, and these alerts and latencies with them.
  latency_samples_.put_back(prepared_latency_samples_);
  prepared_latency_samples_.clear();
  prepared_alerts_.insert(prepared_alerts_.end(), std::make_move_iterator(alerts_.begin()),
                          std::make_move_iterator(alerts_.end()));
  alerts_ = std::move(prepared_alerts_);
  prepared_alerts_.clear();
}

void RunnerProbe::publish_checkpoint_failures() {
  if (http_ == nullptr || !last_snapshot_) return;
  auto copy = std::make_shared<MetricsSnapshot>(*last_snapshot_);
  for (auto& family : *copy) {
    if (family.name == "socialpulse_checkpoint_failures_total" && !family.metric.empty()) {
      family.metric.front().counter.value = static_cast<double>(checkpoint_failures_);
    }
  }
  last_snapshot_ = copy;
  http_->publish(std::move(copy));
}

bool RunnerProbe::wait_final_scrape(std::chrono::steady_clock::time_point deadline) const {
  if (http_ == nullptr || !last_snapshot_) return true;
  const auto started = std::chrono::steady_clock::now();
  for (;;) {
    if (http_->latest_served()) {
      spdlog::info(
          "msg=\"shutdown: final values scraped\" waited_ms={}",
          std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started).count());
      return true;
    }
    const HttpServer::ScrapeRhythm rhythm = http_->scrape_rhythm();
    const auto now = std::chrono::steady_clock::now();
    // A scraper seen once is expected within its interval (with slack: ~1 s when unknown yet).
    const auto expected_by = rhythm.last + 2 * std::max<std::chrono::steady_clock::duration>(
                                                   rhythm.interval, Millis{500});
    if (rhythm.scrapes == 0) {
      spdlog::info("msg=\"shutdown: no scraper seen, not waiting for one\"");
      return false;
    }
    if (now >= std::min(deadline, expected_by)) {
      spdlog::warn(
          "msg=\"shutdown: final values not scraped; the scraper misses this instance's last "
          "increments\" scrapes_seen={}",
          rhythm.scrapes);
      return false;
    }
    std::this_thread::sleep_for(Millis{5});
  }
}

}  // namespace sp
