// The state changelog (issue #15) against a real in-process EmbeddedBroker: what ChangelogWriter
// produces, ChangelogRestorer reads back as the last complete checkpoint, and nothing else.
#include "pipeline/changelog.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "operators/keyed_state.h"
#include "pipeline/embedded_broker.h"
#include "pipeline/kafka.h"

namespace sp {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::seconds;

constexpr const char* kTopic = "socialpulse.state";
constexpr int kPartitions = 4;

PartitionId pid_of(int topic_index, int partition) {
  return PartitionId{topic_index * 65536 + partition};
}

// A full state key as Topology::checkpoint writes it.
std::string key(std::string_view owner, PartitionId pid, std::string_view rest) {
  return state_scope(owner, pid) + std::string(rest);
}

using Model = std::map<std::string, std::string, std::less<>>;

class ChangelogTest : public ::testing::Test {
 protected:
  void SetUp() override { start(ChangelogWriter::Options{}); }

  void start(ChangelogWriter::Options options) {
    auto broker = EmbeddedBroker::start();
    ASSERT_TRUE(broker) << broker.error().message;
    broker_ = std::move(*broker);
    ASSERT_TRUE(broker_->create_state_topic(kTopic, kPartitions));
    producer_ = make_producer();
    ASSERT_TRUE(producer_);
    writer_ = std::make_unique<ChangelogWriter>(producer_.get(), kTopic, options);
  }

  void TearDown() override {
    if (producer_) rd_kafka_flush(producer_.get(), 10'000);
    writer_.reset();
    producer_.reset();
  }

  KafkaHandle make_producer() {
    std::map<std::string, std::string> settings{{"bootstrap.servers", broker_->bootstrap_servers()},
                                                {"linger.ms", "5"},
                                                {"log_level", "3"}};
    add_changelog_producer_settings(settings);
    auto conf = make_kafka_conf(settings);
    EXPECT_TRUE(conf) << conf.error().message;
    if (!conf) return nullptr;
    rd_kafka_conf_set_opaque(conf->get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf->get(), &ChangelogTest::on_delivery);
    auto handle = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
    EXPECT_TRUE(handle) << handle.error().message;
    return handle ? std::move(*handle) : nullptr;
  }

  // The owner's delivery callback: the writer's reports first, as the runner must do.
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
    auto* self = static_cast<ChangelogTest*>(opaque);
    if (self->writer_ && self->writer_->on_delivery(msg)) return;
    ++self->own_reports_;
  }

  void poll(Millis max_wait) { rd_kafka_poll(producer_.get(), static_cast<int>(max_wait.count())); }

  bool settle(const std::vector<PartitionId>& pids) {
    return writer_->wait_acked(pids, SteadyClock::now() + seconds(30),
                               [this](Millis w) { poll(w); });
  }

