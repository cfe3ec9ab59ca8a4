#include "pipeline/kafka.h"

namespace sp {

Result<KafkaConf> make_kafka_conf(const std::map<std::string, std::string>& settings) {
  KafkaConf conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [key, value] : settings) {
    if (rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
      return make_error(ErrorKind::fatal, "kafka property " + key + ": " + err);
    }
  }
  return conf;
}

std::map<std::string, std::string> pipeline_consumer_settings(
    const std::string& bootstrap, const std::string& group_id,
    const std::map<std::string, std::string>& properties, const std::string& group_instance_id) {
  std::map<std::string, std::string> s = properties;
  s["bootstrap.servers"] = bootstrap;
  s.try_emplace("log_level", "4");
  s["group.id"] = group_id;
  if (!group_instance_id.empty()) s["group.instance.id"] = group_instance_id;
  s["enable.auto.commit"] = "false";
  s["enable.auto.offset.store"] = "false";
  s["auto.offset.reset"] = "earliest";
  // Eager assignor: librdkafka 2.0.2's cooperative-sticky can abort on early close.
  s["partition.assignment.strategy"] = "roundrobin";
  s.try_emplace("session.timeout.ms", "6000");
  s.try_emplace("heartbeat.interval.ms", "500");
  // A fetch that finds no new data is answered after fetch.wait.max.ms by brokers that do not
  // cut the wait short when data arrives (librdkafka's mock cluster, the embedded broker): that
  // wait is added to the event -> /metrics latency. Real brokers answer as soon as data arrives
  // (fetch.min.bytes=1); for them this only sets the rate of empty fetches of an idle consumer.
  s.try_emplace("fetch.wait.max.ms", "10");
  // librdkafka 2.0.2 compares both prefetch thresholds against the whole consumer queue (every
  // partition queue is forwarded to it), and a broker thread that found the queue over either
  // one sleeps until its next 1 s wake-up (librdkafka #2879, fixed in 2.2 by
  // fetch.queue.backoff.ms). With the defaults (100k messages) a backlog was read in bursts of
  // 100k a second whatever the pipeline's speed: the prefetch queue must hold more than one
  // second of processing. Still bounded: 256 MiB of payload.
  s.try_emplace("queued.min.messages", "2000000");
  s.try_emplace("queued.max.messages.kbytes", "262144");
  s.try_emplace("enable.partition.eof", "false");
  // Client statistics (JSON, on the polling thread) are how a recovered broker is noticed while
  // no message flows: librdkafka reports "all brokers down" but never "one is back".
  s.try_emplace("statistics.interval.ms", "2000");
  return s;
}

Result<KafkaHandle> make_kafka_handle(rd_kafka_type_t type, KafkaConf conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err, sizeof err);
  if (rk == nullptr) return make_error(ErrorKind::fatal, std::string("rd_kafka_new: ") + err);
  conf.release();  // owned by rk now
  return KafkaHandle(rk);
}

}  // namespace sp
