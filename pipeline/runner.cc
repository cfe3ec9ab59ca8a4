#include "pipeline/runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "operators/topology.h"
#include "pipeline/checkpoint_state.h"
#include "pipeline/consumer_group.h"
#include "pipeline/decoder.h"
#include "pipeline/event_generator.h"
#include "pipeline/http_server.h"
#include "pipeline/kafka.h"
#include "pipeline/metrics_registry.h"
#include "pipeline/output_sink.h"
#include "pipeline/runner_probe.h"
#include "pipeline/source_worker.h"
#include "pipeline/version.h"
#include "state/checkpoint_store.h"

namespace sp {
namespace {

using SteadyClock = std::chrono::steady_clock;
using WallClock = std::chrono::system_clock;

// The Kafka side of one owned partition; its state lives in the Topology.
struct PartitionSlot {
  std::string topic;
  int32_t partition = 0;
  Topology::Partition* state = nullptr;
  bool state_paused = false;  // ahead of the pipeline watermark while state is over its limit
};

TopologySpec topology_spec(const Config& config, const Vocabulary& vocabulary) {
  TopologySpec spec;
  spec.vocabulary = vocabulary;
  spec.windows = config.windows;
  spec.kpi = config.kpi;
  spec.emv = config.emv;
  for (const auto& [brand, channels] : config.roi.daily_spend) {
    for (const auto& [channel, value] : channels) spec.spend.push_back({brand, channel, value});
  }
  spec.watermark = config.watermark;
  spec.dedup_horizon = config.dedup.horizon;
  return spec;
}

class RunnerImpl final : public Runner {
 public:
  // After a fatal error run() returns without shutdown(); the consumer must still leave the group
  // here, before the state it would touch in a revoke callback is destroyed.
  ~RunnerImpl() override {
    if (!consumer_ || !consumer_->handle()) return;
    abandoned_ = true;
    stop_source();  // after a fatal error run() returned with the source still polling
    close_consumer(SteadyClock::now() + config_.shutdown_timeout);
    consumer_.reset();
    sink_.reset();
  }

  RunnerImpl(const Config& config, HttpServer* http)
      : config_(config),
        vocabulary_(config.vocabulary()),
        source_(vocabulary_, DecoderOptions{config.limits.max_message_bytes, config.watermark.max_future,
                                            config.brands.unknown}),
        topology_(topology_spec(config, vocabulary_)),
        http_(http),
        probe_(http, config.metrics.max_series, config.kafka.topics.size() != 1) {}

  Status init(const std::string& bootstrap, const RunnerTestHooks& hooks) {
    auto store = CheckpointStore::open(config_.state.path);
    if (!store) return tl::unexpected(store.error());
    store_ = std::move(*store);
    if (hooks.on_store_open) hooks.on_store_open(*store_);
    hooks_ = hooks;
    if (auto s = check_state_format(*store_, config_.state.path); !s) return s;
    state_reader_ = std::make_unique<StoreStateReader>(*store_);
    if (auto s = topology_.restore_global(*state_reader_); !s) return s;
    auto sink = OutputSink::open(*store_, {config_.kafka.output_topic, config_.kafka.alerts_topic,
                                           config_.kafka.dlq_topic});
    if (!sink) return tl::unexpected(sink.error());
    sink_ = std::move(*sink);

    std::map<std::string, std::string> common = config_.kafka.properties;
    common["bootstrap.servers"] = bootstrap;
    common.try_emplace("log_level", "4");
    auto consumer_settings = pipeline_consumer_settings(bootstrap, config_.kafka.group_id, config_.kafka.properties);
    auto consumer = ConsumerGroup::create(consumer_settings, &RunnerImpl::rebalance_cb, this);
    if (!consumer) return tl::unexpected(consumer.error());
    consumer_ = std::move(*consumer);

    if (auto s = sink_->connect(common); !s) return s;

    if (auto s = consumer_->subscribe(config_.kafka.topics); !s) return s;
    sink_->resend_outbox();
    // Nothing is published before the first assignment has restored state: an empty /metrics is
    // a gap to Prometheus, whereas zeros would read as a counter reset after every restart.
    return {};
  }

