#include "pipeline/runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <vector>

#include "operators/topology.h"
#include "pipeline/backpressure.h"
#include "pipeline/checkpoint_state.h"
#include "pipeline/consumer_group.h"
#include "pipeline/counter_continuity.h"
#include "pipeline/decoder.h"
#include "pipeline/http_server.h"
#include "pipeline/kafka.h"
#include "pipeline/output_sink.h"
#include "pipeline/partition_table.h"
#include "pipeline/runner_probe.h"
#include "pipeline/shutdown_budget.h"
#include "pipeline/source_worker.h"
#include "pipeline/state_changelog.h"
#include "state/checkpoint_store.h"

namespace sp {
namespace {

using SteadyClock = std::chrono::steady_clock;
using WallClock = std::chrono::system_clock;

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
        source_(vocabulary_, DecoderOptions{config.limits.max_message_bytes,
                                            config.watermark.max_future, config.brands.unknown}),
        topology_(topology_spec(config, vocabulary_)),
        probe_(http, config.metrics.max_series, config.kafka.topics.size() != 1),
        slots_(config.kafka.topics),
        backpressure_(config.limits, topology_, slots_) {}

  Status init(const std::string& bootstrap, const RunnerTestHooks& hooks) {
    auto store = CheckpointStore::open(config_.state.path, config_.state.sync);
    if (!store) return tl::unexpected(store.error());
    store_ = std::move(*store);
    if (hooks.on_store_open) hooks.on_store_open(*store_);
    hooks_ = hooks;
    if (hooks.write_ahead_min_ids) write_ahead_min_ids_ = *hooks.write_ahead_min_ids;
    if (auto s = check_state_format(*store_, config_.state.path); !s) return s;
    state_reader_ = std::make_unique<StoreStateReader>(*store_);
    StateChangelog::Options changelog_options;
    changelog_options.bootstrap = bootstrap;
    changelog_options.properties = config_.kafka.properties;
    changelog_options.topic = config_.kafka.state_topic;
    changelog_options.group_id = config_.kafka.group_id;
    changelog_options.input_topics = config_.kafka.topics;
    changelog_options.max_record_bytes = config_.kafka.changelog_max_record_bytes;
    changelog_options.enabled = !hooks.without_changelog;
    if (hooks.changelog_lanes > 0) changelog_options.lanes = hooks.changelog_lanes;
    changelog_options.broker_in_process = config_.kafka.bootstrap_servers == "embedded";
    auto changelog = StateChangelog::open(*store_, std::move(changelog_options));
    if (!changelog) return tl::unexpected(changelog.error());
    changelog_ = std::move(*changelog);

    const auto consumer_settings =
        pipeline_consumer_settings(bootstrap, config_.kafka.group_id, config_.kafka.properties,
                                   config_.kafka.group_instance_id);
    // After a crash: the changelog gets what the local store has beyond it, before the group can
    // give those partitions to another member.
    auto setting_ms = [&](const char* name) {
      auto it = consumer_settings.find(name);
      return Millis{it == consumer_settings.end() ? 0 : std::atoll(it->second.c_str())};
    };
    const std::vector<PartitionId> rolled_back = changelog_->repair_unconfirmed(
        topology_.partition_state_owners(), setting_ms("session.timeout.ms"),
        setting_ms("heartbeat.interval.ms"));
    if (!rolled_back.empty()) {
      // Another member restores those partitions' older checkpoint and counts the rest again:
      // neither their newer local state nor the counts /metrics never showed may stay here.
      auto batch = store_->batch();
      if (auto s = changelog_->roll_back(rolled_back, topology_.partition_state_owners(), batch);
          !s)
        return s;
      BatchStateWriter writer(batch);
      if (auto s = CounterContinuity::roll_back_to_published(*state_reader_, writer); !s) return s;
      if (auto s = store_->commit(batch); !s) return s;
    }
    if (auto s = topology_.restore_global(*state_reader_); !s) return s;
    if (auto s = counters_.restore(*state_reader_, topology_); !s) return s;
    if (auto s = probe_.restore_series(*state_reader_); !s) return s;
    auto sink = OutputSink::open(
        *store_, {config_.kafka.output_topic, config_.kafka.alerts_topic, config_.kafka.dlq_topic});
    if (!sink) return tl::unexpected(sink.error());
    sink_ = std::move(*sink);
    auto consumer = ConsumerGroup::create(consumer_settings, &RunnerImpl::rebalance_cb, this,
                                          &RunnerImpl::error_cb, &RunnerImpl::stats_cb);
    if (!consumer) return tl::unexpected(consumer.error());
    consumer_ = std::move(*consumer);

    if (auto s = sink_->connect(bootstrap, config_.kafka.properties); !s) return s;

    if (auto s = consumer_->subscribe(config_.kafka.topics); !s) return s;
    sink_->resend_outbox();
    // Nothing is published before the first assignment has restored state: a partial /metrics
    // (counters without the gauges and histograms of the partitions) would mislead; a gap does
    // not. The counters then continue from what this instance exported before (CounterContinuity).
    return {};
  }

