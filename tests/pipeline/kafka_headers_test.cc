// may_carry_headers() against librdkafka itself: messages of every shape the source can meet
// (record format v2, v1 and v0; uncompressed and compressed; keys and values of every varint
// length; no, one or several headers, null header values) go through the embedded broker and a
// real consumer. Whenever the helper says "no headers", rd_kafka_message_headers() must agree;
// and for the common case (v2, no headers) it must say so, or the shortcut buys nothing.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/embedded_broker.h"
#include "pipeline/kafka.h"

namespace sp {
namespace {

using namespace std::chrono_literals;

// Value lengths around each varint and int32 byte boundary (and a few JSON-sized ones).
// At most ~2.6 MB a topic, inside the embedded broker's 5 MiB a partition.
const std::vector<size_t> kValueLengths = {1,     2,     63,    64,    127,   128,  255,
                                           256,   260,   300,   511,   8191,  8192, 16383,
                                           16384, 32767, 32768, 40000, 65535};

struct Shape {
  std::string key;  // "<null>" for a null key
  size_t value_len = 0;
  int headers = 0;  // how many, the last one with a null value when > 1
};

std::vector<Shape> shapes(bool with_headers) {
  std::vector<Shape> out;
  const std::vector<std::string> keys = {"<null>", "", "k", std::string(300, 'x')};
  const std::vector<int> counts = with_headers ? std::vector<int>{0, 1, 3} : std::vector<int>{0};
  for (const std::string& key : keys) {
    for (size_t len : kValueLengths) {
      for (int h : counts) out.push_back({key, len, h});
    }
  }
  return out;
}

std::string value_of(size_t len, size_t seed) {
  std::string v(len, '\0');
  // Bytes of every value, zeros included: nothing may depend on what the value holds.
  for (size_t i = 0; i < len; ++i) v[i] = static_cast<char>((i * 131 + seed * 7) & 0xff);
  return v;
}

struct Consumed {
  bool helper = false;      // may_carry_headers()
  bool has_headers = false;  // rd_kafka_message_headers() found some
  size_t header_count = 0;
  size_t len = 0;
  int64_t offset = -1;
};

class KafkaHeadersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto broker = EmbeddedBroker::start();
    ASSERT_TRUE(broker) << broker.error().message;
    broker_ = std::move(*broker);
  }