  Status run(const std::atomic<bool>& stop) override {
    auto next_checkpoint = SteadyClock::now() + config_.state.checkpoint_interval;
    auto next_idle_check = SteadyClock::now();
    source_.start(consumer_->handle());
    while (!stop.load(std::memory_order_relaxed) && fatal_.message.empty()) {
      // Bounded wait so that time-driven work (idle, checkpoint) is never starved.
      if (SourceWorker::Batch* batch = source_.next(Millis{50}, rebalance_handler_)) {
        process_batch(*batch);
        batch_messages_ += batch->items().size();
        source_.release(batch);
        if (hooks_.on_batch_processed) hooks_.on_batch_processed(batch_messages_);
      }
      sink_->poll(Millis{0});
      const auto now = SteadyClock::now();
      if (now >= next_idle_check) {
        next_idle_check = now + std::chrono::milliseconds(100);
        check_idle();
      }
      if (now >= next_checkpoint) {
        next_checkpoint = now + config_.state.checkpoint_interval;
        if (auto s = checkpoint(); !s && s.error().kind == ErrorKind::fatal) return s;
      }
      apply_backpressure();
    }
    if (!fatal_.message.empty()) return tl::unexpected(fatal_);
    return shutdown();
  }

 private:
  // ---- messages ---------------------------------------------------------------------------
  // Polling and decoding run on the source thread (pipeline/source_worker.h); batches arrive here
  // in consumption order, rebalances in order with them.
  void process_batch(const SourceWorker::Batch& batch) {
    wall_now_ = WallClock::now();
    const auto items = batch.items();
    // Each message's slot is looked up kDedupLookahead messages ahead, where its dedup table slot
    // is also prefetched (the table outgrows the cache), and used when the message is handled.
    // Slots cannot change within a batch: rebalances run between batches.
    std::array<PartitionSlot*, kDedupLookahead> ahead{};
    auto look_ahead = [&](size_t j) {
      const SourceWorker::Item& item = items[j];
      PartitionSlot* slot = item.outcome == SourceWorker::Outcome::kafka_error
                                ? nullptr
                                : find_slot(rd_kafka_topic_name(item.message->rkt), item.message->partition);
      if (slot != nullptr && item.outcome == SourceWorker::Outcome::event) slot->state->dedup.prefetch(item.dedup_key);
      ahead[j % kDedupLookahead] = slot;
    };
    for (size_t j = 0; j < std::min(kDedupLookahead, items.size()); ++j) look_ahead(j);
    for (size_t i = 0; i < items.size(); ++i) {
      PartitionSlot* slot = ahead[i % kDedupLookahead];
      if (i + kDedupLookahead < items.size()) look_ahead(i + kDedupLookahead);  // reuses slot i's place
      if ((i & 63) == 63) wall_now_ = WallClock::now();
      handle_message(items[i], slot);
    }
  }

  // `slot`: the message's partition, null for a revoked one (or a consumer error).
  void handle_message(const SourceWorker::Item& item, PartitionSlot* slot) {
    const rd_kafka_message_t& msg = *item.message;
    if (item.outcome == SourceWorker::Outcome::kafka_error) {
      if (msg.err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        spdlog::warn("msg=\"consumer error\" error=\"{}\"", rd_kafka_message_errstr(&msg));
      }
      return;
    }
    if (slot == nullptr) return;  // stale message from a revoked partition
    const Offset offset{msg.offset};
    if (item.outcome == SourceWorker::Outcome::rejected) {
      if (topology_.reject(*slot->state, offset, item.rejection.reason, wall_now_) ==
          Topology::Outcome::stale) {
        return;
      }
      probe_.sample_latency(msg);
      sink_->send_to_dlq(msg, slot->topic, item.rejection);
      return;
    }
    if (topology_.process(*slot->state, offset, item.event, item.dedup_key, wall_now_) !=
        Topology::Outcome::stale) {
      probe_.sample_latency(msg);
    }
  }

  void check_idle() {
    topology_.on_idle(WallClock::now(), [this](PartitionId p) { return has_lag(p); });
  }

  bool has_lag(PartitionId p) {
    if (paused_) return true;  // a paused partition is never idle
    auto it = slots_.find(p.value);
    if (it == slots_.end()) return false;
    const auto offsets = consumer_->watermarks(it->second.topic, it->second.partition);
    const auto next = it->second.state->next_offset;
    return offsets.high > (next ? next->value : offsets.low);
  }