  void replace_spend(SpendValues values) override {
    topology_.spend_table().replace(std::move(values));
  }

  Status run(const std::atomic<bool>& stop) override {
    auto next_checkpoint = SteadyClock::now() + config_.state.checkpoint_interval;
    auto next_idle_check = SteadyClock::now();
    // The dedup ids of an interval are written ahead of its cut (write_ahead()), this long
    // before it: long enough for the write, and for the events that queued meanwhile, to be done
    // by the cut; short enough that few ids come after it.
    const auto write_ahead_lead = std::clamp<SteadyClock::duration>(
        config_.state.checkpoint_interval / 8, Millis{5}, config_.state.checkpoint_interval / 2);
    bool written_ahead = false;  // this interval
    source_.start(consumer_->handle());
    while (!stop.load(std::memory_order_relaxed) && fatal_.message.empty()) {
      // Bounded wait so that time-driven work (idle, write-ahead, checkpoint) is never starved,
      // and never past the next one's time.
      const auto next_due = written_ahead ? next_checkpoint : next_checkpoint - write_ahead_lead;
      const auto until_due = std::chrono::duration_cast<Millis>(next_due - SteadyClock::now());
      // While a checkpoint waits to be published (its sync, the changelog's acknowledgements,
      // both noticed only here), a short wait: the last value shown is that much older.
      const Millis wait = std::clamp(until_due, Millis{0}, publish_due_ ? Millis{1} : Millis{50});
      if (SourceWorker::Batch* batch = source_.next(wait, rebalance_handler_)) {
        process_batch(*batch);
        report_batch(*batch);
        batch_messages_ += batch->items().size();
        source_.release(batch);
        if (hooks_.on_batch_processed) hooks_.on_batch_processed(batch_messages_);
      }
      sink_->poll(Millis{0});
      changelog_->poll(Millis{0});
      try_publish();
      const auto now = SteadyClock::now();
      if (now >= next_idle_check) {
        next_idle_check = now + std::chrono::milliseconds(100);
        check_idle();
        report_lag();
      }
      if (!written_ahead && now >= next_checkpoint - write_ahead_lead) {
        written_ahead = true;
        write_ahead();
      }
      if (now >= next_checkpoint) {
        written_ahead = false;
        // A fixed rate: due one interval after the previous one was due, not after the loop
        // noticed it (a batch in hand, up to tens of ms late), so the time between two cuts,
        // which bounds an event's wait for one (SPEC 9 latency), stays the interval. One that
        // fell more than an interval behind (a long checkpoint) is due an interval from now.
        next_checkpoint += config_.state.checkpoint_interval;
        if (next_checkpoint <= now) next_checkpoint = now + config_.state.checkpoint_interval;
        if (auto s = checkpoint(); !s && s.error().kind == ErrorKind::fatal) return s;
      }
      if (backpressure_.apply(*consumer_,
                              {topology_.pending().size(), state_bytes_, checkpoint_failing_}))
        update_ready();
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
    // Messages come in runs of one partition: the run's slot is looked up once. The message
    // itself is not touched (the item has its topic, partition and offset): reading it here, or
    // asking librdkafka for its topic's name, was 5-13 % of this thread at 64 partitions.
    const rd_kafka_topic_t* run_topic = nullptr;
    int32_t run_partition = 0;
    PartitionSlot* run_slot = nullptr;
    auto look_ahead = [&](size_t j) {
      const SourceWorker::Item& item = items[j];
      PartitionSlot* slot = nullptr;
      if (item.outcome != SourceWorker::Outcome::kafka_error) {
        if (item.topic != run_topic || item.partition != run_partition) {
          run_topic = item.topic;
          run_partition = item.partition;
          run_slot = slots_.find(rd_kafka_topic_name(item.topic), item.partition);
        }
        slot = run_slot;
      }
      if (slot != nullptr && item.outcome == SourceWorker::Outcome::event)
        slot->state->dedup.prefetch(item.dedup_key);
      ahead[j % kDedupLookahead] = slot;
    };
    for (size_t j = 0; j < std::min(kDedupLookahead, items.size()); ++j) look_ahead(j);
    for (size_t i = 0; i < items.size(); ++i) {
      PartitionSlot* slot = ahead[i % kDedupLookahead];
      if (i + kDedupLookahead < items.size())
        look_ahead(i + kDedupLookahead);  // reuses slot i's place
      if ((i & 63) == 63) wall_now_ = WallClock::now();
      handle_message(items[i], slot);
    }
  }

  // `slot`: the message's partition, null for a revoked one (or a consumer error).
  void handle_message(const SourceWorker::Item& item, PartitionSlot* slot) {
    const rd_kafka_message_t& msg = *item.message;  // not read for an event
    if (item.outcome == SourceWorker::Outcome::kafka_error) {
      if (msg.err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        spdlog::warn("msg=\"consumer error\" error=\"{}\"", rd_kafka_message_errstr(&msg));
      }
      return;
    }
    if (slot == nullptr) return;  // stale message from a revoked partition
    const Offset offset{item.offset};
    if (item.outcome == SourceWorker::Outcome::rejected) {
      if (topology_.reject(*slot->state, offset, item.rejection.reason, wall_now_) ==
          Topology::Outcome::stale) {
        return;
      }
      probe_.sample_latency(item.timestamp);
      sink_->send_to_dlq(msg, slot->topic, item.rejection);
      return;
    }
    if (topology_.process(*slot->state, offset, item.event, item.dedup_key, wall_now_) !=
        Topology::Outcome::stale) {
      probe_.sample_latency(item.timestamp);
    }
  }

  void check_idle() {
    topology_.on_idle(WallClock::now(), [this](PartitionId p) { return has_lag(p); });
  }

  bool has_lag(PartitionId p) {
    if (backpressure_.paused()) return true;  // a paused partition is never idle
    const PartitionSlot* slot = slots_.find(p);
    if (slot == nullptr) return false;
    return consumer_->lag(slot->topic, slot->partition, slot->state->next_offset) > 0;
  }

  // ---- checkpoints ------------------------------------------------------------------------
  // `not_after` is the final checkpoint's deadline: it may wait for DLQ acknowledgements until
  // then (a loaded machine or a slow broker can take longer than a checkpoint interval, and a
  // final checkpoint that gives up early makes the exit code say "not stored"). A periodic
  // checkpoint waits at most one interval (2 s at most) and is retried.
  Status checkpoint(SteadyClock::time_point not_after = SteadyClock::time_point::max()) {
    const auto started = SteadyClock::now();
    // Rejected messages must be in the DLQ before their offsets are stored.
    const auto dlq_deadline =
        not_after != SteadyClock::time_point::max()
            ? not_after
            : started + std::min<Millis>(config_.state.checkpoint_interval, Millis{2000});
    // One checkpoint waits for the disk at a time: the previous one's output records go out
    // before this one stages its own (normally its sync finished long ago).
    if (!settle_sync(dlq_deadline)) {
      if (!fatal_.message.empty()) return tl::unexpected(fatal_);
      note_checkpoint_failure("the previous checkpoint is not yet on stable storage");
      return make_error(ErrorKind::retryable, "previous checkpoint not synced");
    }
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
    topology_.checkpoint(changelog_->capture(state));
    counters_.checkpoint(topology_, state);
    probe_.checkpoint_series(state);
    const auto outbox = sink_->stage(topology_.pending(), batch);
    // A record of this checkpoint not delivered (its write-ahead's included) withholds its
    // values from /metrics: counted from before the first of them went out.
    const uint64_t failed_mark = ahead_failed_mark_.value_or(changelog_->failed_total());
    changelog_->send_deltas(topology_);  // the broker takes them while the store commits
    changelog_->record_unconfirmed(topology_, batch);

    const auto t_built = SteadyClock::now();
    const size_t batch_bytes = batch.data_bytes();
    // Written, not yet on stable storage: the store's sync thread does that while this thread
    // consumes on. What others can see of this checkpoint (its output records, its /metrics
    // values) waits for the sync (settle_sync, try_publish), so a power cut cannot take back
    // anything shown; the state's own bookkeeping goes on now, as a killed process keeps a
    // written batch.
    if (auto s = store_->write(batch); !s) {
      changelog_->discard();
      note_checkpoint_failure(s.error().message);
      if (s.error().kind == ErrorKind::fatal) fatal_ = s.error();
      return s;
    }
    if (checkpoint_failing_) {
      spdlog::info("msg=\"checkpoint recovered\"");
      checkpoint_failing_ = false;
    }
    ahead_failed_mark_.reset();
    syncing_ = Syncing{store_->sync_async(), started, outbox, {}};
    syncing_->records.swap(topology_.pending());
    topology_.checkpoint_committed();
    counters_.committed();
    changelog_->produce(topology_);
    probe_.alerts_committed(syncing_->records);
    if (!slots_.empty()) consumer_->commit_async(slots_.list(true).get());
    if (hooks_.on_checkpoint_committed)
      hooks_.on_checkpoint_committed(topology_.total_counts().consumed);
    const auto t_committed = SteadyClock::now();
    settle_sync(SteadyClock::time_point::min());  // at once without state.sync
    // The values this checkpoint stored, built now (the pipeline consumes on while the changelog
    // acknowledges) and published once the changelog has the checkpoint: a crash before that makes
    // the next owner count again what /metrics would already have shown.
    publish_due_ = prepare_metrics();
    prepared_at_ = SteadyClock::now();
    changelog_failed_mark_ = failed_mark;
    try_publish();
    // Where a checkpoint's time goes (bench_e2e prints these with SP_BENCH_DEBUG_LOG).
    if (spdlog::should_log(spdlog::level::debug)) {
      auto us = [](auto d) {
        return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
      };
      std::string owners;  // owner=partitions/keys/bytes
      for (const auto& w : topology_.checkpoint_profile()) {
        if (w.keys == 0) continue;
        owners += fmt::format(" {}={}/{}/{}", w.owner, w.partitions, w.keys, w.bytes);
      }
      spdlog::debug(
          "msg=\"checkpoint\" since_previous_us={} dlq_and_emit_us={} state_us={} commit_us={} "
          "publish_us={} bytes={}{}",
          us(started - last_checkpoint_start_), us(t_emit - started), us(t_built - t_emit),
          us(t_committed - t_built), us(SteadyClock::now() - t_committed), batch_bytes, owners);
      last_checkpoint_start_ = started;
    }
    return {};
  }

  // Ahead of the cut (issue #20): the dedup ids remembered so far go into their segments now,
  // written, synced and sent to the changelog while the pipeline consumes on, so that the
  // checkpoint, which every value /metrics shows waits for, writes only those remembered after
  // this (at 450 k new ids a second they were 5.8 of its 7.3 MB, and the commit the largest part
  // of an event's wait past the interval). A failed write is left to the checkpoint, as are a
  // few ids (not worth a write of their own).
  void write_ahead() {
    const size_t per_partition = std::min(write_ahead_min_ids_, kWriteAheadMinPartitionIds);
    if (checkpoint_failing_ || topology_.dedup_unwritten_ids(per_partition) < write_ahead_min_ids_)
      return;
    const auto started = SteadyClock::now();
    auto batch = store_->batch();
    BatchStateWriter state(batch);
    const size_t partitions =
        topology_.write_ahead(changelog_->capture_ahead(state), per_partition);
    if (partitions == 0) {
      changelog_->drop_ahead();
      return;
    }
    const size_t bytes = batch.data_bytes();
    if (auto s = store_->write(batch); !s) {
      changelog_->drop_ahead();
      if (s.error().kind == ErrorKind::fatal) fatal_ = s.error();
      spdlog::warn("msg=\"dedup write-ahead failed; the checkpoint writes its ids\" error=\"{}\"",
                   s.error().message);
      return;
    }
    topology_.write_ahead_committed();
    if (!ahead_failed_mark_) ahead_failed_mark_ = changelog_->failed_total();
    changelog_->send_ahead(topology_);
    (void)store_->sync_async();  // the cut's sync then has less left to do
    if (hooks_.on_write_ahead) hooks_.on_write_ahead(partitions);
    spdlog::debug(
        "msg=\"write-ahead\" us={} bytes={}",
        std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - started).count(),
        bytes);
  }