  Result<std::optional<RestoredPartition>> restore(PartitionId pid,
                                                   Millis budget = Millis{30'000}) {
    ChangelogRestorer restorer({{"bootstrap.servers", broker_->bootstrap_servers()}}, kTopic);
    return restorer.restore(pid, SteadyClock::now() + budget);
  }

  RestoredPartition restore_found(PartitionId pid) {
    auto r = restore(pid);
    EXPECT_TRUE(r) << r.error().message;
    if (!r) return {};
    EXPECT_TRUE(r->has_value()) << "no checkpoint restored for pid " << pid.value;
    return r->has_value() ? std::move(**r) : RestoredPartition{};
  }

  // One checkpoint of pid: the changes to the model, then the marker.
  void checkpoint(PartitionId pid, Model& model, const Model& puts,
                  const std::vector<std::string>& removes, uint64_t seq, Offset next) {
    for (const auto& [k, v] : puts) {
      writer_->put(k, v);
      model[k] = v;
    }
    for (const auto& k : removes) {
      writer_->remove(k);
      model.erase(k);
    }
    ASSERT_TRUE(writer_->end_checkpoint(pid, seq, next));
  }

  // The partition's retained range [first, end).
  std::pair<int64_t, int64_t> watermarks(int partition) {
    int64_t low = -1;
    int64_t high = -1;
    EXPECT_EQ(
        rd_kafka_query_watermark_offsets(producer_.get(), kTopic, partition, &low, &high, 10'000),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    return {low, high};
  }

  std::unique_ptr<EmbeddedBroker> broker_;
  KafkaHandle producer_;
  std::unique_ptr<ChangelogWriter> writer_;
  int own_reports_ = 0;
};

// ---- record format -------------------------------------------------------------------------

TEST(ChangelogFormat, StateKeysNameTheirPartitionAndGlobalKeysNone) {
  EXPECT_EQ(state_key_partition(key("minute", pid_of(0, 3), "acme|web|60000")), pid_of(0, 3));
  EXPECT_EQ(state_key_partition(key("dedup", pid_of(2, 7), "seg/1")), pid_of(2, 7));
  EXPECT_EQ(state_key_partition(key("kpi_counters", kGlobalPartition, "x")), std::nullopt);
  EXPECT_EQ(state_key_partition("input/00000003"), std::nullopt);  // no key after the scope
  EXPECT_EQ(state_key_partition("checkpoint/00000003"), std::nullopt);
  EXPECT_EQ(state_key_partition("input/0000000G/position"), std::nullopt);
  EXPECT_EQ(state_key_partition("/00000003/x"), std::nullopt);
}

TEST(ChangelogFormat, PartitionIsTheInputPartitionNumber) {
  EXPECT_EQ(changelog_partition(pid_of(0, 5)), 5);
  EXPECT_EQ(changelog_partition(pid_of(3, 5)), 5);
  EXPECT_EQ(checkpoint_marker_key(pid_of(1, 2)), "checkpoint/00010002");
  EXPECT_EQ(snapshot_marker_key(pid_of(0, 10)), "snapshot/0000000a");
}

TEST(ChangelogFormat, CheckpointMarkerRoundTripsLittleEndian) {
  const std::string bytes = encode_checkpoint_marker({0x0102030405060708ULL, Offset{258}});
  ASSERT_EQ(bytes.size(), 20u);
  EXPECT_EQ(bytes.substr(0, 4), std::string("\x01\0\0\0", 4));  // format 1
  EXPECT_EQ(bytes[4], '\x08');
  EXPECT_EQ(bytes[12], '\x02');
  EXPECT_EQ(bytes[13], '\x01');
  auto marker = decode_checkpoint_marker(bytes);
  ASSERT_TRUE(marker);
  EXPECT_EQ(marker->seq, 0x0102030405060708ULL);
  EXPECT_EQ(marker->next_offset, Offset{258});
}

TEST(ChangelogFormat, MarkersOfAnotherFormatAreRefused) {
  std::string bytes = encode_checkpoint_marker({1, Offset{1}});
  bytes[0] = 2;
  auto marker = decode_checkpoint_marker(bytes);
  ASSERT_FALSE(marker);
  EXPECT_NE(marker.error().message.find("format 2"), std::string::npos) << marker.error().message;
  EXPECT_FALSE(decode_checkpoint_marker(bytes.substr(0, 3)));
  EXPECT_FALSE(decode_checkpoint_marker(encode_checkpoint_marker({1, Offset{1}}) + "x"));
}

// ---- writer and restorer -------------------------------------------------------------------

TEST_F(ChangelogTest, SeveralCheckpointsOfTwoPartitionsRestoreToTheLastOne) {
  const PartitionId a = pid_of(0, 0);
  const PartitionId b = pid_of(0, 1);
  Model model_a;
  Model model_b;
  for (PartitionId pid : {a, b}) {
    ASSERT_TRUE(writer_->snapshot_due(pid));  // nothing of it written by this writer yet
    writer_->begin_snapshot(pid);
  }
  checkpoint(a, model_a, {{key("minute", a, "k1"), "a1"}, {key("dedup", a, "s1"), "d1"}}, {}, 1,
             Offset{10});
  checkpoint(b, model_b, {{key("minute", b, "k1"), "b1"}}, {}, 1, Offset{20});
  checkpoint(a, model_a, {{key("minute", a, "k1"), "a1'"}, {key("minute", a, "k2"), "a2"}},
             {key("dedup", a, "s1")}, 2, Offset{15});
  checkpoint(b, model_b, {{key("input", b, "position"), "p"}}, {key("minute", b, "k1")}, 2,
             Offset{25});
  checkpoint(a, model_a, {{key("input", a, "position"), std::string("\0\1\2", 3)}}, {}, 3,
             Offset{19});
  ASSERT_TRUE(settle({a, b}));

  const RestoredPartition ra = restore_found(a);
  EXPECT_EQ(ra.state.entries(), model_a);
  EXPECT_EQ(ra.checkpoint_seq, 3u);
  EXPECT_EQ(ra.next_offset, Offset{19});
  EXPECT_EQ(ra.records_after_checkpoint, 0u);
  const RestoredPartition rb = restore_found(b);
  EXPECT_EQ(rb.state.entries(), model_b);
  EXPECT_EQ(rb.checkpoint_seq, 2u);
  EXPECT_EQ(rb.next_offset, Offset{25});
}

// One state key is one record, and a partition's sessions are one key: found by bench_recovery,
// 2.5 MB of sessions were refused by the 1 MB default and the partition could never move.
TEST_F(ChangelogTest, AStateValueOverAMegabyteIsWrittenAndRestored) {
  const PartitionId a = pid_of(0, 0);
  Model model;
  writer_->begin_snapshot(a);
  std::string big(3'000'000, 's');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + i % 26);
  checkpoint(a, model, {{key("sessions", a, "sessions"), big}}, {}, 1, Offset{7});
  ASSERT_TRUE(settle({a}));
  const RestoredPartition r = restore_found(a);
  EXPECT_EQ(r.state.entries(), model);
  EXPECT_EQ(r.next_offset, Offset{7});
}

TEST_F(ChangelogTest, DeliveryReportsAreCountedPerPartitionAndOnlyTheWritersAreTaken) {
  const PartitionId a = pid_of(0, 2);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k"), "0123456789"}}, {}, 1, Offset{1});
  // A record of the owner's own, to another topic, through the same producer.
  ASSERT_TRUE(broker_->create_topic("other", 1));
  ASSERT_EQ(rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC("other"),
                              RD_KAFKA_V_VALUE(const_cast<char*>("x"), 1), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(writer_->produced(a), 3u);  // snapshot marker, record, checkpoint marker
  ASSERT_TRUE(settle({a}));
  EXPECT_EQ(writer_->acked(a), 3u);
  EXPECT_EQ(writer_->failed(a), 0u);
  rd_kafka_flush(producer_.get(), 10'000);
  EXPECT_EQ(own_reports_, 1);
  const uint64_t record = key("minute", a, "k").size() + 10;
  const uint64_t markers = snapshot_marker_key(a).size() + 4 + checkpoint_marker_key(a).size() + 20;
  EXPECT_EQ(writer_->bytes_total(), record + markers);
}

TEST_F(ChangelogTest, AnIncompleteLastCheckpointIsIgnored) {
  const PartitionId a = pid_of(0, 0);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k1"), "v1"}, {key("minute", a, "k2"), "v2"}}, {}, 7,
             Offset{100});
  // Checkpoint 8 dies before its marker.
  writer_->put(key("minute", a, "k1"), "half-written");
  writer_->remove(key("minute", a, "k2"));
  writer_->put(key("minute", a, "k3"), "new");
  ASSERT_TRUE(settle({a}));

  const RestoredPartition r = restore_found(a);
  EXPECT_EQ(r.state.entries(), model);
  EXPECT_EQ(r.checkpoint_seq, 7u);
  EXPECT_EQ(r.next_offset, Offset{100});
  EXPECT_EQ(r.records_after_checkpoint, 3u);
}

TEST_F(ChangelogTest, ASnapshotMarkerRestartsTheState) {
  const PartitionId a = pid_of(0, 1);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k1"), "1"}, {key("minute", a, "k2"), "2"}}, {}, 1,
             Offset{5});
  // The full state at checkpoint 2 no longer has k1 and k2, and nothing removed them.
  writer_->begin_snapshot(a);
  Model full{{key("minute", a, "k3"), "3"}};
  model.clear();
  checkpoint(a, model, full, {}, 2, Offset{9});
  ASSERT_TRUE(settle({a}));

  const RestoredPartition r = restore_found(a);
  EXPECT_EQ(r.state.entries(), full);
  EXPECT_EQ(r.checkpoint_seq, 2u);
}

TEST_F(ChangelogTest, AnAbandonedSnapshotKeepsThePreviousCheckpoint) {
  const PartitionId a = pid_of(0, 1);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k1"), "1"}, {key("minute", a, "k2"), "2"}}, {}, 1,
             Offset{5});
  writer_->begin_snapshot(a);
  writer_->put(key("minute", a, "k1"), "1");  // the snapshot dies half-way
  ASSERT_TRUE(settle({a}));

  const RestoredPartition r = restore_found(a);
  EXPECT_EQ(r.state.entries(), model);
  EXPECT_EQ(r.checkpoint_seq, 1u);
  EXPECT_EQ(r.records_after_checkpoint, 2u);
}

TEST_F(ChangelogTest, RecordsOfAnotherPidOnTheSamePartitionAreIgnored) {
  // Input partition 3 of topics 0 and 1: both live in changelog partition 3.
  const PartitionId mine = pid_of(0, 3);
  const PartitionId other = pid_of(1, 3);
  ASSERT_EQ(changelog_partition(mine), changelog_partition(other));
  Model model_mine;
  Model model_other;
  writer_->begin_snapshot(mine);
  writer_->begin_snapshot(other);
  checkpoint(other, model_other, {{key("minute", other, "shared"), "other-1"}}, {}, 1, Offset{1});
  checkpoint(mine, model_mine, {{key("minute", mine, "shared"), "mine-1"}}, {}, 1, Offset{2});
  // The other pid snapshots, checkpoints and then abandons a checkpoint: none of it is mine.
  writer_->begin_snapshot(other);
  model_other.clear();
  checkpoint(other, model_other, {{key("minute", other, "o2"), "x"}}, {}, 2, Offset{3});
  writer_->put(key("minute", other, "o3"), "abandoned");
  checkpoint(mine, model_mine, {{key("minute", mine, "m2"), "mine-2"}}, {}, 2, Offset{4});
  ASSERT_TRUE(settle({mine, other}));

  const RestoredPartition r_mine = restore_found(mine);
  EXPECT_EQ(r_mine.state.entries(), model_mine);
  EXPECT_EQ(r_mine.checkpoint_seq, 2u);
  EXPECT_EQ(r_mine.next_offset, Offset{4});
  EXPECT_EQ(r_mine.records_after_checkpoint, 0u);
  const RestoredPartition r_other = restore_found(other);
  EXPECT_EQ(r_other.state.entries(), model_other);
  EXPECT_EQ(r_other.next_offset, Offset{3});
  EXPECT_EQ(r_other.records_after_checkpoint, 1u);
}

TEST_F(ChangelogTest, GlobalKeysAreNeverProduced) {
  writer_->put(key("kpi_counters", kGlobalPartition, "acme"), "123");
  writer_->remove(key("tracker", kGlobalPartition, "x"));
  writer_->put("topology/global/operators", "minute\n");
  writer_->put("not a state key", "x");
  EXPECT_TRUE(writer_->open_partitions().empty());
  EXPECT_EQ(writer_->bytes_total(), 0u);
  rd_kafka_flush(producer_.get(), 10'000);
  for (int p = 0; p < kPartitions; ++p) EXPECT_EQ(watermarks(p).second, 0) << "partition " << p;
}

TEST_F(ChangelogTest, EmptyValuesStayValuesAndRemovesAreTombstones) {
  const PartitionId a = pid_of(0, 0);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "empty"), ""}, {key("minute", a, "gone"), "x"}}, {}, 1,
             Offset{1});
  checkpoint(a, model, {}, {key("minute", a, "gone")}, 2, Offset{2});
  ASSERT_TRUE(settle({a}));

  const RestoredPartition r = restore_found(a);
  EXPECT_EQ(r.state.entries(), (Model{{key("minute", a, "empty"), ""}}));
}

