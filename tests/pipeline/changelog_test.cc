// The state changelog (issue #15) against a real in-process EmbeddedBroker: what ChangelogWriter
// produces, ChangelogRestorer reads back as the last complete checkpoint, and nothing else.
#include "pipeline/changelog.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "operators/keyed_state.h"
#include "pipeline/embedded_broker.h"
#include "pipeline/kafka.h"
#include "tests/support/test_support.h"

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
  static void on_delivery(rd_kafka_t* rk, const rd_kafka_message_t* msg, void* opaque) {
    auto* self = static_cast<ChangelogTest*>(opaque);
    if (self->writer_ && self->writer_->on_delivery(msg)) {
      self->partitions_by_producer_[rk].insert(msg->partition);
      return;
    }
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
  // The changelog partitions each producer delivered the writer's records to.
  std::map<rd_kafka_t*, std::set<int32_t>> partitions_by_producer_;
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
  bytes[0] = 3;
  auto marker = decode_checkpoint_marker(bytes);
  ASSERT_FALSE(marker);
  EXPECT_NE(marker.error().message.find("format 3"), std::string::npos) << marker.error().message;
  EXPECT_FALSE(decode_checkpoint_marker(bytes.substr(0, 3)));
  EXPECT_FALSE(decode_checkpoint_marker(encode_checkpoint_marker({1, Offset{1}}) + "x"));
}

