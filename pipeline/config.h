#pragma once
// The full socialpulse configuration (SPEC 7) with the SPEC's defaults for every key.
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "operators/settings.h"
#include "operators/spend_table.h"
#include "operators/time.h"
#include "operators/vocabulary.h"

namespace sp {

struct TopologySpec;

enum class UnknownBrandPolicy { other, reject };

struct KafkaConfig {
  std::string bootstrap_servers = "embedded";  // `embedded` = in-process mock cluster
  std::string group_id = "socialpulse";
  std::vector<std::string> topics{"social.events"};
  std::string output_topic = "socialpulse.windows";
  std::string alerts_topic = "socialpulse.alerts";
  std::string dlq_topic = "socialpulse.dlq";
  // Compacted changelog of partition state (SPEC 6 v2): one partition per input partition number.
  std::string state_topic = "socialpulse.state";
  // The largest changelog record (key + value + headers); larger state values are chunked. Under
  // the broker's max.message.bytes (default 1048588) minus 1 KiB of batch overhead.
  size_t changelog_max_record_bytes = 1'000'000;
  // librdkafka group.instance.id (static membership); empty = unset (dynamic membership).
  std::string group_instance_id;
  std::map<std::string, std::string> properties;  // passed to librdkafka as-is
  int embedded_partitions = 8;                    // partitions per topic of the embedded broker
  Millis ready_timeout{30'000};  // /readyz: broker loss or lag without progress tolerated this long
};

struct StateConfig {
  std::string path = "./data";
  Millis checkpoint_interval{1000};
  bool sync = true;  // fsync each checkpoint batch (power loss cannot roll state back)
};

struct BasicAuthConfig {
  std::string username;      // empty = no authentication
  std::string password_env;  // name of the environment variable holding the password
};

struct TlsConfig {
  std::string cert_file;       // PEM certificate chain; empty = plain HTTP
  std::string key_file;        // PEM private key (empty: in cert_file)
  std::string client_ca_file;  // set: clients must present a certificate it signed
};

struct MetricsConfig {
  std::string listen = "0.0.0.0:9464";
  size_t max_series = 20000;
  BasicAuthConfig basic_auth;
  TlsConfig tls;
  Millis request_timeout{5000};            // whole request head (and TLS handshake)
  Millis response_timeout{10000};          // for the client to take the response
  size_t max_connections = 512;            // in all
  size_t max_connections_per_client = 64;  // per client IP address
  size_t max_request_bytes = 8192;         // request line + headers; larger: 431
};

struct BrandsConfig {
  std::vector<BrandInfo> tracked{{"acme", true}, {"globex", false}};
  UnknownBrandPolicy unknown = UnknownBrandPolicy::other;
};

struct DedupConfig {
  Millis horizon{15 * 60 * 1000};
};

struct RoiConfig {
  std::string currency = "EUR";
  // brand -> channel -> spend per day
  std::map<std::string, std::map<std::string, double>> daily_spend;
};

struct LimitsConfig {
  size_t max_message_bytes = 65536;
  size_t max_state_bytes = size_t{2} << 30;  // pause partitions above this in-memory state
  size_t max_pending_records = 100000;       // pause when output records wait longer than this
};

struct LogConfig {
  std::string level = "info";     // trace debug info warn error critical off
  std::string format = "logfmt";  // logfmt | json
};

struct Config {
  KafkaConfig kafka;
  StateConfig state;
  MetricsConfig metrics;
  BrandsConfig brands;
  std::vector<std::string> channels{"twitter", "facebook", "instagram", "linkedin", "youtube",
                                    "tiktok",  "blog",     "forum",     "reviews",  "web"};
  std::vector<WindowSpec> windows = default_windows();
  WatermarkSettings watermark;
  DedupConfig dedup;
  KpiSettings kpi;
  EmvSettings emv;
  RoiConfig roi;
  LimitsConfig limits;
  LogConfig log;
  Millis shutdown_timeout{10'000};

  Vocabulary vocabulary() const { return Vocabulary(brands.tracked, channels); }
};

// Parses YAML text (after ${VAR} expansion) and applies `--set key.path=value` overrides.
// Errors are invalid_input with message "file:line:col: message".
Result<Config> parse_config(std::string_view yaml_text, std::string_view file_name,
                            const std::vector<std::string>& overrides = {});
Result<Config> load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// What a configuration needs from the machine it runs on, checked before anything starts (and by
// `validate`): the basic-auth password variable is set, the TLS files are readable. Returns the
// password; errors are invalid_input (exit 78).
Result<std::string> check_environment(const Config& config);
// Every key a configuration may hold, as documented in docs/configuration.md: "kafka.group_id";
// list items as "windows[].size"; maps of user-chosen keys as their parent ("kafka.properties").
std::vector<std::string> config_key_paths();
// Parses "500ms", "10s", "1m", "24h" (also "1h30m", "2d").
Result<Millis> parse_duration(std::string_view text);
// The Kafka-free core's settings (operators/topology.h) from this configuration.
TopologySpec topology_spec(const Config& config, const Vocabulary& vocabulary);
// roi.currency and roi.daily_spend as the counters export them (socialpulse_daily_spend).
SpendValues spend_of(const RoiConfig& roi);

}  // namespace sp