TEST_F(ChangelogTest, OpenPartitionsAreThoseWithRecordsSinceTheirLastMarker) {
  const PartitionId a = pid_of(0, 0);
  const PartitionId b = pid_of(1, 2);
  writer_->put(key("minute", b, "k"), "v");
  writer_->put(key("minute", a, "k"), "v");
  EXPECT_EQ(writer_->open_partitions(), (std::vector<PartitionId>{a, b}));
  ASSERT_TRUE(writer_->end_checkpoint(a, 1, Offset{1}));
  EXPECT_EQ(writer_->open_partitions(), (std::vector<PartitionId>{b}));
}

TEST_F(ChangelogTest, NothingToRestoreFromAnEmptyOrMissingPartition) {
  auto empty = restore(pid_of(0, 2));
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_FALSE(empty->has_value());

  auto beyond = restore(pid_of(0, kPartitions + 3));  // the state topic has no such partition
  ASSERT_TRUE(beyond) << beyond.error().message;
  EXPECT_FALSE(beyond->has_value());

  ChangelogRestorer missing_topic({{"bootstrap.servers", broker_->bootstrap_servers()}},
                                  "no.such.topic");
  auto missing = missing_topic.restore(pid_of(0, 0), SteadyClock::now() + seconds(20));
  ASSERT_TRUE(missing) << missing.error().message;
  EXPECT_FALSE(missing->has_value());

  // Only another pid's complete checkpoints, and an incomplete one of this pid.
  Model model;
  writer_->begin_snapshot(pid_of(1, 1));
  checkpoint(pid_of(1, 1), model, {{key("minute", pid_of(1, 1), "k"), "v"}}, {}, 1, Offset{1});
  writer_->put(key("minute", pid_of(0, 1), "k"), "v");
  ASSERT_TRUE(settle({pid_of(1, 1), pid_of(0, 1)}));
  auto none = restore(pid_of(0, 1));
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_FALSE(none->has_value());
}