// A checkpoint whose state holds a chunked value is marked format 2, which versions before
// chunking refuse (instead of restoring the value's first chunk as the whole).
TEST(ChangelogFormat, AChunkedStatesMarkerIsFormatTwo) {
  const std::string bytes = encode_checkpoint_marker({7, Offset{9}, true});
  EXPECT_EQ(bytes.substr(0, 4), std::string("\x02\0\0\0", 4));
  auto marker = decode_checkpoint_marker(bytes);
  ASSERT_TRUE(marker);
  EXPECT_TRUE(marker->chunked);
  EXPECT_EQ(marker->seq, 7u);
  EXPECT_FALSE(decode_checkpoint_marker(encode_checkpoint_marker({7, Offset{9}}))->chunked);
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

// A writer with several producers (StateChangelog's lanes) sends each pid's records through one
// of them, its changelog partition modulo their number: one producer per partition keeps the
// records in order (a marker never overtakes a record it covers), and every lane takes a share.
TEST_F(ChangelogTest, EachPartitionsRecordsGoThroughOneOfSeveralProducers) {
  std::vector<KafkaHandle> lanes;
  for (int i = 0; i < 3; ++i) {
    lanes.push_back(make_producer());
    ASSERT_TRUE(lanes.back());
  }
  writer_ = std::make_unique<ChangelogWriter>(
      std::vector<rd_kafka_t*>{lanes[0].get(), lanes[1].get(), lanes[2].get()}, kTopic,
      ChangelogWriter::Options{});
  std::vector<PartitionId> pids;
  std::map<PartitionId, Model> models;
  for (int p = 0; p < kPartitions; ++p) {
    pids.push_back(pid_of(0, p));
    writer_->begin_snapshot(pids.back());
  }
  for (uint64_t seq = 1; seq <= 20; ++seq) {
    for (PartitionId pid : pids) {
      const std::string n = std::to_string(seq);
      checkpoint(pid, models[pid], {{key("minute", pid, "k" + n), "v" + n},
                                    {key("minute", pid, "last"), n}},
                 seq > 1 ? std::vector<std::string>{key("minute", pid, "k" + std::to_string(seq - 1))}
                         : std::vector<std::string>{},
                 seq, Offset{static_cast<int64_t>(seq * 10)});
    }
  }
  ASSERT_TRUE(writer_->wait_acked(pids, SteadyClock::now() + seconds(30), [&](Millis w) {
    for (auto& lane : lanes) rd_kafka_poll(lane.get(), 0);
    std::this_thread::sleep_for(std::min(w, Millis{1}));
  }));
  for (PartitionId pid : pids) {
    const RestoredPartition r = restore_found(pid);
    EXPECT_EQ(r.state.entries(), models[pid]) << "pid " << pid.value;
    EXPECT_EQ(r.checkpoint_seq, 20u);
    EXPECT_EQ(r.next_offset, Offset{200});
  }
  for (size_t i = 0; i < lanes.size(); ++i) {
    std::set<int32_t> expected;
    for (int p = 0; p < kPartitions; ++p) {
      if (static_cast<size_t>(p) % lanes.size() == i) expected.insert(p);
    }
    EXPECT_EQ(partitions_by_producer_[lanes[i].get()], expected) << "producer " << i;
  }
  EXPECT_EQ(partitions_by_producer_[producer_.get()], std::set<int32_t>{});
  for (auto& lane : lanes) rd_kafka_flush(lane.get(), 10'000);
  writer_.reset();
}

// ---- values larger than a record ----------------------------------------------------------

// Bytes that differ everywhere, so a chunk in the wrong place or a stale one shows.
std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// One record of the state topic as the broker holds it.
struct RawRecord {
  std::string key;
  std::optional<std::string> value;
  std::optional<std::string> chunks;  // the sp.chunks header (a chunked value's head)
  std::optional<std::string> chunk;   // the sp.chunk header (its other chunks)
  size_t header_bytes = 0;
};

RawRecord plain(std::string key, std::string value) {
  RawRecord r;
  r.key = std::move(key);
  r.value = std::move(value);
  return r;
}

class ChangelogChunkTest : public ChangelogTest {
 protected:
  // Every record of `partition` of `topic`, in log order.
  std::vector<RawRecord> read_all(const std::string& topic, int partition) {
    std::vector<RawRecord> out;
    std::map<std::string, std::string> settings{{"bootstrap.servers", broker_->bootstrap_servers()},
                                                {"group.id", "chunk-test"},
                                                {"enable.partition.eof", "true"},
                                                {"log_level", "3"}};
    auto conf = make_kafka_conf(settings);
    EXPECT_TRUE(conf);
    if (!conf) return out;
    auto handle = make_kafka_handle(RD_KAFKA_CONSUMER, std::move(*conf));
    EXPECT_TRUE(handle);
    if (!handle) return out;
    rd_kafka_t* rk = handle->get();
    KafkaPartitionList list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    EXPECT_EQ(rd_kafka_assign(rk, list.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
    const auto deadline = SteadyClock::now() + seconds(30);
    while (SteadyClock::now() < deadline) {
      KafkaMessage msg(rd_kafka_consumer_poll(rk, 100));
      if (!msg) continue;
      if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) break;
      if (msg->err) continue;
      RawRecord r;
      r.key.assign(static_cast<const char*>(msg->key), msg->key_len);
      if (msg->payload) r.value.emplace(static_cast<const char*>(msg->payload), msg->len);
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(msg.get(), &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name = nullptr;
        const void* v = nullptr;
        size_t size = 0;
        for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &v, &size) == 0; ++i) {
          r.header_bytes += std::strlen(name) + size;
          if (std::string_view(name) == "sp.chunks")
            r.chunks.emplace(static_cast<const char*>(v), size);
          if (std::string_view(name) == "sp.chunk") r.chunk.emplace(static_cast<const char*>(v), size);
        }
      }
      out.push_back(std::move(r));
    }
    rd_kafka_consumer_close(rk);
    return out;
  }

  void produce_raw(rd_kafka_t* producer, const std::string& topic, int partition,
                   const RawRecord& r) {
    rd_kafka_headers_t* headers = rd_kafka_headers_new(1);
    if (r.chunks) {
      rd_kafka_header_add(headers, "sp.chunks", -1, r.chunks->data(),
                          static_cast<ssize_t>(r.chunks->size()));
    }
    if (r.chunk) {
      rd_kafka_header_add(headers, "sp.chunk", -1, r.chunk->data(), static_cast<ssize_t>(r.chunk->size()));
    }
    char* payload = r.value ? const_cast<char*>(r.value->data()) : nullptr;
    const size_t len = r.value ? r.value->size() : 0;
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(const_cast<char*>(r.key.data()), r.key.size()),
        RD_KAFKA_V_VALUE(payload, len),
        RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
  }

  // What a compacted topic can hold after its cleaner ran: the last record of each key, in log
  // order; `drop_tombstones`: also after delete.retention.ms removed the tombstones.
  static std::vector<RawRecord> compacted(const std::vector<RawRecord>& log,
                                          bool drop_tombstones) {
    std::map<std::string, size_t> last;
    for (size_t i = 0; i < log.size(); ++i) last[log[i].key] = i;
    std::vector<RawRecord> out;
    for (size_t i = 0; i < log.size(); ++i) {
      if (last[log[i].key] != i || (drop_tombstones && !log[i].value)) continue;
      out.push_back(log[i]);
    }
    return out;
  }

  // Restores pid from `records` written to a topic of their own (from offset 0, like a
  // compacted topic).
  Result<std::optional<RestoredPartition>> restore_from(const std::vector<RawRecord>& records,
                                                        PartitionId pid) {
    const std::string topic = "copy" + std::to_string(copies_++);
    EXPECT_TRUE(broker_->create_topic(topic, kPartitions));
    const int partition = changelog_partition(pid);
    for (const RawRecord& r : records) produce_raw(producer_.get(), topic, partition, r);
    EXPECT_EQ(rd_kafka_flush(producer_.get(), 30'000), RD_KAFKA_RESP_ERR_NO_ERROR);
    ChangelogRestorer restorer({{"bootstrap.servers", broker_->bootstrap_servers()}}, topic);
    return restorer.restore(pid, SteadyClock::now() + seconds(30));
  }

  void expect_restored_from(const std::vector<RawRecord>& records, PartitionId pid,
                            const Model& model) {
    auto r = restore_from(records, pid);
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_TRUE(r->has_value());
    EXPECT_TRUE((*r)->state.entries() == model);
  }

  static std::string chunk_key(PartitionId pid, uint32_t index, const std::string& state_key) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "chunk/%08x:%08x/", static_cast<uint32_t>(pid.value), index);
    return buf + state_key;
  }

  // The embedded broker keeps ~5 MiB per partition: tests that write several large values use
  // 100 kB records, so that nothing they need is deleted.
  void use_small_records() { writer_ = make_writer(); }
  std::unique_ptr<ChangelogWriter> make_writer() {
    ChangelogWriter::Options options;
    options.max_record_bytes = kSmallRecord;
    return std::make_unique<ChangelogWriter>(producer_.get(), kTopic, options);
  }
  static constexpr size_t kSmallRecord = 100'000;

  int copies_ = 0;
};

TEST_F(ChangelogChunkTest, AValueLargerThanARecordIsSplitAndRestoredByteIdentical) {
  const PartitionId a = pid_of(1, 2);
  const std::string k = key("sessions", a, "sessions");
  const std::string big = random_bytes(2'500'000, 1);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{k, big}, {key("minute", a, "small"), "s"}}, {}, 1, Offset{7});
  ASSERT_TRUE(settle({a}));

  const auto log = read_all(kTopic, 2);
  size_t largest = 0;
  size_t heads = 0;
  size_t chunks = 0;
  for (const RawRecord& r : log) {
    largest = std::max(largest, r.key.size() + (r.value ? r.value->size() : 0) + r.header_bytes);
    if (r.chunks) ++heads;
    if (r.key.starts_with("chunk/")) ++chunks;
  }
  EXPECT_LE(largest, kChangelogDefaultMaxRecordBytes);
  EXPECT_GT(largest, kChangelogDefaultMaxRecordBytes - 1000);  // chunks are as large as allowed
  EXPECT_EQ(heads, 1u);
  EXPECT_EQ(chunks, 2u);  // 2.5 MB: the head and two chunks
  EXPECT_EQ(writer_->produced(a), 6u);
  ASSERT_EQ(log.back().key, checkpoint_marker_key(a));
  EXPECT_TRUE(decode_checkpoint_marker(*log.back().value)->chunked);

  const RestoredPartition r = restore_found(a);
  ASSERT_TRUE(r.state.entries().contains(k));
  EXPECT_TRUE(r.state.entries().at(k) == big);
  EXPECT_TRUE(r.state.entries() == model);
  EXPECT_EQ(r.next_offset, Offset{7});
  EXPECT_EQ(r.chunk_counts.at(k), 3u);
}