  PartitionSlot* find_slot(const char* topic, int32_t partition) {
    // librdkafka hands out one name pointer per topic handle: skip the string compares per message.
    if (topic != last_topic_name_) {
      const auto t = topic_index(topic);
      if (!t) return nullptr;
      last_topic_name_ = topic;
      last_topic_index_ = *t;
    }
    auto it = slots_.find(make_partition_id(last_topic_index_, partition).value);
    return it == slots_.end() ? nullptr : &it->second;
  }

  static PartitionId make_partition_id(size_t topic_index, int32_t partition) {
    return PartitionId{static_cast<int32_t>(topic_index) * 65536 + partition};
  }

  std::optional<size_t> topic_index(const char* topic) const {
    for (size_t t = 0; t < config_.kafka.topics.size(); ++t) {
      if (config_.kafka.topics[t] == topic) return t;
    }
    return std::nullopt;
  }

  // ---- checkpoints ------------------------------------------------------------------------
  // `not_after` bounds the wait for DLQ acknowledgements (shutdown has a deadline to keep).
  Status checkpoint(SteadyClock::time_point not_after = SteadyClock::time_point::max()) {
    const auto started = SteadyClock::now();
    // Rejected messages must be in the DLQ before their offsets are stored.
    const auto dlq_deadline =
        std::min(not_after, started + std::min<Millis>(config_.state.checkpoint_interval, Millis{2000}));
    if (!sink_->drain_dlq(dlq_deadline)) {
      note_checkpoint_failure("dead-letter messages not yet acknowledged by the broker");
      return make_error(ErrorKind::retryable, "dlq not drained");
    }
    topology_.before_checkpoint();
    sink_->resend_failed();

    const auto t_emit = SteadyClock::now();
    auto batch = store_->batch();
    mark_state_format(batch);
    state_reader_->write_drops(batch);
    BatchStateWriter state(batch);
    topology_.checkpoint(state);
    const auto outbox = sink_->stage(topology_.pending(), batch);

    const auto t_built = SteadyClock::now();
    const size_t batch_bytes = batch.data_bytes();
    if (auto s = store_->commit(batch); !s) {
      note_checkpoint_failure(s.error().message);
      if (s.error().kind == ErrorKind::fatal) fatal_ = s.error();
      return s;
    }
    if (checkpoint_failing_) {
      spdlog::info("msg=\"checkpoint recovered\"");
      checkpoint_failing_ = false;
    }
    topology_.checkpoint_committed();
    sink_->committed(outbox, topology_.pending());
    commit_offsets_async();
    if (hooks_.on_checkpoint_committed) hooks_.on_checkpoint_committed(topology_.total_counts().consumed);
    const auto t_committed = SteadyClock::now();
    probe_.checkpoint_written(t_committed - started);
    publish_metrics();
    // Where a checkpoint's time goes (bench_e2e prints these with SP_BENCH_DEBUG_LOG).
    if (spdlog::should_log(spdlog::level::debug)) {
      auto us = [](auto d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); };
      spdlog::debug("msg=\"checkpoint\" since_previous_us={} dlq_and_emit_us={} state_us={} commit_us={} publish_us={} bytes={}",
                    us(started - last_checkpoint_start_), us(t_emit - started), us(t_built - t_emit),
                    us(t_committed - t_built), us(SteadyClock::now() - t_committed), batch_bytes);
      last_checkpoint_start_ = started;
    }
    return {};
  }

  void note_checkpoint_failure(const std::string& why) {
    probe_.checkpoint_failed();
    if (!checkpoint_failing_) spdlog::error("msg=\"checkpoint failed, pausing input and retrying\" error=\"{}\"", why);
    checkpoint_failing_ = true;
  }

  void commit_offsets_async() {
    if (slots_.empty()) return;
    consumer_->commit_async(owned_partitions(true).get());
  }