  // Once the last checkpoint is on stable storage (by `wait_until` at the latest; min: only
  // look), sends its output records and records its duration; true when nothing waits for a
  // sync. A failed sync is fatal: the store cannot say any more what it holds.
  bool settle_sync(SteadyClock::time_point wait_until) {
    if (!syncing_) return true;
    const auto result = store_->wait_synced(syncing_->ticket, wait_until);
    if (!result) return false;
    Syncing done = std::move(*syncing_);
    syncing_.reset();
    if (!*result) {
      fatal_ = result->error();
      spdlog::critical("msg=\"checkpoint not on stable storage\" error=\"{}\"", fatal_.message);
      update_ready();
      return false;
    }
    sink_->committed(done.outbox, done.records);
    const auto took = SteadyClock::now() - done.started;
    probe_.checkpoint_written(took);
    spdlog::debug("msg=\"synced\" since_cut_us={}",
                  std::chrono::duration_cast<std::chrono::microseconds>(took).count());
    return true;
  }

  // Called every loop turn: a checkpoint's records go out, and its duration is recorded, as soon
  // as it is synced, whether or not there are values to publish (none before the first
  // assignment), not when the next checkpoint looks.
  void try_publish() {
    if (!settle_sync(SteadyClock::time_point::min()) || !publish_due_ || !changelog_->settled())
      return;
    publish_due_ = false;
    if (changelog_->failed_total() != changelog_failed_mark_) {
      probe_.drop_prepared();  // the next checkpoint snapshots, and is published
      return;
    }
    probe_.publish_prepared();
    counters_.published();
    // How long the changelog took to acknowledge (bench_e2e's debug log): /metrics lags the
    // commit by this much, and it is the window a kill -9 can fall in (README "Scaling out").
    spdlog::debug(
        "msg=\"published\" changelog_wait_us={}",
        std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - prepared_at_)
            .count());
  }