TEST_F(ChangelogTest, RestoreGivesUpAtTheDeadline) {
  const PartitionId a = pid_of(0, 0);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k"), "v"}}, {}, 1, Offset{1});
  ASSERT_TRUE(settle({a}));

  auto past = restore(a, Millis{-1});
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error().kind, ErrorKind::retryable);

  // A partition without a leader never answers a fetch.
  ASSERT_EQ(rd_kafka_mock_partition_set_leader(broker_->cluster(), kTopic, 0, -1),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto started = SteadyClock::now();
  auto stuck = restore(a, Millis{1500});
  const auto took = SteadyClock::now() - started;
  ASSERT_FALSE(stuck);
  EXPECT_EQ(stuck.error().kind, ErrorKind::retryable);
  EXPECT_NE(stuck.error().message.find("deadline"), std::string::npos) << stuck.error().message;
  EXPECT_GE(took, Millis{1400});
  EXPECT_LT(took, seconds(5));  // the deadline, plus closing the consumer
}

TEST_F(ChangelogTest, RestoreGivesUpAtTheDeadlineWhenTheBrokerAnswersTooSlowly) {
  const PartitionId a = pid_of(0, 0);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k"), "v"}}, {}, 1, Offset{1});
  ASSERT_TRUE(settle({a}));

  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(broker_->cluster(), 1, 20'000),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto started = SteadyClock::now();
  auto slow = restore(a, Millis{1500});
  const auto took = SteadyClock::now() - started;
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().kind, ErrorKind::retryable);
  EXPECT_NE(slow.error().message.find("deadline"), std::string::npos) << slow.error().message;
  EXPECT_LT(took, seconds(5));
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(broker_->cluster(), 1, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
}

TEST_F(ChangelogTest, ARecordTheProducerRefusesAbandonsTheCheckpoint) {
  const PartitionId a = pid_of(0, 3);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k"), "v1"}}, {}, 1, Offset{1});
  ASSERT_FALSE(writer_->snapshot_due(a));
  writer_->put(key("minute", a, "k"), "v2");
  writer_->put(key("minute", a, "huge"), std::string(kChangelogMaxRecordBytes + 1, 'x'));  // too large
  auto ended = writer_->end_checkpoint(a, 2, Offset{2});
  ASSERT_FALSE(ended);
  EXPECT_EQ(ended.error().kind, ErrorKind::retryable);
  EXPECT_TRUE(writer_->snapshot_due(a));
  EXPECT_FALSE(settle({a}));  // delivered, but the changelog does not hold checkpoint 2

  const RestoredPartition r = restore_found(a);
  EXPECT_EQ(r.state.entries(), model);
  EXPECT_EQ(r.checkpoint_seq, 1u);
}

// ---- snapshots and handover ----------------------------------------------------------------

TEST_F(ChangelogTest, ASnapshotIsDueAfterTheLastOneGrewByTheFactor) {
  TearDown();
  ChangelogWriter::Options options;
  options.min_snapshot_interval_bytes = 2000;
  options.snapshot_growth_factor = 4;
  start(options);
  const PartitionId a = pid_of(0, 0);
  Model model;
  writer_->begin_snapshot(a);
  Model full;
  for (int i = 0; i < 10; ++i)
    full[key("minute", a, "k" + std::to_string(i))] = std::string(100, 'v');
  checkpoint(a, model, full, {}, 1, Offset{1});  // ~1.3 KB: the interval is 4 x that
  uint64_t seq = 1;
  int deltas = 0;
  while (!writer_->snapshot_due(a)) {
    ++seq;
    checkpoint(a, model, {{key("minute", a, "k0"), std::string(100, 'w')}}, {}, seq,
               Offset{static_cast<int64_t>(seq)});
    ++deltas;
    ASSERT_LT(deltas, 1000);
  }
  // Each delta is one ~130-byte record plus its ~100-byte marker and batch: ~4 x 1.3 KB in all.
  EXPECT_GE(deltas, 15);
  EXPECT_LE(deltas, 30);
}

TEST_F(ChangelogTest, AContinuingOwnerWritesDeltasOnTopOfTheRestoredCheckpoint) {
  const PartitionId a = pid_of(0, 2);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k1"), "1"}, {key("minute", a, "k2"), "2"}}, {}, 1,
             Offset{10});
  checkpoint(a, model, {{key("minute", a, "k1"), "1'"}}, {}, 2, Offset{11});
  ASSERT_TRUE(settle({a}));
  writer_->release(a);  // handed over

  // The new owner: its own producer and writer, continuing from the changelog.
  KafkaHandle old_producer = std::move(producer_);
  std::unique_ptr<ChangelogWriter> old_writer = std::move(writer_);
  producer_ = make_producer();
  writer_ = std::make_unique<ChangelogWriter>(producer_.get(), kTopic);
  const RestoredPartition restored = restore_found(a);
  EXPECT_EQ(restored.state.entries(), model);
  EXPECT_TRUE(writer_->snapshot_due(a));
  writer_->resume(a, restored);
  EXPECT_FALSE(writer_->snapshot_due(a));  // the changelog ends with the restored checkpoint
  checkpoint(a, model, {{key("minute", a, "k3"), "3"}}, {key("minute", a, "k2")}, 3, Offset{12});
  ASSERT_TRUE(settle({a}));

  const RestoredPartition r = restore_found(a);
  EXPECT_EQ(r.state.entries(), model);
  EXPECT_EQ(r.checkpoint_seq, 3u);
  old_writer.reset();
}