  // ---- rebalances -------------------------------------------------------------------------
  static void rebalance_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* partitions, void* opaque) {
    auto* self = static_cast<RunnerImpl*>(opaque);
    // Polled on the source thread: the state work runs on the pipeline thread, in order.
    if (self->source_.is_worker_thread()) {
      self->source_.forward_rebalance(rk, err, partitions);
      return;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      self->on_assign(partitions);
      rd_kafka_assign(rk, partitions);
      // A fresh assignment is never paused: keep the back-pressure decision in force, or a
      // rebalance during a checkpoint failure would consume input that cannot be stored.
      if (self->paused_) {
        rd_kafka_pause_partitions(rk, partitions);
      } else {
        rd_kafka_resume_partitions(rk, partitions);  // a pause survives an unassign in librdkafka
      }
    } else {
      self->on_revoke(partitions);
      rd_kafka_assign(rk, nullptr);
    }
  }

  // Pipeline thread, for a rebalance forwarded by the source thread; true: start them paused.
  bool handle_rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions) {
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (abandoned_) return true;  // leaving after a fatal error: restore nothing
      on_assign(partitions);
      return paused_;
    }
    on_revoke(partitions);
    return false;
  }

  // Stops the source thread; what it consumed before is processed (unless abandoned: then it is
  // dropped, and being unstored it is read again after a restart).
  void stop_source() {
    source_.stop(rebalance_handler_, [this](SourceWorker::Batch& batch) {
      if (!abandoned_) process_batch(batch);
    });
  }

  void on_assign(rd_kafka_topic_partition_list_t* partitions) {
    const auto restore_started = SteadyClock::now();
    for (int i = 0; i < partitions->cnt; ++i) {
      auto& tp = partitions->elems[i];
      const auto t = topic_index(tp.topic);
      if (!t) continue;
      PartitionSlot slot;
      slot.topic = tp.topic;
      slot.partition = tp.partition;
      const PartitionId id = make_partition_id(*t, tp.partition);
      auto restored = topology_.assign(id, *state_reader_);
      if (!restored) {
        fatal_ = restored.error();
        spdlog::critical("msg=\"cannot restore partition state\" topic={} partition={} error=\"{}\"",
                         slot.topic, slot.partition, restored.error().message);
        return;
      }
      slot.state = *restored;
      // Resume from the offset stored with the state, never from Kafka's committed offset.
      tp.offset = slot.state->next_offset ? slot.state->next_offset->value : RD_KAFKA_OFFSET_BEGINNING;
      slots_.emplace(id.value, std::move(slot));
    }
    const auto restore_time = SteadyClock::now() - restore_started;
    spdlog::info("msg=\"partitions assigned\" count={} owned={} restore_ms={}", partitions->cnt, slots_.size(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(restore_time).count());
    if (hooks_.on_partitions_restored) hooks_.on_partitions_restored(restore_time, static_cast<size_t>(partitions->cnt));
    assigned_once_ = true;
    check_idle();  // starts the idle timers of the new partitions
    publish_metrics();
    update_ready();
  }

  void on_revoke(rd_kafka_topic_partition_list_t* partitions) {
    spdlog::info("msg=\"partitions revoked\" count={}", partitions->cnt);
    // Their state and offsets must be durable before another instance picks them up (unless
    // the store failed for good: then the last stored checkpoint is all there is).
    for (int attempt = 0; attempt < 3 && !abandoned_ && fatal_.message.empty(); ++attempt) {
      if (checkpoint()) break;
    }
    for (int i = 0; i < partitions->cnt; ++i) {
      const auto t = topic_index(partitions->elems[i].topic);
      if (!t) continue;
      const PartitionId id = make_partition_id(*t, partitions->elems[i].partition);
      if (auto it = slots_.find(id.value); it != slots_.end() && it->second.state_paused) --state_paused_;
      slots_.erase(id.value);
      topology_.revoke(id);
    }
    update_ready();
  }

  void update_ready() {
    if (http_) http_->set_ready(!stopping_ && assigned_once_ && !checkpoint_failing_ && fatal_.message.empty());
  }

  // ---- back-pressure ----------------------------------------------------------------------
  void apply_backpressure() {
    if (stopping_) return;
    // Pending records and failing checkpoints stop all input: nothing consumed could be stored.
    const size_t pending = topology_.pending().size();
    const bool over = pending > config_.limits.max_pending_records || checkpoint_failing_;
    if (over != paused_) {
      set_paused(over);
      if (over) {
        spdlog::warn("msg=\"input paused\" pending_records={} state_bytes={} checkpoint_failing={}",
                     pending, state_bytes_, checkpoint_failing_);
      } else {
        // Re-seek: resume must continue exactly after the last offset in state.
        for (auto& [id, slot] : slots_) {
          seek_to_state(slot);
          slot.state_paused = false;  // resumed with the rest; re-decided below
        }
        state_paused_ = 0;
        spdlog::info("msg=\"input resumed\"");
      }
      paused_ = over;
      update_ready();
    }
    if (!paused_) align_on_state_limit();
  }

  // Over max_state_bytes, pausing everything stalled for good: state shrinks only when windows
  // close, which needs the watermark to move, which needs input (a paused partition is never
  // idle). Like Flink's watermark alignment, pause only the partitions ahead of the pipeline
  // watermark and let the slowest catch up; below the limit, resume them all.
  void align_on_state_limit() {
    const bool over = state_bytes_ > config_.limits.max_state_bytes;
    if (!over && state_paused_ == 0) return;
    const EventTime wm = topology_.watermark();
    size_t paused = 0, resumed = 0;
    for (auto& [id, slot] : slots_) {
      const bool ahead = over && topology_.partition_watermark(slot.state->id) > wm;
      if (ahead == slot.state_paused) continue;
      KafkaPartitionList one(rd_kafka_topic_partition_list_new(1));
      rd_kafka_topic_partition_list_add(one.get(), slot.topic.c_str(), slot.partition);
      if (ahead) {
        consumer_->pause(one.get());
        ++state_paused_;
        ++paused;
      } else {
        consumer_->resume(one.get());
        seek_to_state(slot);
        --state_paused_;
        ++resumed;
      }
      slot.state_paused = ahead;
    }
    if (paused > 0 || resumed > 0) {
      spdlog::info("msg=\"state limit: partitions ahead of the watermark paused\" paused={} resumed={} now_paused={} state_bytes={} limit={}",
                   paused, resumed, state_paused_, state_bytes_, config_.limits.max_state_bytes);
    }
  }

  void seek_to_state(const PartitionSlot& slot) {
    if (!slot.state->next_offset) return;
    KafkaPartitionList one(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(one.get(), slot.topic.c_str(), slot.partition)->offset = slot.state->next_offset->value;
    consumer_->seek(one.get());
  }

  void set_paused(bool pause) {
    KafkaPartitionList list = owned_partitions(false);
    if (pause) {
      consumer_->pause(list.get());
    } else {
      consumer_->resume(list.get());
    }
  }

  // Every owned partition; with `at_stored_offset`, those with a stored offset, at that offset
  // (the next to consume).
  KafkaPartitionList owned_partitions(bool at_stored_offset) const {
    KafkaPartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(slots_.size())));
    for (const auto& [id, slot] : slots_) {
      if (at_stored_offset && !slot.state->next_offset) continue;
      auto* tp = rd_kafka_topic_partition_list_add(list.get(), slot.topic.c_str(), slot.partition);
      if (at_stored_offset) tp->offset = slot.state->next_offset->value;
    }
    return list;
  }

  // Bounded by `timeout`: shutdown must end within shutdown_timeout.
  void commit_offsets_bounded(Millis timeout) {
    KafkaPartitionList list = owned_partitions(true);
    if (list->cnt == 0) return;
    const rd_kafka_resp_err_t result = consumer_->commit_within(list.get(), timeout);
    spdlog::info("msg=\"shutdown: offsets committed\" result=\"{}\"", rd_kafka_err2str(result));
  }

  // ---- metrics ----------------------------------------------------------------------------
  void publish_metrics() {
    const size_t bytes = topology_.state_bytes();
    state_bytes_ = bytes;
    if (!probe_.publishing()) return;
    std::vector<RunnerProbe::PartitionLag> lag;
    lag.reserve(slots_.size());
    for (const auto& [id, slot] : slots_) {
      const auto offsets = consumer_->watermarks(slot.topic, slot.partition);
      const int64_t pos = slot.state->next_offset ? slot.state->next_offset->value : offsets.low;
      lag.push_back({slot.topic, slot.partition, std::max<int64_t>(0, offsets.high - pos)});
    }
    probe_.publish_metrics(topology_, lag, bytes + store_->approximate_bytes());
  }

  // ---- shutdown ---------------------------------------------------------------------------
  Status shutdown() {
    // Keep a margin for what follows run(): civetweb's mg_stop takes up to ~2 s (measured), and
    // the process must exit within shutdown_timeout.
    const auto margin = std::min<Millis>(Millis{2500}, config_.shutdown_timeout / 2);
    const auto deadline = SteadyClock::now() + config_.shutdown_timeout - margin;
    stopping_ = true;
    update_ready();
    spdlog::info("msg=\"shutting down: not ready\"");
    // Stop fetching first: nothing consumed after the final checkpoint would be stored.
    set_paused(true);
    paused_ = true;
    stop_source();
    // Leave a margin of the deadline for flushing and leaving the group.
    bool stored = false;
    const auto checkpoint_deadline = SteadyClock::now() + config_.shutdown_timeout / 2;
    for (int attempt = 0; attempt < 3 && SteadyClock::now() < checkpoint_deadline; ++attempt) {
      if ((stored = checkpoint(checkpoint_deadline).has_value())) break;
    }
    spdlog::info("msg=\"shutdown: final checkpoint\" stored={}", stored);
    auto remaining = [&] {
      return std::max<int64_t>(0, std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()).count());
    };
    sink_->flush(Millis{std::min<int64_t>(remaining() / 2, 5000)});
    if (stored) commit_offsets_bounded(Millis{std::min<int64_t>(remaining() / 2, 2000)});
    const bool closed = close_consumer(deadline);
    if (closed) spdlog::info("msg=\"shutdown: left the group\"");
    if (!closed) {
      spdlog::warn("msg=\"group leave did not finish before shutdown_timeout; exiting anyway\"");
    }
    spdlog::info("msg=\"stopped\"");
    return {};
  }

  // Leaves the group within `deadline`; false when it could not (the handles are then abandoned
  // to process exit: destroying a handle that is still closing can block).
  bool close_consumer(SteadyClock::time_point deadline) {
    const bool closed = consumer_->close(deadline, [this](rd_kafka_topic_partition_list_t* parts) { on_revoke(parts); });
    if (!closed) sink_->abandon();
    return closed;
  }

  static constexpr size_t kDedupLookahead = 8;
  SteadyClock::time_point last_checkpoint_start_{};
  uint64_t batch_messages_ = 0;  // for RunnerTestHooks::on_batch_processed

  const Config config_;
  Vocabulary vocabulary_;
  SourceWorker source_;
  const SourceWorker::RebalanceHandler rebalance_handler_ =
      [this](rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions) {
        return handle_rebalance(err, partitions);
      };
  Topology topology_;
  HttpServer* http_;
  RunnerProbe probe_;
  std::unique_ptr<CheckpointStore> store_;
  std::unique_ptr<StoreStateReader> state_reader_;
  std::unique_ptr<ConsumerGroup> consumer_;
  std::unique_ptr<OutputSink> sink_;
  std::map<int32_t, PartitionSlot> slots_;  // ordered: deterministic snapshot order
  const char* last_topic_name_ = nullptr;  // find_slot cache
  size_t last_topic_index_ = 0;
  WallClock::time_point wall_now_{};
  bool checkpoint_failing_ = false;
  bool paused_ = false;
  size_t state_paused_ = 0;  // partitions paused by align_on_state_limit()
  bool stopping_ = false;
  bool abandoned_ = false;  // fatal error: leave the group without touching the store
  bool assigned_once_ = false;
  size_t state_bytes_ = 0;
  Error fatal_;
  RunnerTestHooks hooks_;
};

}  // namespace

Result<std::unique_ptr<Runner>> Runner::create(const Config& config,
                                               const std::string& bootstrap_servers,
                                               HttpServer* http,
                                               const RunnerTestHooks& hooks) {
  auto runner = std::make_unique<RunnerImpl>(config, http);
  if (auto s = runner->init(bootstrap_servers, hooks); !s) return tl::unexpected(s.error());
  return std::unique_ptr<Runner>(std::move(runner));
}

}  // namespace sp
