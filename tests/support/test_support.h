#pragma once
// Helpers shared by the integration tests: HTTP GET, Prometheus text parsing, child processes,
// and waiting on a condition with a deadline (never a fixed sleep).
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sp::testing {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// A blocking TCP connection to 127.0.0.1:port whose reads give up after `read_timeout`; -1 when
// the connection fails.
int loopback_connect(int port, std::chrono::milliseconds read_timeout = std::chrono::seconds(5));
// Reads everything the server sends on `fd` until it closes (or the read timeout).
std::string read_until_closed(int fd);
// Sends `request` as it is on a new loopback connection and returns all the server sent until it
// closed; empty when the connection fails.
std::string loopback_exchange(int port, std::string_view request);

// Plain HTTP/1.1 GET on 127.0.0.1:port; nullopt when the connection fails.
std::optional<HttpResponse> http_get(int port, const std::string& path,
                                     const std::string& authorization = "");

// "name{a=\"x\",b=\"y\"}" -> value, for every sample line of a text exposition.
std::map<std::string, double> parse_metrics(const std::string& text);
// Sum of all samples of `name` whose label set contains every given `label="value"` pair.
double metric_sum(const std::map<std::string, double>& samples, const std::string& name,
                  const std::vector<std::string>& label_filters = {});

// The offsets consumer group `group` committed for partitions 0..partitions-1 of `topic`
// (-1001, RD_KAFKA_OFFSET_INVALID, where none or when the broker does not answer).
std::vector<int64_t> committed_offsets(const std::string& bootstrap, const std::string& group,
                                       const std::string& topic, int partitions);

// Polls `condition` until true or the deadline passes; returns the final value.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds deadline,
                std::chrono::milliseconds poll = std::chrono::milliseconds(50));

// A child process with stdout/stderr captured to files.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_prefix);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  int pid() const { return pid_; }
  void signal(int sig);
  // Exit code (or 128+signal) once the process ended within the deadline.
  std::optional<int> wait(std::chrono::milliseconds deadline);
  std::string stdout_text() const;
  std::string stderr_text() const;

 private:
  int pid_ = -1;
  std::optional<int> status_;
  std::string out_path_;
  std::string err_path_;
};

int free_port();
std::string make_temp_dir(const std::string& prefix);

}  // namespace sp::testing