TEST_F(ChangelogTest, AfterAnAbandonedCheckpointTheNextOwnerStartsWithASnapshot) {
  const PartitionId a = pid_of(0, 2);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k1"), "1"}, {key("minute", a, "k2"), "2"}}, {}, 1,
             Offset{10});
  writer_->put(key("minute", a, "k2"), "orphan");  // the old owner dies here
  writer_->put(key("minute", a, "k9"), "orphan");
  ASSERT_TRUE(settle({a}));

  const RestoredPartition restored = restore_found(a);
  EXPECT_EQ(restored.state.entries(), model);
  writer_->release(a);
  writer_->resume(a, restored);
  EXPECT_TRUE(writer_->snapshot_due(a));  // deltas would be applied on top of the orphans
  writer_->begin_snapshot(a);
  checkpoint(a, model, model, {}, 2, Offset{10});  // the full state
  checkpoint(a, model, {{key("minute", a, "k3"), "3"}}, {}, 3, Offset{11});
  ASSERT_TRUE(settle({a}));

  const RestoredPartition r = restore_found(a);
  EXPECT_EQ(r.state.entries(), model);
  EXPECT_FALSE(r.state.entries().contains(key("minute", a, "k9")));
  EXPECT_EQ(r.checkpoint_seq, 3u);
}