  // Produces `sent` to a topic of its own with the producer settings given, then consumes the
  // partition from the start and returns what each message looked like, in offset order.
  std::vector<Consumed> round_trip(const std::string& topic, const std::vector<Shape>& sent,
                                   std::map<std::string, std::string> producer_settings) {
    std::vector<Consumed> got;
    EXPECT_TRUE(broker_->create_topic(topic, 1));
    producer_settings["bootstrap.servers"] = broker_->bootstrap_servers();
    producer_settings["log_level"] = "3";
    auto pconf = make_kafka_conf(producer_settings);
    EXPECT_TRUE(pconf) << pconf.error().message;
    if (!pconf) return got;
    auto producer = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*pconf));
    EXPECT_TRUE(producer) << producer.error().message;
    if (!producer) return got;
    for (size_t i = 0; i < sent.size(); ++i) {
      const Shape& s = sent[i];
      std::string value = value_of(s.value_len, i);
      KafkaHeaders headers;
      if (s.headers > 0) {
        headers.reset(rd_kafka_headers_new(static_cast<size_t>(s.headers)));
        for (int h = 0; h < s.headers; ++h) {
          const std::string name = "ce_h" + std::to_string(h);
          const bool null_value = s.headers > 1 && h == s.headers - 1;
          rd_kafka_header_add(headers.get(), name.c_str(), -1, null_value ? nullptr : "v",
                              null_value ? 0 : 1);
        }
      }
      const bool null_key = s.key == "<null>";
      // RD_KAFKA_V_HEADERS(nullptr) produces a record without headers.
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(0),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(null_key ? nullptr : const_cast<char*>(s.key.data()),
                         null_key ? 0 : s.key.size()),
          RD_KAFKA_V_VALUE(value.data(), value.size()), RD_KAFKA_V_HEADERS(headers.get()),
          RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) (void)headers.release();  // owned by the message now
      EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << "message " << i;
    }
    EXPECT_EQ(rd_kafka_flush(producer->get(), 20000), RD_KAFKA_RESP_ERR_NO_ERROR);

    auto cconf = make_kafka_conf(
        {{"bootstrap.servers", broker_->bootstrap_servers()},
         {"group.id", "kafka-headers-" + topic},
         {"enable.auto.commit", "false"},
         {"enable.auto.offset.store", "false"},
         {"auto.offset.reset", "earliest"},
         {"fetch.wait.max.ms", "10"},
         {"log_level", "3"}});
    EXPECT_TRUE(cconf) << cconf.error().message;
    if (!cconf) return got;
    auto consumer = make_kafka_handle(RD_KAFKA_CONSUMER, std::move(*cconf));
    EXPECT_TRUE(consumer) << consumer.error().message;
    if (!consumer) return got;
    KafkaPartitionList assignment(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    EXPECT_EQ(rd_kafka_assign(consumer->get(), assignment.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (got.size() < sent.size() && std::chrono::steady_clock::now() < deadline) {
      KafkaMessage m(rd_kafka_consumer_poll(consumer->get(), 100));
      if (!m) continue;
      if (m->err) {
        ADD_FAILURE() << "consume error: " << rd_kafka_message_errstr(m.get());
        continue;
      }
      Consumed c;
      c.helper = may_carry_headers(*m);
      rd_kafka_headers_t* hdrs = nullptr;
      c.has_headers = rd_kafka_message_headers(m.get(), &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR;
      if (c.has_headers && hdrs != nullptr) c.header_count = rd_kafka_header_cnt(hdrs);
      c.len = m->len;
      c.offset = m->offset;
      got.push_back(c);
    }
    rd_kafka_assign(consumer->get(), nullptr);
    return got;
  }

  // The helper never hides headers librdkafka finds, and each message is the one sent.
  static void check_agrees(const std::vector<Shape>& sent, const std::vector<Consumed>& got,
                           const std::string& what) {
    ASSERT_EQ(got.size(), sent.size()) << what;
    for (size_t i = 0; i < got.size(); ++i) {
      const Consumed& c = got[i];
      ASSERT_EQ(c.offset, static_cast<int64_t>(i)) << what;
      EXPECT_EQ(c.len, sent[i].value_len) << what << " message " << i;
      EXPECT_EQ(c.header_count, static_cast<size_t>(sent[i].headers))
          << what << " message " << i;
      if (c.has_headers) {
        EXPECT_TRUE(c.helper) << what << " message " << i << ": " << sent[i].headers
                              << " headers hidden (value " << sent[i].value_len << " B, key "
                              << sent[i].key.size() << " B)";
      }
    }
  }

  std::unique_ptr<EmbeddedBroker> broker_;
};

TEST_F(KafkaHeadersTest, RecordFormatV2NeverHidesHeadersAndSkipsTheParseWithoutThem) {
  const std::vector<Shape> sent = shapes(/*with_headers=*/true);
  for (const char* codec : {"none", "gzip", "lz4", "zstd", "snappy"}) {
    const std::string topic = std::string("kh.v2.") + codec;
    const std::vector<Consumed> got =
        round_trip(topic, sent, {{"compression.type", codec}, {"linger.ms", "5"}});
    check_agrees(sent, got, topic);
    ASSERT_EQ(got.size(), sent.size());
    for (size_t i = 0; i < got.size(); ++i) {
      if (sent[i].headers == 0) {
        EXPECT_FALSE(got[i].helper) << topic << " message " << i << " (value "
                                    << sent[i].value_len << " B, key " << sent[i].key.size()
                                    << " B): a v2 record without headers is still parsed";
      }
    }
  }
}

// Older formats (v0/v1, before Kafka 0.11; no headers there) cannot be stored in the embedded
// broker (its log accepts only v2 batches), so they are laid out here byte for byte as a fetch
// response carries them, each value ending on the last byte before an inaccessible page: the
// helper must neither read past a v0/v1 value (that would crash this test) nor take one for a
// v2 record.
class GuardedBuffer {
 public:
  GuardedBuffer() {
    page_ = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    void* p = ::mmap(nullptr, 2 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                     0);
    if (p == MAP_FAILED) return;
    base_ = static_cast<unsigned char*>(p);
    if (::mprotect(base_ + page_, page_, PROT_NONE) != 0) {
      ::munmap(base_, 2 * page_);
      base_ = nullptr;
    }
  }
  ~GuardedBuffer() {
    if (base_ != nullptr) ::munmap(base_, 2 * page_);
  }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  bool ok() const { return base_ != nullptr; }
  size_t capacity() const { return page_; }
  // Copies `bytes` so that they end where the guard page starts; returns where they begin.
  unsigned char* place_at_end(const std::string& bytes) {
    unsigned char* at = base_ + page_ - bytes.size();
    std::memcpy(at, bytes.data(), bytes.size());
    return at;
  }

 private:
  size_t page_ = 0;
  unsigned char* base_ = nullptr;
};

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// One v0 or v1 message (offset, size, crc, magic, attributes, [timestamp], key, value); the CRC
// is not checked by the helper and left 0.
std::string legacy_message(int magic, const std::string* key, const std::string& value) {
  std::string body;
  put_be(body, 0, 4);  // crc
  body.push_back(static_cast<char>(magic));
  body.push_back('\0');                    // attributes: uncompressed
  if (magic == 1) put_be(body, 1700000000000, 8);  // timestamp
  if (key == nullptr) {
    put_be(body, 0xffffffff, 4);
  } else {
    put_be(body, key->size(), 4);
    body += *key;
  }
  put_be(body, value.size(), 4);
  body += value;
  std::string out;
  put_be(out, 42, 8);  // offset
  put_be(out, body.size(), 4);
  return out + body;
}

TEST(KafkaHeadersLayoutTest, RecordFormatsV0AndV1AreNeverReadPastNorMistakenForV2) {
  GuardedBuffer buffer;
  ASSERT_TRUE(buffer.ok());
  const std::string short_key = "k";
  const std::string long_key(300, 'x');
  const std::string empty_key;
  int checked = 0;
  for (int magic : {0, 1}) {
    for (const std::string* key : {static_cast<const std::string*>(nullptr), &empty_key,
                                   &short_key, &long_key}) {
      for (size_t len : kValueLengths) {
        const std::string bytes = legacy_message(magic, key, value_of(len, len));
        if (bytes.size() > buffer.capacity()) continue;  // a page holds values up to ~4 kB
        unsigned char* at = buffer.place_at_end(bytes);
        rd_kafka_message_t msg{};
        msg.payload = at + bytes.size() - len;
        msg.len = len;
        EXPECT_TRUE(may_carry_headers(msg))
            << "v" << magic << " message, value " << len << " B, key "
            << (key ? std::to_string(key->size()) + " B" : "null") << ": taken for a v2 record";
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 2 * 4 * 10);

  // An error's payload is its text, an allocation of its own: nothing past it may be read (here
  // the text ends where the guard page starts).
  const std::string text = "Broker: Offset out of range";
  unsigned char* at = buffer.place_at_end(text);
  rd_kafka_message_t error{};
  error.err = RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE;
  error.payload = at;
  error.len = text.size();
  EXPECT_TRUE(may_carry_headers(error));
}

}  // namespace
}  // namespace sp