  void note_checkpoint_failure(const std::string& why) {
    probe_.checkpoint_failed();
    if (!checkpoint_failing_)
      spdlog::error("msg=\"checkpoint failed, pausing input and retrying\" error=\"{}\"", why);
    checkpoint_failing_ = true;
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
      if (auto e = rd_kafka_assign(rk, partitions); e) {
        spdlog::error("msg=\"assign failed\" error=\"{}\"", rd_kafka_err2str(e));
      }
      self->backpressure_.keep_on_assign(rk, partitions);
    } else {
      self->on_revoke(partitions);
      if (auto e = rd_kafka_assign(rk, nullptr); e) {
        spdlog::error("msg=\"unassign failed\" error=\"{}\"", rd_kafka_err2str(e));
      }
    }
  }

  // Pipeline thread, for a rebalance forwarded by the source thread; true: start them paused.
  bool handle_rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions) {
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (abandoned_) return true;  // leaving after a fatal error: restore nothing
      on_assign(partitions);
      return backpressure_.paused();
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
    // It ends by publishing the state as it is, the last checkpoint's included.
    settle_sync(SteadyClock::now() + config_.shutdown_timeout / 2);
    const auto restore_started = SteadyClock::now();
    restoring_ = static_cast<size_t>(partitions->cnt);
    update_ready();
    counters_.before(topology_);
    const std::vector<std::string> owners = topology_.partition_state_owners();
    for (int i = 0; i < partitions->cnt; ++i, --restoring_) {
      auto& tp = partitions->elems[i];
      const auto id = slots_.id_of(tp.topic, tp.partition);
      if (!id) continue;
      const auto started = SteadyClock::now();
      // The newest complete checkpoint, local or another instance's, into the local store.
      auto source = changelog_->prepare(*id, owners, started + kRestoreTimeout);
      if (!source) {
        fatal_ = source.error();
        spdlog::critical(
            "msg=\"cannot restore partition state from the changelog\" topic={} partition={} "
            "error=\"{}\"",
            tp.topic, tp.partition, source.error().message);
        restoring_ = 0;
        return;
      }
      auto restored = topology_.assign(*id, *state_reader_);
      if (!restored) {
        fatal_ = restored.error();
        spdlog::critical(
            "msg=\"cannot restore partition state\" topic={} partition={} error=\"{}\"", tp.topic,
            tp.partition, restored.error().message);
        restoring_ = 0;
        return;
      }
      const auto& stored = (*restored)->next_offset;
      // Resume from the offset stored with the state, never from Kafka's committed offset.
      tp.offset = stored ? stored->value : RD_KAFKA_OFFSET_BEGINNING;
      slots_.add(*id, PartitionSlot{tp.topic, tp.partition, *restored});
      probe_.partition_restored(SteadyClock::now() - started);
    }
    restoring_ = 0;
    counters_.after(topology_);
    const auto restore_time = SteadyClock::now() - restore_started;
    spdlog::info("msg=\"partitions assigned\" count={} owned={} restore_ms={}", partitions->cnt,
                 slots_.size(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(restore_time).count());
    if (hooks_.on_partitions_restored)
      hooks_.on_partitions_restored(restore_time, static_cast<size_t>(partitions->cnt));
    probe_.broker_reachable();  // the group coordinator answered
    check_idle();               // starts the idle timers of the new partitions
    assigned_once_ = true;
    publish_metrics();
    update_ready();
  }

  void on_revoke(rd_kafka_topic_partition_list_t* partitions) {
    spdlog::info("msg=\"partitions revoked\" count={}", partitions->cnt);
    // Their state and offsets must be durable before another instance picks them up (unless
    // the store failed for good: then the last stored checkpoint is all there is). The checkpoint
    // may wait for DLQ acknowledgements as long as the handover may take.
    const auto deadline =
        SteadyClock::now() + std::min<Millis>(config_.shutdown_timeout / 2, Millis{10'000});
    bool stored = false;
    for (int attempt = 0; attempt < 3 && !abandoned_ && fatal_.message.empty(); ++attempt) {
      if (checkpoint(deadline)) {
        stored = true;
        break;
      }
    }
    std::vector<PartitionId> ids;
    for (int i = 0; i < partitions->cnt; ++i) {
      const auto id = slots_.id_of(partitions->elems[i].topic, partitions->elems[i].partition);
      if (id && topology_.find(*id) != nullptr) ids.push_back(*id);
    }
    // Not stored: the next owner resumes from the last stored checkpoint and counts again what
    // came after it, so this instance must not keep those counts either. Each partition goes
    // back to its last stored state before its counts are absorbed (nothing after it was
    // published: /metrics shows committed checkpoints only).
    if (!stored && !abandoned_) {
      for (PartitionId id : ids) {
        topology_.revoke(id);
        if (auto back = topology_.assign(id, *state_reader_); !back) {
          spdlog::error("msg=\"revoked partition not rolled back\" pid={} error=\"{}\"", id.value,
                        back.error().message);
        }
      }
      spdlog::warn(
          "msg=\"revoked partitions rolled back to their last stored checkpoint\" count={}",
          ids.size());
    }
    // The next owner restores from the changelog: it must have their last checkpoint.
    if (!abandoned_) {
      changelog_->handover(
          ids, SteadyClock::now() + std::min<Millis>(config_.shutdown_timeout / 2, Millis{10'000}));
    }
    counters_.before(topology_);
    for (PartitionId id : ids) {
      backpressure_.partition_removed(slots_.remove(id));
      topology_.revoke(id);
    }
    counters_.after(topology_);
    update_ready();
  }

  // ---- readiness (/readyz): the facts, reported through the probe ----
  void update_ready() {
    probe_.report_state(slots_.size(), checkpoint_failing_, restoring_ > 0, stopping_,
                        !fatal_.message.empty());
  }
  void report_batch(const SourceWorker::Batch& batch) { probe_.batch_consumed(batch); }
  static void error_cb(rd_kafka_t*, int err, const char* reason, void* opaque) {
    static_cast<RunnerImpl*>(opaque)->probe_.kafka_error(err, reason);
  }
  static int stats_cb(rd_kafka_t*, char* json, size_t len, void* opaque) {
    static_cast<RunnerImpl*>(opaque)->probe_.client_stats(std::string_view(json, len));
    return 0;
  }
  void report_lag() {
    probe_.report_lag(slots_, *consumer_);
    update_ready();
  }

  // ---- metrics ----------------------------------------------------------------------------
  // Builds the /metrics snapshot of the Topology as it is; true when there is one to publish.
  bool prepare_metrics() {
    state_bytes_ = topology_.state_bytes();
    // Not before the first assignment (see init()): a checkpoint while the group join is still
    // pending published the restored counters alone, zero-valued series missing (crash_test).
    if (!probe_.publishing() || !assigned_once_) return false;
    probe_.prepare_metrics(topology_, counters_, slots_, *consumer_,
                           state_bytes_ + store_->approximate_bytes(),
                           {changelog_->bytes_total(), slots_.size(), restoring_});
    return true;
  }
  // Publishes the Topology as it is now (stored state only: right after an assignment).
  void publish_metrics() {
    publish_due_ = false;
    if (prepare_metrics()) {
      probe_.publish_prepared();
      counters_.published();
    }
  }

  // ---- shutdown ---------------------------------------------------------------------------
  Status shutdown() {
    const ShutdownBudget budget(config_.shutdown_timeout);  // less a margin for what follows run()
    stopping_ = true;
    update_ready();
    spdlog::info("msg=\"shutting down: not ready\"");
    // Stop fetching first: nothing consumed after the final checkpoint would be stored.
    backpressure_.stop(*consumer_);
    stop_source();
    // Leave a margin of the deadline for flushing and leaving the group.
    bool stored = false;
    std::string not_stored_why = "no time left before shutdown_timeout";
    const auto checkpoint_deadline = SteadyClock::now() + config_.shutdown_timeout / 2;
    for (int attempt = 0; attempt < 3 && SteadyClock::now() < checkpoint_deadline; ++attempt) {
      auto s = checkpoint(checkpoint_deadline);
      if ((stored = s.has_value())) break;
      not_stored_why = s.error().message;
    }
    if (stored && !settle_sync(checkpoint_deadline)) {
      stored = false;
      not_stored_why =
          fatal_.message.empty() ? "not on stable storage before the deadline" : fatal_.message;
    }
    spdlog::info("msg=\"shutdown: final checkpoint\" stored={}", stored);
    // Its values go to /metrics once the changelog has it (bounded like the rest).
    while (publish_due_ && SteadyClock::now() < checkpoint_deadline) {
      changelog_->poll(Millis{10});
      try_publish();
    }
    sink_->flush(std::min<Millis>(budget.remaining() / 2, Millis{5000}));
    if (KafkaPartitionList offsets = slots_.list(true); stored && offsets->cnt > 0) {
      const auto result = consumer_->commit_within(
          offsets.get(), std::min<Millis>(budget.remaining() / 2, Millis{2000}));
      spdlog::info("msg=\"shutdown: offsets committed\" result=\"{}\"", rd_kafka_err2str(result));
    }
    const bool closed = close_consumer(budget.deadline());
    if (closed) spdlog::info("msg=\"shutdown: left the group\"");
    if (!closed) {
      spdlog::warn("msg=\"group leave did not finish before shutdown_timeout; exiting anyway\"");
    }
    // The revoke's checkpoint, if any, reaches /metrics; then its scrape (issue #15 item 4).
    while (closed && publish_due_ && SteadyClock::now() < budget.deadline()) {
      changelog_->poll(Millis{10});
      try_publish();
    }
    settle_sync(budget.deadline());  // the revoke's checkpoint: its records, if any, go out
    probe_.wait_final_scrape(budget.deadline());
    spdlog::info("msg=\"stopped\"");
    // What was consumed since the last stored checkpoint will be read again: the exit code says
    // so, for whoever restarts this (issue 19 item 5).
    if (!stored) {
      return make_error(ErrorKind::fatal, "final checkpoint not stored: " + not_stored_why);
    }
    return {};
  }

  // Leaves the group within `deadline`; false when it could not (the handles are then abandoned
  // to process exit: destroying a handle that is still closing can block).
  bool close_consumer(SteadyClock::time_point deadline) {
    const bool closed = consumer_->close(
        deadline, [this](rd_kafka_topic_partition_list_t* parts) { on_revoke(parts); });
    if (!closed) sink_->abandon();
    return closed;
  }

  static constexpr size_t kDedupLookahead = 8;
  static constexpr Millis kRestoreTimeout{10 * 60 * 1000};
  // Fewer unwritten dedup ids than this (~50 kB) are left to the checkpoint, and so are those of
  // a partition with fewer than kWriteAheadMinPartitionIds (~3 kB): a segment is a key (and a
  // changelog record) for the whole horizon, and a restart reads every one.
  static constexpr size_t kWriteAheadMinIds = 4096;
  static constexpr size_t kWriteAheadMinPartitionIds = 256;
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
  RunnerProbe probe_;
  std::unique_ptr<CheckpointStore> store_;
  std::unique_ptr<StoreStateReader> state_reader_;
  std::unique_ptr<ConsumerGroup> consumer_;
  std::unique_ptr<OutputSink> sink_;
  std::unique_ptr<StateChangelog> changelog_;
  CounterContinuity counters_;
  bool publish_due_ = false;
  // The last checkpoint while its sync runs: what waits for it.
  struct Syncing {
    uint64_t ticket = 0;
    SteadyClock::time_point started{};
    OutputSink::Staged outbox;
    std::vector<OutputRecord> records;  // staged in its outbox, sent once it is durable
  };
  std::optional<Syncing> syncing_;
  SteadyClock::time_point prepared_at_{};  // when the snapshot publish_due_ names was built
  bool assigned_once_ = false;             // publish nothing before the first assignment
  uint64_t changelog_failed_mark_ = 0;
  // failed_total() when this interval's first write-ahead record went out.
  std::optional<uint64_t> ahead_failed_mark_;
  size_t write_ahead_min_ids_ = kWriteAheadMinIds;
  size_t restoring_ = 0;  // assigned partitions not restored yet
  PartitionTable slots_;
  Backpressure backpressure_;  // after topology_ and slots_
  WallClock::time_point wall_now_{};
  bool checkpoint_failing_ = false;
  bool stopping_ = false;
  bool abandoned_ = false;  // fatal error: leave the group without touching the store
  size_t state_bytes_ = 0;
  Error fatal_;
  RunnerTestHooks hooks_;
};

}  // namespace

Result<std::unique_ptr<Runner>> Runner::create(const Config& config,
                                               const std::string& bootstrap_servers,
                                               HttpServer* http, const RunnerTestHooks& hooks) {
  auto runner = std::make_unique<RunnerImpl>(config, http);
  if (auto s = runner->init(bootstrap_servers, hooks); !s) return tl::unexpected(s.error());
  return std::unique_ptr<Runner>(std::move(runner));
}

}  // namespace sp