// Checkpoints of random changes to a state of GetParam() keys of ~1 KB, with full snapshots
// whenever the writer says so, on a broker that keeps kEmbeddedPartitionRetentionBytes.
class ChangelogRetentionTest : public ChangelogTest, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    ChangelogWriter::Options options;
    options.retention_bytes = kEmbeddedPartitionRetentionBytes;
    start(options);
  }

  void put(const std::string& k, const std::string& v) {
    writer_->put(k, v);
    written_ += k.size() + v.size();
  }

  // One checkpoint; `model`, `seq` and `snapshots` follow what the changelog holds once it ends.
  void checkpoint_step(PartitionId pid) {
    ++seq_;
    if (seq_ == 1 || writer_->snapshot_due(pid)) {
      writer_->begin_snapshot(pid);
      for (const auto& [k, v] : model_) put(k, v);
      ++snapshots_;
    }
    for (int i = 0; i < 40; ++i) {
      const std::string k = key("minute", pid, "k" + std::to_string(rng_() % GetParam()));
      if (rng_() % 5 == 0) {
        writer_->remove(k);
        written_ += k.size();
        model_.erase(k);
      } else {
        std::string v(600 + rng_() % 800, static_cast<char>('a' + rng_() % 26));
        put(k, v);
        model_[k] = std::move(v);
      }
    }
    EXPECT_TRUE(writer_->end_checkpoint(pid, seq_, next_offset()));
    poll(Millis{0});  // serve delivery reports, as the runner's loop does
  }

  Offset next_offset() const { return Offset{static_cast<int64_t>(seq_ * 40)}; }

  void expect_last_checkpoint(const RestoredPartition& r) {
    EXPECT_EQ(r.state.entries().size(), model_.size());
    EXPECT_TRUE(r.state.entries() == model_);
    EXPECT_EQ(r.checkpoint_seq, seq_);
    EXPECT_EQ(r.next_offset, next_offset());
    EXPECT_LE(r.bytes_read, kEmbeddedPartitionRetentionBytes);
  }

  std::mt19937 rng_{42};
  Model model_;
  uint64_t seq_ = 0;
  uint64_t written_ = 0;
  int snapshots_ = 0;
};

