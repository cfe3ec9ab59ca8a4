#pragma once
// Everything the pipeline produces to Kafka: window and alert records through an outbox kept in
// the checkpoint store, and rejected messages to the dead-letter topic. A record enters the
// outbox in the same WriteBatch as the state and offsets that emitted it and is produced only
// after that batch committed; it leaves the outbox with the first checkpoint (or shutdown) after
// the broker acknowledged it, and every record still there is produced again after a restart
// (at least once, byte-identical). Dead letters are not stored: a checkpoint waits for their
// acknowledgement instead.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "operators/operator.h"
#include "pipeline/decoder.h"
#include "pipeline/kafka.h"
#include "state/checkpoint_store.h"

namespace sp {

// Contract: a full queue or failed delivery is retried, never dropped; one thread calls and polls.
class OutputSink {
 public:
  struct Topics {
    std::string windows;
    std::string alerts;
    std::string dlq;
  };

  // Reads the outbox's last sequence number; the producer comes with connect().
  static Result<std::unique_ptr<OutputSink>> open(CheckpointStore& store, Topics topics);
  OutputSink(const OutputSink&) = delete;
  OutputSink& operator=(const OutputSink&) = delete;

  // Creates the producer: `properties` (kafka.properties) over the sink's defaults.
  Status connect(const std::string& bootstrap,
                 const std::map<std::string, std::string>& properties);
  // Produces every record left in the outbox by the previous run.
  void resend_outbox();

  // The rejected `msg` (read from `source_topic`) with its key, value and headers, plus the
  // sp_error_* / sp_source_* / sp_failed_at headers naming why and where from.
  void send_to_dlq(const rd_kafka_message_t& msg, const std::string& source_topic,
                   const Rejection& why);
  // Serves delivery reports for up to `timeout`.
  void poll(std::chrono::milliseconds timeout);

  // ---- checkpoint, in this order ----
  // Waits until `deadline` for every dead letter to be acknowledged; false when some were not
  // (their offsets must not be stored yet).
  bool drain_dlq(std::chrono::steady_clock::time_point deadline);
  // Produces again the records whose delivery failed.
  void resend_failed();
  // Puts `pending` (the output of the checkpoint being written) into the outbox of `batch`, and
  // removes what was delivered. Hand the result to committed() once `batch` is durable.
  struct Staged {
    size_t delivered = 0;
  };
  Staged stage(const std::vector<OutputRecord>& pending, CheckpointStore::Batch& batch);
  // Produces `pending` (moved from, then cleared) and forgets the delivered records `staged`
  // removed from the outbox.
  void committed(const Staged& staged, std::vector<OutputRecord>& pending);

  // Shutdown: waits up to `timeout` for acknowledgements, then removes the acknowledged records
  // from the outbox so that a restart does not send them again.
  void flush(std::chrono::milliseconds timeout);
  // Leaves the producer to process exit (the consumer could not leave the group: destroying a
  // handle then can block).
  void abandon() { (void)producer_.release(); }

 private:
  OutputSink(CheckpointStore& store, Topics topics) : store_(store), topics_(std::move(topics)) {}
  static void delivery_cb(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque);
  void produce_dlq(const void* key, size_t key_len, const void* value, size_t len,
                   KafkaHeaders headers);
  void produce_record(uint64_t seq, const OutputRecord& r);

  CheckpointStore& store_;
  const Topics topics_;
  uint64_t outbox_seq_ = 0;  // the last one stored
  std::map<uint64_t, OutputRecord>
      inflight_records_;  // in the outbox, produced, not yet acknowledged
  std::vector<uint64_t> delivered_records_;
  std::vector<uint64_t> failed_records_;
  int64_t dlq_inflight_ = 0;
  KafkaHandle producer_;  // destroyed before the state its callback touches
  // The topics produced to, from connect(); destroyed before the producer.
  KafkaTopic windows_topic_;
  KafkaTopic alerts_topic_;
  KafkaTopic dlq_topic_;
};

}  // namespace sp
