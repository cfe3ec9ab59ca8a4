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

Result<KafkaHandle> make_kafka_handle(rd_kafka_type_t type, KafkaConf conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err, sizeof err);
  if (rk == nullptr) return make_error(ErrorKind::fatal, std::string("rd_kafka_new: ") + err);
  conf.release();  // owned by rk now
  return KafkaHandle(rk);
}

}  // namespace sp
