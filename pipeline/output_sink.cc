#include "pipeline/output_sink.h"

#include <spdlog/spdlog.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "operators/event.h"
#include "operators/window_record_format.h"

namespace sp {
namespace {

using SteadyClock = std::chrono::steady_clock;

// How long connect() waits for the output topics' metadata.
constexpr int kTopicMetadataTimeoutMs = 2000;

// Outbox keys: the sequence number in fixed-width hex, so that a scan returns them in order.
std::string outbox_key(uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, seq);
  return buf;
}

void put_u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
bool get_u64(std::string_view& in, uint64_t& v) {
  if (in.size() < 8) return false;
  std::memcpy(&v, in.data(), 8);
  in.remove_prefix(8);
  return true;
}

std::string encode_record(const OutputRecord& r) {
  std::string out;
  out.push_back(static_cast<char>(r.topic));
  put_u64(out, r.key.size());
  out.append(r.key).append(r.value);
  return out;
}

bool decode_record(std::string_view in, OutputRecord& r) {
  if (in.empty()) return false;
  r.topic = static_cast<OutputRecord::Topic>(in[0]);
  in.remove_prefix(1);
  uint64_t klen = 0;
  if (!get_u64(in, klen) || klen > in.size()) return false;
  r.key.assign(in.substr(0, klen));
  r.value.assign(in.substr(klen));
  return true;
}

void add_header(rd_kafka_headers_t* headers, const char* name, const std::string& value) {
  // Fails only on headers already handed to a produced message; these are still ours.
  (void)rd_kafka_header_add(headers, name, -1, value.data(), static_cast<ssize_t>(value.size()));
}

// A copy of the message's headers (an empty set of `capacity` when it has none).
KafkaHeaders copy_headers(const rd_kafka_message_t& msg, size_t capacity) {
  rd_kafka_headers_t* original = nullptr;
  if (rd_kafka_message_headers(&msg, &original) == RD_KAFKA_RESP_ERR_NO_ERROR && original) {
    return KafkaHeaders(rd_kafka_headers_copy(original));
  }
  return KafkaHeaders(rd_kafka_headers_new(capacity));
}

}  // namespace

Result<std::unique_ptr<OutputSink>> OutputSink::open(CheckpointStore& store, Topics topics) {
  std::unique_ptr<OutputSink> sink(new OutputSink(store, std::move(topics)));
  auto seq = store.get(Column::meta, "outbox_seq");
  if (!seq) return tl::unexpected(seq.error());
  if (*seq) {
    std::string_view in = **seq;
    get_u64(in, sink->outbox_seq_);
  }
  return sink;
}

Status OutputSink::connect(const std::string& bootstrap,
                           const std::map<std::string, std::string>& properties) {
  std::map<std::string, std::string> settings = properties;
  settings["bootstrap.servers"] = bootstrap;
  settings.try_emplace("log_level", "4");
  settings.try_emplace("linger.ms", "5");
  settings.try_emplace("acks", "all");
  // Never give up on a record: losing a DLQ message or a window record is worse than waiting.
  settings.try_emplace("message.timeout.ms", "0");
  settings.try_emplace("queue.buffering.max.messages", "1000000");
  auto conf = make_kafka_conf(settings);
  if (!conf) return tl::unexpected(conf.error());
  rd_kafka_conf_set_opaque(conf->get(), this);
  rd_kafka_conf_set_dr_msg_cb(conf->get(), &OutputSink::delivery_cb);
  auto producer = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!producer) return tl::unexpected(producer.error());
  producer_ = std::move(*producer);
  for (auto [slot, name] :
       {std::pair{&windows_topic_, &topics_.windows}, std::pair{&alerts_topic_, &topics_.alerts},
        std::pair{&dlq_topic_, &topics_.dlq}}) {
    slot->reset(rd_kafka_topic_new(producer_.get(), name->c_str(), nullptr));
    if (!*slot) {
      return make_error(ErrorKind::fatal,
                        "output topic " + *name + ": " + rd_kafka_err2str(rd_kafka_last_error()));
    }
  }
  // Their partitions and leaders, asked for now: librdkafka asks for a topic it has not seen
  // only on its once-a-second scan, so the first dead letter (which the next checkpoint waits
  // for) or record would wait up to a second for it. Not fatal: without an answer here the scan
  // finds them.
  const rd_kafka_metadata_t* metadata = nullptr;
  if (const auto err =
          rd_kafka_metadata(producer_.get(), 0, nullptr, &metadata, kTopicMetadataTimeoutMs);
      err) {
    spdlog::warn("msg=\"output topics not yet known\" error=\"{}\"", rd_kafka_err2str(err));
  } else {
    rd_kafka_metadata_destroy(metadata);
  }
  return {};
}

void OutputSink::resend_outbox() {
  auto rows = store_.scan(Column::outbox, "");
  if (!rows) {
    spdlog::error("msg=\"outbox scan failed\" error=\"{}\"", rows.error().message);
    return;
  }
  for (auto& [key, value] : *rows) {
    OutputRecord r;
    if (!decode_record(value, r) || key.size() != 16) continue;
    const uint64_t seq = std::stoull(key, nullptr, 16);
    inflight_records_.emplace(seq, std::move(r));
  }
  if (!inflight_records_.empty()) {
    spdlog::info("msg=\"re-sending records written before the last stop\" count={}",
                 inflight_records_.size());
  }
  for (const auto& [seq, r] : inflight_records_) produce_record(seq, r);
}

