// kill -9 while the changelog lags the local store (issue #15, README "Scaling out" limit 2): an
// instance whose last checkpoints never reached the state topic (its broker down) is SIGKILLed
// and restarted on its state dir; another instance joins. The restarted one writes what the
// changelog lacks before the group can give its partitions away, so the instance that takes some
// of them over restores the last checkpoint, not the older one from which it would count the
// newer events again: the counters summed over both equal the events produced.
//
// The broker runs in this process (EmbeddedBroker) so that the test can take the state topic's
// leader down; the instances are `socialpulse run` processes, so that SIGKILL is a real crash.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "pipeline/embedded_broker.h"
#include "pipeline/event_generator.h"
#include "pipeline/kafka.h"
#include "tests/support/test_support.h"

namespace sp {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;

const std::string kBinary = SOCIALPULSE_BINARY;
constexpr int kPartitions = 4;
constexpr const char* kStateTopic = "crash.state";

class CrashRepairTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("sp-crash-repair");
    auto broker = EmbeddedBroker::start(3);
    ASSERT_TRUE(broker) << broker.error().message;
    broker_ = std::move(*broker);
    rd_kafka_mock_cluster_t* cluster = broker_->cluster();
    for (const char* t : {"social.events", "crash.windows", "socialpulse.alerts", "socialpulse.dlq"}) {
      ASSERT_TRUE(broker_->create_topic(t, kPartitions));
      for (int p = 0; p < kPartitions; ++p) rd_kafka_mock_partition_set_leader(cluster, t, p, 1 + p % 2);
    }
    ASSERT_TRUE(broker_->create_state_topic(kStateTopic, kPartitions));
    for (int p = 0; p < kPartitions; ++p) rd_kafka_mock_partition_set_leader(cluster, kStateTopic, p, 3);
    rd_kafka_mock_coordinator_set(cluster, "group", "crash", 2);
    auto conf = make_kafka_conf({{"bootstrap.servers", broker_->bootstrap_servers()}, {"linger.ms", "2"}});
    ASSERT_TRUE(conf);
    auto producer = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
    ASSERT_TRUE(producer);
    producer_ = std::move(*producer);
  }
  void TearDown() override {
    instances_.clear();
    producer_.reset();
    broker_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // A `socialpulse run` config for instance `name` on `port`.
  std::string config(const std::string& name, int port) {
    const std::string path = dir_ + "/" + name + ".yaml";
    std::ofstream(path)
        << "kafka:\n  bootstrap_servers: " << broker_->bootstrap_servers() << "\n  group_id: crash\n"
        << "  output_topic: crash.windows\n  state_topic: " << kStateTopic << "\n"
        // The mock coordinator's lowest workable session (recovery_e2e_test.cc).
        << "  properties: {session.timeout.ms: '3500', heartbeat.interval.ms: '200'}\n"
        << "state:\n  path: " << dir_ << "/state-" << name << "\n  checkpoint_interval: 150ms\n"
        << "metrics:\n  listen: 127.0.0.1:" << port << "\n"
        << "brands:\n  tracked: [{name: acme, own: true}, {name: globex}, {name: initech}]\n";
    return path;
  }
  ChildProcess& start(const std::string& name, const std::string& config_path) {
    instances_.push_back(std::make_unique<ChildProcess>(std::vector<std::string>{kBinary, "run", "-c", config_path},
                                                        dir_ + "/" + name + "-" + std::to_string(instances_.size())));
    return *instances_.back();
  }

  void produce(int n) {
    GeneratedEvent e;
    for (int i = 0; i < n; ++i, ++sent_) {
      generator_.next(t0_ + Millis{sent_ * 400}, e);
      e.key += "/" + std::to_string(sent_ % 7);
      ASSERT_EQ(rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC("social.events"),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(e.key.data(), e.key.size()),
                                  RD_KAFKA_V_VALUE(const_cast<char*>(e.value.data()), e.value.size()), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    ASSERT_EQ(rd_kafka_flush(producer_.get(), 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  std::vector<int64_t> end_offsets() {
    std::vector<int64_t> out(kPartitions, -1);
    for (int p = 0; p < kPartitions; ++p) {
      int64_t low = 0;
      rd_kafka_query_watermark_offsets(producer_.get(), "social.events", p, &low, &out[static_cast<size_t>(p)], 5000);
    }
    return out;
  }
  // The group's committed offsets: an instance commits them after each stored checkpoint.
  std::vector<int64_t> committed() {
    return testing::committed_offsets(broker_->bootstrap_servers(), "crash", "social.events", kPartitions);
  }
  static double metric(int port, const std::string& name) {
    auto r = testing::http_get(port, "/metrics");
    if (!r || r->status != 200) return -1;
    return testing::metric_sum(testing::parse_metrics(r->body), name);
  }

  // Instance a (on port_a) consumes a first half that reaches the changelog (/metrics shows values
  // only then: `published`), then a second half that is consumed and stored locally (its offsets
  // committed: `ends`) but never reaches the changelog (its broker is down) nor /metrics; then a
  // is SIGKILLed and the broker comes back.
  void kill_with_the_changelog_behind(ChildProcess& a, int port_a, std::vector<int64_t>& ends, double& published) {
    ASSERT_NO_FATAL_FAILURE(produce(600));
    ASSERT_TRUE(testing::wait_until([&] { return metric(port_a, "socialpulse_events_consumed_total") >= 600; }, 60s))
        << a.stderr_text();
    published = metric(port_a, "socialpulse_events_consumed_total");
    rd_kafka_mock_broker_set_down(broker_->cluster(), 3);
    ASSERT_NO_FATAL_FAILURE(produce(600));
    ends = end_offsets();
    ASSERT_TRUE(testing::wait_until([&] { return committed() == ends; }, 60s)) << a.stderr_text();
    EXPECT_EQ(metric(port_a, "socialpulse_events_consumed_total"), published);  // not acknowledged
    a.signal(SIGKILL);
    ASSERT_EQ(a.wait(10s), 128 + SIGKILL);
    rd_kafka_mock_broker_set_up(broker_->cluster(), 3);
  }

  // Both instances own partitions and the group's offsets are `ends`, and each published two
  // more checkpoints after that (there is nothing new to consume).
  bool settled(int port_a, int port_b, const std::vector<int64_t>& ends) {
    const bool owned = testing::wait_until(
        [&] {
          const double pa = metric(port_a, "socialpulse_partitions_assigned");
          const double pb = metric(port_b, "socialpulse_partitions_assigned");
          return pa > 0 && pb > 0 && pa + pb == kPartitions && committed() == ends;
        },
        60s);
    if (!owned) return false;
    const double checkpoints_a = metric(port_a, "socialpulse_checkpoint_duration_seconds_count");
    const double checkpoints_b = metric(port_b, "socialpulse_checkpoint_duration_seconds_count");
    return testing::wait_until(
        [&] {
          return metric(port_a, "socialpulse_checkpoint_duration_seconds_count") >= checkpoints_a + 2 &&
                 metric(port_b, "socialpulse_checkpoint_duration_seconds_count") >= checkpoints_b + 2;
        },
        30s);
  }

  std::string dir_;
  std::unique_ptr<EmbeddedBroker> broker_;
  KafkaHandle producer_;
  EventGenerator generator_{GeneratorOptions{}};
  const EventTime t0_ = std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now()) - 2h;
  int sent_ = 0;
  std::vector<std::unique_ptr<ChildProcess>> instances_;
};

TEST_F(CrashRepairTest, ARestartAfterKillCatchesTheChangelogUpBeforeThePartitionsMove) {
  const int port_a = testing::free_port();
  const std::string config_a = config("a", port_a);
  std::vector<int64_t> ends;
  double published_by_a = 0;
  ASSERT_NO_FATAL_FAILURE(kill_with_the_changelog_behind(start("a", config_a), port_a, ends, published_by_a));

  ChildProcess* a2 = &start("a", config_a);  // the same state dir, at once
  const int port_b = testing::free_port();
  ChildProcess* b = &start("b", config("b", port_b));
  ASSERT_TRUE(settled(port_a, port_b, ends)) << a2->stderr_text() << b->stderr_text();
  EXPECT_NE(a2->stderr_text().find("changelog caught up with the local store after a crash"), std::string::npos)
      << a2->stderr_text();
  EXPECT_NE(b->stderr_text().find("partition restored from the changelog"), std::string::npos) << b->stderr_text();
  for (const char* name : {"socialpulse_events_consumed_total", "socialpulse_events_accepted_total"}) {
    EXPECT_EQ(metric(port_a, name) + metric(port_b, name), 1200) << name;
  }
}

// The same crash, restarted only after another member took every partition over from the older
// checkpoint and counted the newer events itself: too late to repair the changelog. The restart
// finds its last markers missing there, drops those partitions' local state and continues its
// counters from the values it last published (which never held the lost checkpoints), so the
// sum over both instances still counts each event once and its counters never went down.
TEST_F(CrashRepairTest, ALateRestartAfterKillRollsBackWhatTheChangelogLacks) {
  const int port_a = testing::free_port();
  const std::string config_a = config("a", port_a);
  std::vector<int64_t> ends;
  double published_by_a = 0;
  ASSERT_NO_FATAL_FAILURE(kill_with_the_changelog_behind(start("a", config_a), port_a, ends, published_by_a));

  // b takes every partition over once a's session expired, from the changelog's older checkpoint.
  const int port_b = testing::free_port();
  ChildProcess* b = &start("b", config("b", port_b));
  ASSERT_TRUE(testing::wait_until(
      [&] {
        return metric(port_b, "socialpulse_partitions_assigned") == kPartitions &&
               metric(port_b, "socialpulse_events_consumed_total") >= 600;
      },
      60s))
      << b->stderr_text();
  EXPECT_EQ(metric(port_b, "socialpulse_events_consumed_total"), 600);

  ChildProcess* a2 = &start("a", config_a);  // the same state dir, late
  ASSERT_TRUE(settled(port_a, port_b, ends)) << a2->stderr_text() << b->stderr_text();
  EXPECT_NE(a2->stderr_text().find("the changelog lacks the last checkpoint of partitions"), std::string::npos)
      << a2->stderr_text();
  EXPECT_NE(a2->stderr_text().find("partition restored from the changelog"), std::string::npos) << a2->stderr_text();
  // a continues from what it published before the kill, never below it.
  EXPECT_EQ(metric(port_a, "socialpulse_events_consumed_total"), published_by_a);
  for (const char* name : {"socialpulse_events_consumed_total", "socialpulse_events_accepted_total"}) {
    EXPECT_EQ(metric(port_a, name) + metric(port_b, name), 1200) << name;
  }
}

}  // namespace
}  // namespace sp
