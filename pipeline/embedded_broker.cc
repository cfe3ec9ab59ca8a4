#include "pipeline/embedded_broker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>

namespace sp {

namespace {

// The ports of a bootstrap list ("127.0.0.1:1234,127.0.0.1:1235").
std::set<int> bootstrap_ports(const std::string& bootstraps) {
  std::set<int> ports;
  size_t at = 0;
  while (at < bootstraps.size()) {
    size_t end = bootstraps.find(',', at);
    if (end == std::string::npos) end = bootstraps.size();
    const std::string one = bootstraps.substr(at, end - at);
    if (const size_t colon = one.rfind(':'); colon != std::string::npos)
      ports.insert(std::atoi(one.c_str() + colon + 1));
    at = end + 1;
  }
  return ports;
}

// librdkafka's mock cluster leaves Nagle's algorithm on for its sockets, where a Kafka broker
// turns it off (TCP_NODELAY). With several requests in flight on one connection (the changelog's
// one ProduceRequest per partition), the response to the last one then waits until the client
// acknowledges the previous response, and Linux delays that acknowledgement ~40 ms: a checkpoint
// of 64 partitions waited ~50 ms for its last changelog record in most checkpoints, even idle.
// Accepted sockets inherit TCP_NODELAY from their listening socket on Linux, so it is set on the
// mock's listeners, found among this process's descriptors by their port. Returns how many.
int disable_nagle_on_listeners(const std::string& bootstraps) {
  const std::set<int> ports = bootstrap_ports(bootstraps);
  int set = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    const int fd = std::atoi(entry.path().filename().c_str());
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (fd <= 2 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) continue;
    int port = -1;
    if (addr.ss_family == AF_INET) port = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) port = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    int listening = 0;
    socklen_t opt_len = sizeof listening;
    if (!ports.contains(port) ||
        ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &opt_len) != 0 || !listening)
      continue;
    const int one = 1;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++set;
  }
  return set;
}

}  // namespace

Result<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::start(int brokers) {
  auto conf = make_kafka_conf({{"log_level", "3"}});
  if (!conf) return tl::unexpected(conf.error());
  auto host = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!host) return tl::unexpected(host.error());
  std::unique_ptr<EmbeddedBroker> broker(new EmbeddedBroker());
  broker->host_ = std::move(*host);
  broker->cluster_.reset(rd_kafka_mock_cluster_new(broker->host_.get(), brokers));
  if (broker->cluster_ == nullptr) {
    return make_error(ErrorKind::fatal, "embedded broker: rd_kafka_mock_cluster_new failed");
  }
  broker->bootstraps_ = rd_kafka_mock_cluster_bootstraps(broker->cluster_.get());
  const int tuned = disable_nagle_on_listeners(broker->bootstraps_);
  if (tuned != brokers) {
    spdlog::warn(
        "msg=\"embedded broker: TCP_NODELAY not set on every listener; requests in flight may "
        "wait ~40 ms for their responses\" listeners={} set={}",
        brokers, tuned);
  }
  return broker;
}

Status EmbeddedBroker::create_topic(const std::string& topic, int partitions) {
  rd_kafka_resp_err_t err =
      rd_kafka_mock_topic_create(cluster_.get(), topic.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    return make_error(ErrorKind::fatal,
                      "embedded broker: create topic " + topic + ": " + rd_kafka_err2str(err));
  }
  return {};
}

Status EmbeddedBroker::create_state_topic(const std::string& topic, int partitions) {
  if (auto s = create_topic(topic, partitions); !s) return s;
  spdlog::info(
      "msg=\"state topic created; compaction check skipped on the embedded broker (it neither "
      "compacts nor answers DescribeConfigs)\" topic={} partitions={}",
      topic, partitions);
  return {};
}

}  // namespace sp