// 300 keys: a snapshot every max(1 MiB, 4 x ~0.3 MiB); 1500 keys: 4 x ~1.5 MiB would not fit in
// the retention beside the next snapshot, so the retention shortens the interval.
TEST_P(ChangelogRetentionTest, APartitionPastTheBrokersRetentionRestoresThroughItsSnapshots) {
  const PartitionId a = pid_of(0, 1);
  while (written_ < 4 * kEmbeddedPartitionRetentionBytes) checkpoint_step(a);
  ASSERT_TRUE(settle({a}));
  ASSERT_GT(watermarks(1).first, 0) << "the broker deleted nothing: this would not test retention";
  EXPECT_GE(snapshots_, 4);
  expect_last_checkpoint(restore_found(a));

  // The owner dies one record before the end of its next snapshot: the retention must still
  // hold the previous snapshot, the deltas since and this almost complete one.
  for (int i = 0; i < 1000 && !writer_->snapshot_due(a); ++i) checkpoint_step(a);
  ASSERT_TRUE(writer_->snapshot_due(a));
  ASSERT_TRUE(settle({a}));
  const RestoredPartition before_crash = restore_found(a);
  expect_last_checkpoint(before_crash);
  writer_->begin_snapshot(a);
  for (auto it = model_.begin(); std::next(it) != model_.end(); ++it) put(it->first, it->second);
  ASSERT_TRUE(settle({a}));
  const RestoredPartition r = restore_found(a);
  expect_last_checkpoint(r);
  EXPECT_EQ(r.records_after_checkpoint, model_.size());  // the marker and all keys but one
}

INSTANTIATE_TEST_SUITE_P(StateSizes, ChangelogRetentionTest, ::testing::Values(300, 1500));

TEST_F(ChangelogTest, APartitionTruncatedBeforeAnySnapshotIsReportedNotGuessed) {
  TearDown();
  ChangelogWriter::Options options;
  options.retention_bytes = kEmbeddedPartitionRetentionBytes;
  start(options);
  const PartitionId a = pid_of(0, 1);
  Model model;
  writer_->begin_snapshot(a);  // the only snapshot: deleted long before the end
  uint64_t seq = 0;
  for (uint64_t written = 0; written < 2 * kEmbeddedPartitionRetentionBytes;) {
    ++seq;
    const std::string v(4000, static_cast<char>('a' + seq % 26));
    checkpoint(a, model, {{key("minute", a, "k" + std::to_string(seq % 50)), v}}, {}, seq,
               Offset{static_cast<int64_t>(seq)});
    written += v.size();
    poll(Millis{0});
  }
  ASSERT_TRUE(settle({a}));
  ASSERT_GT(watermarks(1).first, 0);

  auto r = restore(a);
  ASSERT_FALSE(r) << "restored a state whose beginning was deleted";
  EXPECT_EQ(r.error().kind, ErrorKind::fatal);
  EXPECT_NE(r.error().message.find("no complete snapshot"), std::string::npos) << r.error().message;
}