TEST_F(ChangelogChunkTest, TheRecordLimitFollowsTheOption) {
  const PartitionId a = pid_of(0, 1);
  ChangelogWriter::Options options;
  options.max_record_bytes = 100'000;
  writer_ = std::make_unique<ChangelogWriter>(producer_.get(), kTopic, options);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("sessions", a, "s"), random_bytes(1'000'000, 2)}}, {}, 1, Offset{1});
  ASSERT_TRUE(settle({a}));
  size_t records = 0;
  for (const RawRecord& r : read_all(kTopic, 1)) {
    EXPECT_LE(r.key.size() + (r.value ? r.value->size() : 0) + r.header_bytes, 100'000u);
    ++records;
  }
  EXPECT_EQ(records, 11u + 2u);  // 11 records of < 100 kB, two markers
  EXPECT_TRUE(restore_found(a).state.entries() == model);
}

// A value whose chunk count shrinks (3, 2, 1 record, then removed): the writer tombstones the
// chunks it knows became stale, and what compaction leaves restores to the same state.
TEST_F(ChangelogChunkTest, AValueThatShrinksLeavesNoStaleChunkThatShows) {
  const PartitionId a = pid_of(0, 0);
  const std::string k = key("sessions", a, "sessions");
  use_small_records();
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{k, random_bytes(250'000, 3)}}, {}, 1, Offset{1});
  checkpoint(a, model, {{k, random_bytes(150'000, 4)}}, {}, 2, Offset{2});
  ASSERT_TRUE(settle({a}));
  EXPECT_TRUE(restore_found(a).state.entries() == model);
  checkpoint(a, model, {{k, "small now"}}, {}, 3, Offset{3});
  ASSERT_TRUE(settle({a}));
  EXPECT_TRUE(restore_found(a).state.entries() == model);

  const auto log = read_all(kTopic, 0);
  // No chunked value left: readers before chunking could read this checkpoint again.
  ASSERT_EQ(log.back().key, checkpoint_marker_key(a));
  EXPECT_FALSE(decode_checkpoint_marker(*log.back().value)->chunked);
  for (const RawRecord& r : compacted(log, false)) {
    // Every chunk was superseded: the cleaner reclaims them all.
    if (r.key.starts_with("chunk/")) {
      EXPECT_FALSE(r.value) << "stale chunk kept: " << r.key;
    }
  }
  expect_restored_from(compacted(log, false), a, model);
  expect_restored_from(compacted(log, true), a, model);

  checkpoint(a, model, {{k, random_bytes(210'000, 5)}}, {}, 4, Offset{4});
  checkpoint(a, model, {}, {k}, 5, Offset{5});
  ASSERT_TRUE(settle({a}));
  EXPECT_TRUE(restore_found(a).state.entries() == model);
  const auto removed = read_all(kTopic, 0);
  expect_restored_from(compacted(removed, false), a, model);
  expect_restored_from(compacted(removed, true), a, model);
  for (const RawRecord& r : compacted(removed, true)) {
    EXPECT_FALSE(r.key.starts_with("chunk/")) << "stale chunk kept: " << r.key;
  }
}

// A new owner does not know how many chunks the old one wrote: its shorter value leaves stale
// chunks on a compacted topic, which never show, even once the key is removed and its
// tombstone is gone.
TEST_F(ChangelogChunkTest, StaleChunksOfAnEarlierOwnerAreHarmless) {
  const PartitionId a = pid_of(0, 3);
  const std::string k = key("sessions", a, "sessions");
  use_small_records();
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{k, random_bytes(350'000, 6)}}, {}, 1, Offset{1});
  ASSERT_TRUE(settle({a}));

  writer_ = make_writer();  // the next owner
  ASSERT_TRUE(writer_->snapshot_due(a));
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{k, random_bytes(120'000, 7)}}, {}, 2, Offset{2});
  ASSERT_TRUE(settle({a}));
  EXPECT_TRUE(restore_found(a).state.entries() == model);
  const auto log = read_all(kTopic, 3);
  size_t stale = 0;
  for (const RawRecord& r : compacted(log, true)) stale += r.key.starts_with("chunk/") ? 1 : 0;
  EXPECT_EQ(stale, 3u);  // chunk 1 of the new value, chunks 2 and 3 of the first
  expect_restored_from(compacted(log, false), a, model);

  writer_ = make_writer();
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "other"), "x"}}, {k}, 3, Offset{3});
  ASSERT_TRUE(settle({a}));
  const auto removed = read_all(kTopic, 3);
  expect_restored_from(compacted(removed, false), a, model);
  expect_restored_from(compacted(removed, true), a, model);
}

// The old owner dies in the middle of a chunked value: its chunks without their head (and
// without a marker) never mix into the last complete checkpoint, nor into the next owner's.
TEST_F(ChangelogChunkTest, AnAbandonedCheckpointsPartialChunksAreDiscarded) {
  const PartitionId a = pid_of(0, 2);
  const std::string k = key("sessions", a, "sessions");
  use_small_records();
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{k, random_bytes(250'000, 8)}}, {}, 1, Offset{1});
  ASSERT_TRUE(settle({a}));
  // What the writer of checkpoint 2 produced before it died: chunks 1 and 2 of a new value.
  produce_raw(producer_.get(), kTopic, 2, plain(chunk_key(a, 1, k), random_bytes(99'000, 9)));
  produce_raw(producer_.get(), kTopic, 2, plain(chunk_key(a, 2, k), random_bytes(99'000, 10)));
  ASSERT_EQ(rd_kafka_flush(producer_.get(), 30'000), RD_KAFKA_RESP_ERR_NO_ERROR);

  const RestoredPartition restored = restore_found(a);
  EXPECT_TRUE(restored.state.entries() == model);
  EXPECT_EQ(restored.checkpoint_seq, 1u);
  EXPECT_EQ(restored.records_after_checkpoint, 2u);

  writer_ = make_writer();  // the next owner
  writer_->resume(a, restored);
  ASSERT_TRUE(writer_->snapshot_due(a));
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{k, random_bytes(220'000, 11)}}, {}, 2, Offset{2});
  checkpoint(a, model, {{key("minute", a, "m"), "1"}}, {}, 3, Offset{3});
  ASSERT_TRUE(settle({a}));
  EXPECT_TRUE(restore_found(a).state.entries() == model);
  const auto log = read_all(kTopic, 2);
  expect_restored_from(compacted(log, false), a, model);
  expect_restored_from(compacted(log, true), a, model);
}

// A complete checkpoint whose chunked value cannot be assembled (a chunk missing, or one of
// another value) is an error, never a wrong value.
// A snapshot writes the partition's state as it is, not the removals that led there: keys the
// writer knows of (written or restored) that the snapshot lacks get a tombstone, so a compacted
// topic keeps nothing of them once its cleaner and delete.retention.ms have run.
TEST_F(ChangelogChunkTest, ASnapshotTombstonesTheKeysItNoLongerHas) {
  const PartitionId a = pid_of(0, 2);
  const int partition = changelog_partition(a);
  const std::string k1 = key("minute", a, "k1");
  const std::string k2 = key("minute", a, "k2");
  const std::string k3 = key("dedup", a, "k3");
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{k1, "1"}, {k2, "2"}}, {}, 1, Offset{5});
  checkpoint(a, model, {{k2, "2'"}}, {}, 2, Offset{7});
  // The state at checkpoint 3 has k2 and k3 only; nothing told the writer k1 went.
  writer_->begin_snapshot(a);
  model = {{k2, "2'"}, {k3, "3"}};
  checkpoint(a, model, model, {}, 3, Offset{9});
  ASSERT_TRUE(settle({a}));
  auto keys_of = [](const std::vector<RawRecord>& records) {
    std::set<std::string> keys;
    for (const RawRecord& r : records) keys.insert(r.key);
    return keys;
  };
  std::vector<RawRecord> log = read_all(kTopic, partition);
  EXPECT_FALSE(keys_of(compacted(log, true)).contains(k1));
  EXPECT_TRUE(keys_of(compacted(log, true)).contains(k2));
  expect_restored_from(compacted(log, true), a, model);

  // A writer that continues from a restore knows the restored keys: its snapshot without k3
  // tombstones k3.
  const RestoredPartition restored = restore_found(a);
  ASSERT_EQ(restored.state.entries(), model);
  writer_ = make_writer();
  writer_->resume(a, restored);
  writer_->begin_snapshot(a);
  model = {{k2, "2''"}};
  checkpoint(a, model, model, {}, 4, Offset{12});
  ASSERT_TRUE(settle({a}));
  log = read_all(kTopic, partition);
  EXPECT_FALSE(keys_of(compacted(log, true)).contains(k3));
  expect_restored_from(compacted(log, true), a, model);
  EXPECT_EQ(restore_found(a).state.entries(), model);
}

TEST_F(ChangelogChunkTest, AValueThatCannotBeAssembledIsRefusedNotGuessed) {
  const PartitionId a = pid_of(0, 1);
  const std::string k = key("sessions", a, "sessions");
  writer_->begin_snapshot(a);
  Model model;
  checkpoint(a, model, {{k, random_bytes(2'500'000, 12)}}, {}, 1, Offset{1});
  ASSERT_TRUE(settle({a}));
  auto log = read_all(kTopic, 1);
  ASSERT_EQ(log.size(), 5u);  // snapshot, chunk 1, chunk 2, head, checkpoint
  ASSERT_TRUE(log[1].key.starts_with("chunk/"));

  auto missing = log;
  missing.erase(missing.begin() + 1);
  auto r = restore_from(missing, a);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::fatal);
  EXPECT_NE(r.error().message.find("chunk 1 of 3 missing"), std::string::npos) << r.error().message;

  // Chunk 1 of another value of the same key (a stale one, or an abandoned write's).
  auto stale = log;
  ASSERT_TRUE(stale[1].chunk);
  (*stale[1].chunk)[10] ^= 1;
  auto s = restore_from(stale, a);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("chunk 1 of 3 belongs to another value"), std::string::npos)
      << s.error().message;

  // A chunk without its header matches no head either.
  auto bare = log;
  bare[2].chunk.reset();
  auto b = restore_from(bare, a);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("chunk 2 of 3 belongs to another value"), std::string::npos)
      << b.error().message;
}

// Upgrade: a changelog written before chunking (one record per value, however large) restores.
TEST_F(ChangelogChunkTest, AChangelogWrittenOneRecordPerValueStillRestores) {
  const PartitionId a = pid_of(0, 0);
  std::map<std::string, std::string> settings{{"bootstrap.servers", broker_->bootstrap_servers()},
                                              {"message.max.bytes", "67108864"},
                                              {"log_level", "3"}};
  auto conf = make_kafka_conf(settings);
  ASSERT_TRUE(conf);
  auto old_producer = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
  ASSERT_TRUE(old_producer);
  const std::string big = random_bytes(2'500'000, 14);
  const std::string format{1, 0, 0, 0};
  const Model model{{key("sessions", a, "sessions"), big}, {key("minute", a, "m"), ""}};
  produce_raw(old_producer->get(), kTopic, 0, plain(snapshot_marker_key(a), format));
  for (const auto& [k, v] : model) produce_raw(old_producer->get(), kTopic, 0, plain(k, v));
  produce_raw(old_producer->get(), kTopic, 0,
              plain(checkpoint_marker_key(a), encode_checkpoint_marker({5, Offset{50}})));
  ASSERT_EQ(rd_kafka_flush(old_producer->get(), 30'000), RD_KAFKA_RESP_ERR_NO_ERROR);

  const RestoredPartition r = restore_found(a);
  EXPECT_TRUE(r.state.entries() == model);
  EXPECT_EQ(r.next_offset, Offset{50});
  EXPECT_TRUE(r.chunk_counts.empty());
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
  // A writer allowed larger records than its producer's message.max.bytes: the producer refuses.
  ChangelogWriter::Options options;
  options.max_record_bytes = kChangelogMaxRecordBytesLimit;
  writer_ = std::make_unique<ChangelogWriter>(producer_.get(), kTopic, options);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k"), "v1"}}, {}, 1, Offset{1});
  ASSERT_FALSE(writer_->snapshot_due(a));
  writer_->put(key("minute", a, "k"), "v2");
  writer_->put(key("minute", a, "huge"), std::string(2'000'000, 'x'));  // too large
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

// The runner produces a checkpoint's deltas before its local commit and the marker after it: a
// commit that fails abandons them, and the same writer's next checkpoint of the partition is a
// snapshot, which a restore reads instead of the orphans.
TEST_F(ChangelogTest, AnAbandonedCheckpointIsFollowedByASnapshotOfTheSameWriter) {
  const PartitionId a = pid_of(0, 3);
  Model model;
  writer_->begin_snapshot(a);
  checkpoint(a, model, {{key("minute", a, "k1"), "1"}}, {}, 1, Offset{10});
  ASSERT_TRUE(settle({a}));
  EXPECT_FALSE(writer_->snapshot_due(a));
  writer_->put(key("minute", a, "k1"), "orphan");  // deltas sent; the local commit then fails
  writer_->put(key("minute", a, "k9"), "orphan");
  writer_->abandon(a);
  EXPECT_TRUE(writer_->snapshot_due(a));
  EXPECT_TRUE(writer_->open_partitions().empty());
  EXPECT_FALSE(settle({a})) << "the changelog lacks the abandoned checkpoint";
  EXPECT_EQ(restore_found(a).checkpoint_seq, 1u);

  writer_->begin_snapshot(a);
  model = {{key("minute", a, "k1"), "1'"}, {key("minute", a, "k2"), "2"}};
  checkpoint(a, model, model, {}, 3, Offset{14});
  ASSERT_TRUE(settle({a}));
  const RestoredPartition r = restore_found(a);
  EXPECT_EQ(r.state.entries(), model);
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
  // With put_off_, a snapshot only once it is required, as a checkpoint that puts a due one off
  // for as long as it may (ChangelogWriter::snapshots_to_take()).
  void checkpoint_step(PartitionId pid) {
    ++seq_;
    if (seq_ == 1 ||
        (put_off_ ? writer_->snapshot_required(pid) : writer_->snapshot_due(pid))) {
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
  bool put_off_ = false;
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

// A due snapshot put off until it is required still comes before the broker deletes the last
// complete one: the limit, not the interval, keeps a partition restorable.
TEST_P(ChangelogRetentionTest, SnapshotsPutOffUntilRequiredStillKeepThePartitionRestorable) {
  put_off_ = true;
  const PartitionId a = pid_of(0, 1);
  while (written_ < 4 * kEmbeddedPartitionRetentionBytes) {
    checkpoint_step(a);
    if (seq_ % 8 == 0) {
      ASSERT_TRUE(settle({a}));
      expect_last_checkpoint(restore_found(a));
    }
  }
  ASSERT_GT(watermarks(1).first, 0) << "the broker deleted nothing: this would not test retention";
  EXPECT_GE(snapshots_, 2);
  ASSERT_TRUE(settle({a}));
  expect_last_checkpoint(restore_found(a));
}

INSTANTIATE_TEST_SUITE_P(StateSizes, ChangelogRetentionTest, ::testing::Values(300, 1500));

// Sixteen partitions with the same input come due for a snapshot together. A checkpoint writes
// whole the ones that require it (the first: nothing written yet) and at most an eighth of those
// merely due, most overdue first; the others send deltas until their turn. Every partition still
// restores to its last checkpoint.
TEST_F(ChangelogTest, PartitionsDueTogetherTakeTheirSnapshotsInTurn) {
  TearDown();
  ChangelogWriter::Options options;
  options.retention_bytes = kEmbeddedPartitionRetentionBytes;
  options.min_snapshot_interval_bytes = 48 << 10;
  start(options);
  std::vector<PartitionId> pids;
  for (int t = 0; t < 4; ++t) {
    for (int p = 0; p < kPartitions; ++p) pids.push_back(pid_of(t, p));
  }
  std::sort(pids.begin(), pids.end());
  std::map<PartitionId, Model> models;
  std::map<PartitionId, int> snapshots;
  std::mt19937 rng(7);
  constexpr uint64_t kCheckpoints = 60;
  size_t most_due = 0;
  for (uint64_t seq = 1; seq <= kCheckpoints; ++seq) {
    size_t due = 0;
    for (PartitionId pid : pids) {
      if (writer_->snapshot_required(pid)) {
        ASSERT_EQ(seq, 1u) << "pid " << pid.value << " was put off until required";
      } else if (writer_->snapshot_due(pid)) {
        ++due;
      }
    }
    most_due = std::max(most_due, due);
    const std::vector<PartitionId> take = writer_->snapshots_to_take(pids, 8);
    if (seq == 1) {
      EXPECT_EQ(take, pids) << "nothing written yet: every snapshot is required";
    } else {
      EXPECT_EQ(take.size(), (due + 7) / 8) << "checkpoint " << seq << ": " << due << " due";
    }
    for (PartitionId pid : pids) {
      Model& model = models[pid];
      if (std::binary_search(take.begin(), take.end(), pid)) {
        writer_->begin_snapshot(pid);
        for (const auto& [k, v] : model) writer_->put(k, v);
        ++snapshots[pid];
      }
      Model puts;
      for (int i = 0; i < 4; ++i) {
        puts[key("minute", pid, "k" + std::to_string(rng() % 20))] =
            std::string(400 + rng() % 200, static_cast<char>('a' + rng() % 26));
      }
      checkpoint(pid, model, puts, {}, seq, Offset{static_cast<int64_t>(seq)});
    }
    poll(Millis{0});
  }
  EXPECT_GE(most_due, 8u) << "the partitions never came due together: this tests nothing";
  ASSERT_TRUE(settle(pids));
  for (PartitionId pid : pids) {
    EXPECT_GE(snapshots[pid], 2) << "pid " << pid.value;
    const RestoredPartition r = restore_found(pid);
    EXPECT_EQ(r.state.entries(), models[pid]) << "pid " << pid.value;
    EXPECT_EQ(r.checkpoint_seq, kCheckpoints);
  }
}

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
  // Records are chunked to the limit: a default broker (1048588) takes the batch around one.
  EXPECT_EQ(spec.configs.at("max.message.bytes"), "1001024");
  EXPECT_LE(changelog_message_max_bytes(kChangelogDefaultMaxRecordBytes), 1048588u);
  EXPECT_EQ(state_topic_spec("s", 1, 100'000).configs.at("max.message.bytes"), "101024");
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

// The embedded broker answers without Nagle's delay, as a Kafka broker does: the socket it
// accepted for a client has TCP_NODELAY. (Without it, with several requests in flight the last
// response waited for the client's delayed acknowledgement, ~40 ms: a checkpoint's changelog
// records were acknowledged ~50 ms late.) The accepted socket is this process's: found by its
// ports among /proc/self/fd.
TEST(EmbeddedBrokerSockets, TheConnectionsItAcceptsHaveNagleOff) {
  auto broker = EmbeddedBroker::start();
  ASSERT_TRUE(broker) << broker.error().message;
  const std::string& bootstraps = (*broker)->bootstrap_servers();
  const int broker_port = std::atoi(bootstraps.c_str() + bootstraps.rfind(':') + 1);
  const int client = testing::loopback_connect(broker_port);
  ASSERT_GE(client, 0);
  sockaddr_in mine{};
  socklen_t mine_len = sizeof mine;
  ASSERT_EQ(::getsockname(client, reinterpret_cast<sockaddr*>(&mine), &mine_len), 0);

  // The broker's end: local port the broker's, peer port the client's.
  auto accepted_nodelay = [&]() -> std::optional<int> {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
      const int fd = std::atoi(entry.path().filename().c_str());
      sockaddr_in local{}, peer{};
      socklen_t local_len = sizeof local, peer_len = sizeof peer;
      if (fd == client || ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
          ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0 ||
          local.sin_family != AF_INET || ntohs(local.sin_port) != broker_port ||
          peer.sin_port != mine.sin_port)
        continue;
      int nodelay = 0;
      socklen_t len = sizeof nodelay;
      if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) == 0) return nodelay;
    }
    return std::nullopt;
  };
  std::optional<int> nodelay;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(nodelay = accepted_nodelay()) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ::close(client);
  ASSERT_TRUE(nodelay.has_value()) << "the broker did not accept the connection within 10 s";
  EXPECT_NE(*nodelay, 0);
}

}  // namespace
}  // namespace sp