void OutputSink::send_to_dlq(const rd_kafka_message_t& msg, const std::string& source_topic,
                             const Rejection& why) {
  KafkaHeaders headers = copy_headers(msg, 6);
  const std::string reason(to_string(why.reason));
  const std::string partition = std::to_string(msg.partition);
  const std::string offset = std::to_string(msg.offset);
  const std::string failed_at =
      format_rfc3339_ms(std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now()));
  add_header(headers.get(), "sp_error_reason", reason);
  add_header(headers.get(), "sp_error_detail", why.detail);
  add_header(headers.get(), "sp_source_topic", source_topic);
  add_header(headers.get(), "sp_source_partition", partition);
  add_header(headers.get(), "sp_source_offset", offset);
  add_header(headers.get(), "sp_failed_at", failed_at);
  produce_dlq(msg.key, msg.key_len, msg.payload, msg.len, std::move(headers));
}

// Retries on a full queue: a rejected message is never dropped.
void OutputSink::produce_dlq(const void* key, size_t key_len, const void* value, size_t len,
                             KafkaHeaders headers) {
  for (;;) {
    // On success the message owns the headers; on failure they stay ours.
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_.get(), RD_KAFKA_V_RKT(dlq_topic_.get()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(const_cast<void*>(key), key ? key_len : 0),
        RD_KAFKA_V_VALUE(const_cast<void*>(value), value ? len : 0),
        RD_KAFKA_V_HEADERS(headers.get()), RD_KAFKA_V_OPAQUE(nullptr), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      (void)headers.release();
      ++dlq_inflight_;
      return;
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      spdlog::error("msg=\"dlq produce failed\" error=\"{}\"", rd_kafka_err2str(err));
      return;
    }
    rd_kafka_poll(producer_.get(), 10);
  }
}

void OutputSink::produce_record(uint64_t seq, const OutputRecord& r) {
  rd_kafka_topic_t* topic =
      r.topic == OutputRecord::Topic::alerts ? alerts_topic_.get() : windows_topic_.get();
  for (;;) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_.get(), RD_KAFKA_V_RKT(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(const_cast<char*>(r.key.data()), r.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<uintptr_t>(seq))), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      spdlog::error("msg=\"record produce failed\" error=\"{}\"", rd_kafka_err2str(err));
      failed_records_.push_back(seq);
      return;
    }
    rd_kafka_poll(producer_.get(), 10);
  }
}

void OutputSink::delivery_cb(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* self = static_cast<OutputSink*>(opaque);
  const auto seq = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(msg->_private));
  if (seq == 0) {  // DLQ
    --self->dlq_inflight_;
    if (msg->err) {
      // Re-enqueue with the original bytes and headers: never lose a rejected message.
      KafkaHeaders copy = copy_headers(*msg, 0);
      spdlog::warn("msg=\"dlq delivery failed, retrying\" error=\"{}\"",
                   rd_kafka_err2str(msg->err));
      self->produce_dlq(msg->key, msg->key_len, msg->payload, msg->len, std::move(copy));
    }
    return;
  }
  if (msg->err) {
    spdlog::warn("msg=\"record delivery failed, will resend\" error=\"{}\"",
                 rd_kafka_err2str(msg->err));
    self->failed_records_.push_back(seq);
  } else {
    self->delivered_records_.push_back(seq);
  }
}

void OutputSink::poll(std::chrono::milliseconds timeout) {
  rd_kafka_poll(producer_.get(), static_cast<int>(timeout.count()));
}

bool OutputSink::drain_dlq(SteadyClock::time_point deadline) {
  while (dlq_inflight_ > 0 && SteadyClock::now() < deadline) rd_kafka_poll(producer_.get(), 5);
  return dlq_inflight_ == 0;
}

void OutputSink::resend_failed() {
  for (uint64_t seq : failed_records_) {
    if (auto it = inflight_records_.find(seq); it != inflight_records_.end()) {
      produce_record(seq, it->second);
    }
  }
  failed_records_.clear();
}

OutputSink::Staged OutputSink::stage(const std::vector<OutputRecord>& pending,
                                     CheckpointStore::Batch& batch) {
  std::string buf;
  uint64_t seq = outbox_seq_;
  for (const auto& r : pending) batch.put(Column::outbox, outbox_key(++seq), encode_record(r));
  put_u64(buf, seq);
  batch.put(Column::meta, "outbox_seq", buf);
  for (uint64_t d : delivered_records_) batch.remove(Column::outbox, outbox_key(d));
  return Staged{delivered_records_.size()};
}

void OutputSink::committed(const Staged& staged, std::vector<OutputRecord>& pending) {
  for (size_t i = 0; i < staged.delivered; ++i) inflight_records_.erase(delivered_records_[i]);
  delivered_records_.erase(delivered_records_.begin(),
                           delivered_records_.begin() + static_cast<long>(staged.delivered));
  for (auto& r : pending) {
    ++outbox_seq_;
    produce_record(outbox_seq_, r);
    inflight_records_.emplace(outbox_seq_, std::move(r));
  }
  pending.clear();
}

void OutputSink::flush(std::chrono::milliseconds timeout) {
  const auto flushed = rd_kafka_flush(producer_.get(), static_cast<int>(timeout.count()));
  spdlog::info("msg=\"shutdown: producer flushed\" complete={} unacknowledged={}",
               flushed == RD_KAFKA_RESP_ERR_NO_ERROR, rd_kafka_outq_len(producer_.get()));
  if (!delivered_records_.empty()) {
    // Forget outbox entries the broker acknowledged so that a restart does not resend them.
    auto batch = store_.batch();
    for (uint64_t d : delivered_records_) batch.remove(Column::outbox, outbox_key(d));
    // Best effort: a delivered record still in the outbox is re-sent, byte-identical, by the
    // next start (SPEC 5), so a failure is worth a line and nothing more.
    if (auto s = store_.commit(batch); !s) {
      spdlog::warn("msg=\"shutdown: delivered outbox entries not forgotten\" error=\"{}\"",
                   s.error().message);
    }
  }
}

}  // namespace sp