// ---- the state topic on a real Kafka -------------------------------------------------------

TEST(StateTopic, IsCreatedCompactedWithTheInputPartitions) {
  const StateTopicSpec spec = state_topic_spec("socialpulse.state", 12);
  EXPECT_EQ(spec.topic, "socialpulse.state");
  EXPECT_EQ(spec.partitions, 12);
  EXPECT_EQ(spec.replication_factor, -1);
  EXPECT_EQ(spec.configs.at("cleanup.policy"), "compact");
  EXPECT_TRUE(spec.configs.contains("min.compaction.lag.ms"));
  auto request = make_new_topic(spec);
  ASSERT_TRUE(request) << request.error().message;
  EXPECT_NE(request->get(), nullptr);
}

TEST(StateTopic, RequestBuildingRefusesWhatTheBrokerWould) {
  for (int partitions : {0, -1}) {  // librdkafka would send both (-1: the broker's default)
    auto refused = make_new_topic(state_topic_spec("s", partitions));
    ASSERT_FALSE(refused) << partitions;
    EXPECT_NE(refused.error().message.find("state topic s"), std::string::npos);
  }
}

TEST(StateTopic, APresentTopicMustBeCompacted) {
  EXPECT_TRUE(check_state_topic("s", "compact", 8, 8));
  EXPECT_TRUE(check_state_topic("s", "compact,delete", 8, 8));
  EXPECT_TRUE(check_state_topic("s", "delete, compact", 8, 4));
  auto deleting = check_state_topic("s", "delete", 8, 8);
  ASSERT_FALSE(deleting);
  EXPECT_EQ(deleting.error().kind, ErrorKind::invalid_input);
  EXPECT_NE(deleting.error().message.find("cleanup.policy=delete"), std::string::npos);
  EXPECT_NE(deleting.error().message.find("--add-config cleanup.policy=compact"),
            std::string::npos);
  EXPECT_FALSE(check_state_topic("s", "compacted", 8, 8));
}

TEST(StateTopic, APresentTopicNeedsAPartitionPerInputPartition) {
  auto few = check_state_topic("s", "compact", 4, 8);
  ASSERT_FALSE(few);
  EXPECT_NE(few.error().message.find("4 partitions"), std::string::npos) << few.error().message;
  EXPECT_NE(few.error().message.find("--partitions 8"), std::string::npos) << few.error().message;
}

// The mock answers neither CreateTopics nor DescribeConfigs: ensure_state_topic() must say so
// within its timeout, never hang (and the embedded broker creates the topic itself instead).
TEST(StateTopic, EnsureGivesAClearErrorWithinItsTimeoutWhenTheBrokerCannotAnswer) {
  auto broker = EmbeddedBroker::start();
  ASSERT_TRUE(broker);
  ASSERT_TRUE((*broker)->create_topic("in", 3));
  const std::map<std::string, std::string> settings{
      {"bootstrap.servers", (*broker)->bootstrap_servers()}};
  for (bool present : {false, true}) {
    SCOPED_TRACE(present ? "present" : "missing");
    if (present) {
      ASSERT_TRUE((*broker)->create_state_topic("socialpulse.state", 3));
    }
    const auto started = SteadyClock::now();
    auto s = ensure_state_topic(settings, "socialpulse.state", {"in"}, Millis{3000});
    EXPECT_LT(SteadyClock::now() - started, seconds(6));
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message.find("state topic socialpulse.state"), std::string::npos)
        << s.error().message;
  }
  auto no_input = ensure_state_topic(settings, "socialpulse.state", {"absent"}, Millis{3000});
  ASSERT_FALSE(no_input);
  EXPECT_NE(no_input.error().message.find("none of the input topics"), std::string::npos)
      << no_input.error().message;
}

}  // namespace
}  // namespace sp
