#include "pipeline/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "pipeline/changelog.h"
#include "pipeline/kafka.h"

namespace sp {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

constexpr const char* kFile = "test.yaml";

// SPEC 7's example, verbatim.
constexpr const char* kSpecExample = R"(kafka:
  bootstrap_servers: ${SOCIALPULSE_BOOTSTRAP:-embedded}   # embedded = in-process broker (demo/tests)
  group_id: socialpulse
  topics: [social.events]
  output_topic: socialpulse.windows
  alerts_topic: socialpulse.alerts
  dlq_topic: socialpulse.dlq
  properties: {}            # passed to librdkafka as-is (security.protocol, sasl.*, ssl.*)
state: {path: ./data, checkpoint_interval: 1s}
metrics: {listen: "0.0.0.0:9464", max_series: 20000}
brands: {tracked: [{name: acme, own: true}, {name: globex}], unknown: other}
channels: [twitter, facebook, instagram, linkedin, youtube, tiktok, blog, forum, reviews, web]
windows:
  - {name: minute, kind: tumbling, size: 1m, grace: 30s}
  - {name: hourly, kind: hopping, size: 1h, advance: 5m, grace: 2m}
  - {name: sessions, kind: session, gap: 30m}
watermark: {max_out_of_orderness: 10s, idle_timeout: 30s, max_future: 5m}
dedup: {horizon: 15m}
kpi: {reputation_horizon: 24h, spike: {alpha: 0.1, z_threshold: 3, min_events: 20}}
emv: {cpm: 5.0, action_value: {like: 0.10, comment: 0.50, share: 1.00, mention: 0.80}}
roi: {currency: EUR, daily_spend: {acme: {twitter: 150, facebook: 200, linkedin: 120}}}
limits: {max_message_bytes: 65536}
log: {level: info, format: logfmt}
)";

double action_value(const Config& c, EventType t) {
  return c.emv.action_value[static_cast<size_t>(t)];
}
bool is_engagement(const Config& c, EventType t) {
  return c.kpi.engagement_types[static_cast<size_t>(t)];
}

Config parse_ok(std::string_view yaml, const std::vector<std::string>& sets = {}) {
  auto r = parse_config(yaml, kFile, sets);
  EXPECT_TRUE(r.has_value()) << r.error().message;
  return r ? *r : Config{};
}

std::string parse_error(std::string_view yaml, const std::vector<std::string>& sets = {}) {
  auto r = parse_config(yaml, kFile, sets);
  EXPECT_FALSE(r.has_value()) << "expected an error for:\n" << yaml;
  if (r) return "";
  EXPECT_EQ(r.error().kind, ErrorKind::invalid_input);
  return r.error().message;
}

// Checks the location prefix exactly and that the message says what is wrong.
void expect_error(std::string_view yaml, const std::string& location, const std::string& fragment,
                  const std::vector<std::string>& sets = {}) {
  const std::string message = parse_error(yaml, sets);
  EXPECT_EQ(message.rfind(location + ": ", 0), 0u) << "message: " << message;
  EXPECT_NE(message.find(fragment), std::string::npos)
      << "message: " << message << "\nexpected to contain: " << fragment;
}

void expect_same_windows(const std::vector<WindowSpec>& a, const std::vector<WindowSpec>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].kind, b[i].kind) << a[i].name;
    EXPECT_EQ(a[i].size, b[i].size) << a[i].name;
    EXPECT_EQ(a[i].advance, b[i].advance) << a[i].name;
    EXPECT_EQ(a[i].gap, b[i].gap) << a[i].name;
    EXPECT_EQ(a[i].grace, b[i].grace) << a[i].name;
    EXPECT_EQ(a[i].emit, b[i].emit) << a[i].name;
  }
}

// Issue 19 item 8: the configuration reference documents every key the parser knows, and nothing
// it does not.
TEST(ConfigReference, DocsConfigurationListsEveryKeyAndOnlyKnownKeys) {
  std::ifstream in(std::string(SOCIALPULSE_SOURCE_DIR) + "/docs/configuration.md");
  ASSERT_TRUE(in) << "docs/configuration.md is missing";
  std::stringstream text;
  text << in.rdbuf();
  const std::string doc = text.str();
  const std::vector<std::string> keys = config_key_paths();
  ASSERT_GT(keys.size(), 40u);
  std::set<std::string> known(keys.begin(), keys.end());
  for (const std::string& key : keys) {
    EXPECT_NE(doc.find("| `" + key + "` |"), std::string::npos)
        << key << " is not documented in docs/configuration.md";
  }
  // Each documented row names a real key.
  std::istringstream lines(doc);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.starts_with("| `")) continue;
    const std::string key = line.substr(3, line.find('`', 3) - 3);
    EXPECT_TRUE(known.count(key)) << "docs/configuration.md documents unknown key " << key;
  }
}

// Every field except roi.daily_spend, which the examples set to non-default values.
void expect_same_except_spend(const Config& a, const Config& b) {
  EXPECT_EQ(a.kafka.bootstrap_servers, b.kafka.bootstrap_servers);
  EXPECT_EQ(a.kafka.group_id, b.kafka.group_id);
  EXPECT_EQ(a.kafka.topics, b.kafka.topics);
  EXPECT_EQ(a.kafka.output_topic, b.kafka.output_topic);
  EXPECT_EQ(a.kafka.alerts_topic, b.kafka.alerts_topic);
  EXPECT_EQ(a.kafka.dlq_topic, b.kafka.dlq_topic);
  EXPECT_EQ(a.kafka.state_topic, b.kafka.state_topic);
  EXPECT_EQ(a.kafka.group_instance_id, b.kafka.group_instance_id);
  EXPECT_EQ(a.kafka.changelog_max_record_bytes, b.kafka.changelog_max_record_bytes);
  EXPECT_EQ(a.kafka.properties, b.kafka.properties);
  EXPECT_EQ(a.kafka.embedded_partitions, b.kafka.embedded_partitions);
  EXPECT_EQ(a.kafka.ready_timeout, b.kafka.ready_timeout);
  EXPECT_EQ(a.state.path, b.state.path);
  EXPECT_EQ(a.state.checkpoint_interval, b.state.checkpoint_interval);
  EXPECT_EQ(a.state.sync, b.state.sync);
  EXPECT_EQ(a.metrics.tls.cert_file, b.metrics.tls.cert_file);
  EXPECT_EQ(a.metrics.tls.key_file, b.metrics.tls.key_file);
  EXPECT_EQ(a.metrics.tls.client_ca_file, b.metrics.tls.client_ca_file);
  EXPECT_EQ(a.metrics.request_timeout, b.metrics.request_timeout);
  EXPECT_EQ(a.metrics.response_timeout, b.metrics.response_timeout);
  EXPECT_EQ(a.metrics.max_connections, b.metrics.max_connections);
  EXPECT_EQ(a.metrics.max_connections_per_client, b.metrics.max_connections_per_client);
  EXPECT_EQ(a.metrics.max_request_bytes, b.metrics.max_request_bytes);
  EXPECT_EQ(a.metrics.listen, b.metrics.listen);
  EXPECT_EQ(a.metrics.max_series, b.metrics.max_series);
  EXPECT_EQ(a.metrics.basic_auth.username, b.metrics.basic_auth.username);
  EXPECT_EQ(a.metrics.basic_auth.password_env, b.metrics.basic_auth.password_env);
  ASSERT_EQ(a.brands.tracked.size(), b.brands.tracked.size());
  for (size_t i = 0; i < a.brands.tracked.size(); ++i) {
    EXPECT_EQ(a.brands.tracked[i].name, b.brands.tracked[i].name);
    EXPECT_EQ(a.brands.tracked[i].own, b.brands.tracked[i].own);
  }
  EXPECT_EQ(a.brands.unknown, b.brands.unknown);
  EXPECT_EQ(a.channels, b.channels);
  expect_same_windows(a.windows, b.windows);
  EXPECT_EQ(a.watermark.max_out_of_orderness, b.watermark.max_out_of_orderness);
  EXPECT_EQ(a.watermark.idle_timeout, b.watermark.idle_timeout);
  EXPECT_EQ(a.watermark.max_future, b.watermark.max_future);
  EXPECT_EQ(a.dedup.horizon, b.dedup.horizon);
  EXPECT_EQ(a.kpi.reputation_horizon, b.kpi.reputation_horizon);
  EXPECT_EQ(a.kpi.engagement_types, b.kpi.engagement_types);
  EXPECT_EQ(a.kpi.spike.alpha, b.kpi.spike.alpha);
  EXPECT_EQ(a.kpi.spike.z_threshold, b.kpi.spike.z_threshold);
  EXPECT_EQ(a.kpi.spike.min_events, b.kpi.spike.min_events);
  EXPECT_EQ(a.emv.cpm, b.emv.cpm);
  EXPECT_EQ(a.emv.action_value, b.emv.action_value);
  EXPECT_EQ(a.roi.currency, b.roi.currency);
  EXPECT_EQ(a.limits.max_message_bytes, b.limits.max_message_bytes);
  EXPECT_EQ(a.limits.max_state_bytes, b.limits.max_state_bytes);
  EXPECT_EQ(a.limits.max_pending_records, b.limits.max_pending_records);
  EXPECT_EQ(a.log.level, b.log.level);
  EXPECT_EQ(a.log.format, b.log.format);
  EXPECT_EQ(a.shutdown_timeout, b.shutdown_timeout);
}

// Sets or unsets an environment variable for one test and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// ---- defaults
// ------------------------------------------------------------------------------------

TEST(ConfigDefaults, EmptyInputsGiveSpecDefaults) {
  for (const char* yaml : {"", "{}", "# only a comment\n", "kafka:\nwindows:\n"}) {
    SCOPED_TRACE(yaml);
    expect_same_except_spend(parse_ok(yaml), Config{});
    EXPECT_TRUE(parse_ok(yaml).roi.daily_spend.empty());
  }
}

TEST(ConfigDefaults, MatchSpecNumbers) {
  const Config c = parse_ok("");
  EXPECT_EQ(c.kafka.bootstrap_servers, "embedded");
  EXPECT_EQ(c.kafka.topics, std::vector<std::string>{"social.events"});
  EXPECT_EQ(c.kafka.embedded_partitions, 8);
  EXPECT_EQ(c.kafka.state_topic, "socialpulse.state");
  EXPECT_EQ(c.kafka.group_instance_id, "");  // unset: dynamic membership
  EXPECT_EQ(c.kafka.changelog_max_record_bytes, kChangelogDefaultMaxRecordBytes);
  EXPECT_EQ(c.state.checkpoint_interval, seconds(1));
  EXPECT_EQ(c.metrics.listen, "0.0.0.0:9464");
  EXPECT_EQ(c.metrics.max_series, 20000u);
  ASSERT_EQ(c.brands.tracked.size(), 2u);
  EXPECT_EQ(c.brands.unknown, UnknownBrandPolicy::other);
  EXPECT_EQ(c.channels.size(), 10u);
  ASSERT_EQ(c.windows.size(), 3u);
  EXPECT_EQ(c.watermark.max_out_of_orderness, seconds(10));
  EXPECT_EQ(c.watermark.idle_timeout, seconds(30));
  EXPECT_EQ(c.watermark.max_future, minutes(5));
  EXPECT_EQ(c.dedup.horizon, minutes(15));
  EXPECT_EQ(c.kpi.reputation_horizon, hours(24));
  EXPECT_EQ(c.kpi.spike.alpha, 0.1);
  EXPECT_EQ(c.kpi.spike.z_threshold, 3.0);
  EXPECT_EQ(c.kpi.spike.min_events, 20);
  EXPECT_EQ(c.emv.cpm, 5.0);
  EXPECT_EQ(action_value(c, EventType::reply), 0.20);
  EXPECT_EQ(action_value(c, EventType::click), 0.30);
  EXPECT_EQ(action_value(c, EventType::lead), 0.0);
  EXPECT_EQ(c.roi.currency, "EUR");
  EXPECT_EQ(c.limits.max_message_bytes, 65536u);
  EXPECT_EQ(c.log.level, "info");
  EXPECT_EQ(c.log.format, "logfmt");
  EXPECT_EQ(c.shutdown_timeout, seconds(10));
}

// ---- full example
// ----------------------------------------------------------------------------------

TEST(ConfigExample, SpecExampleParsesToExpectedValues) {
  ScopedEnv bootstrap("SOCIALPULSE_BOOTSTRAP", nullptr);
  const Config c = parse_ok(kSpecExample);
  EXPECT_EQ(c.kafka.bootstrap_servers, "embedded");
  EXPECT_EQ(c.kafka.group_id, "socialpulse");
  EXPECT_EQ(c.kafka.topics, std::vector<std::string>{"social.events"});
  EXPECT_EQ(c.kafka.output_topic, "socialpulse.windows");
  EXPECT_EQ(c.kafka.alerts_topic, "socialpulse.alerts");
  EXPECT_EQ(c.kafka.dlq_topic, "socialpulse.dlq");
  EXPECT_TRUE(c.kafka.properties.empty());
  EXPECT_EQ(c.state.path, "./data");
  EXPECT_EQ(c.state.checkpoint_interval, seconds(1));
  EXPECT_EQ(c.metrics.listen, "0.0.0.0:9464");
  EXPECT_EQ(c.metrics.max_series, 20000u);
  ASSERT_EQ(c.brands.tracked.size(), 2u);
  EXPECT_EQ(c.brands.tracked[0].name, "acme");
  EXPECT_TRUE(c.brands.tracked[0].own);
  EXPECT_EQ(c.brands.tracked[1].name, "globex");
  EXPECT_FALSE(c.brands.tracked[1].own);
  EXPECT_EQ(c.channels.front(), "twitter");
  EXPECT_EQ(c.channels.back(), "web");
  ASSERT_EQ(c.windows.size(), 3u);
  EXPECT_EQ(c.windows[0].name, "minute");
  EXPECT_EQ(c.windows[0].kind, WindowKind::tumbling);
  EXPECT_EQ(c.windows[0].size, minutes(1));
  EXPECT_EQ(c.windows[0].advance, minutes(1));  // tumbling advances by its size
  EXPECT_EQ(c.windows[0].grace, seconds(30));
  EXPECT_EQ(c.windows[0].emit, EmitMode::final);
  EXPECT_EQ(c.windows[1].kind, WindowKind::hopping);
  EXPECT_EQ(c.windows[1].size, hours(1));
  EXPECT_EQ(c.windows[1].advance, minutes(5));
  EXPECT_EQ(c.windows[1].grace, minutes(2));
  EXPECT_EQ(c.windows[2].kind, WindowKind::session);
  EXPECT_EQ(c.windows[2].gap, minutes(30));
  EXPECT_EQ(c.windows[2].grace, Millis{0});
  expect_same_windows(c.windows, default_windows());
  EXPECT_EQ(c.emv.cpm, 5.0);
  EXPECT_EQ(action_value(c, EventType::mention), 0.80);
  EXPECT_EQ(c.roi.currency, "EUR");
  const std::map<std::string, std::map<std::string, double>> spend{
      {"acme", {{"twitter", 150.0}, {"facebook", 200.0}, {"linkedin", 120.0}}}};
  EXPECT_EQ(c.roi.daily_spend, spend);
  expect_same_except_spend(c, Config{});
}

TEST(ConfigExample, ShippedDeployFileLoadsAndStatesTheDefaults) {
  ScopedEnv bootstrap("SOCIALPULSE_BOOTSTRAP", nullptr);
  auto c = load_config(SOCIALPULSE_SOURCE_DIR "/deploy/socialpulse.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  expect_same_except_spend(*c, Config{});
  EXPECT_EQ(c->roi.daily_spend.at("acme").at("facebook"), 200.0);
}

TEST(ConfigExample, ShippedDeployFileFollowsTheEnvironment) {
  ScopedEnv bootstrap("SOCIALPULSE_BOOTSTRAP", "kafka-1:9092,kafka-2:9092");
  auto c = load_config(SOCIALPULSE_SOURCE_DIR "/deploy/socialpulse.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->kafka.bootstrap_servers, "kafka-1:9092,kafka-2:9092");
}

TEST(ConfigExample, ExtraKeysParse) {
  const Config c = parse_ok(R"(
shutdown_timeout: 25s
kafka:
  embedded_partitions: 3
  properties: {security.protocol: SASL_SSL, fetch.wait.max.ms: 50, enable.idempotence: true}
metrics:
  basic_auth: {username: prom, password_env: METRICS_PASSWORD}
limits: {max_state_bytes: 1048576, max_pending_records: 500}
kpi:
  engagement_types: [like, share]
windows:
  - {name: live, kind: tumbling, size: 10s, emit: update}
)");
  EXPECT_EQ(c.shutdown_timeout, seconds(25));
  EXPECT_EQ(c.kafka.embedded_partitions, 3);
  EXPECT_EQ(c.kafka.properties.at("security.protocol"), "SASL_SSL");
  EXPECT_EQ(c.kafka.properties.at("fetch.wait.max.ms"), "50");
  EXPECT_EQ(c.kafka.properties.at("enable.idempotence"), "true");
  EXPECT_EQ(c.metrics.basic_auth.username, "prom");
  EXPECT_EQ(c.metrics.basic_auth.password_env, "METRICS_PASSWORD");
  EXPECT_EQ(c.limits.max_state_bytes, 1048576u);
  EXPECT_EQ(c.limits.max_pending_records, 500u);
  EXPECT_TRUE(is_engagement(c, EventType::like));
  EXPECT_TRUE(is_engagement(c, EventType::share));
  EXPECT_FALSE(is_engagement(c, EventType::comment));
  EXPECT_FALSE(is_engagement(c, EventType::click));
  ASSERT_EQ(c.windows.size(), 1u);
  EXPECT_EQ(c.windows[0].emit, EmitMode::update);
  EXPECT_EQ(c.windows[0].advance, seconds(10));
}

TEST(ConfigExample, ActionValueOverridesOnlyListedTypes) {
  const Config c = parse_ok("emv: {action_value: {like: 0.25, lead: 12}}\n");
  EXPECT_EQ(action_value(c, EventType::like), 0.25);
  EXPECT_EQ(action_value(c, EventType::lead), 12.0);
  EXPECT_EQ(action_value(c, EventType::comment), 0.50);
  EXPECT_EQ(action_value(c, EventType::share), 1.00);
  EXPECT_EQ(action_value(c, EventType::mention), 0.80);
  EXPECT_EQ(action_value(c, EventType::reply), 0.20);
  EXPECT_EQ(action_value(c, EventType::click), 0.30);
  EXPECT_EQ(action_value(c, EventType::impression), 0.0);
  EXPECT_EQ(c.emv.cpm, 5.0);
}

TEST(ConfigExample, BrandsUnknownReject) {
  EXPECT_EQ(parse_ok("brands: {unknown: reject}\n").brands.unknown, UnknownBrandPolicy::reject);
}

TEST(ConfigExample, IPv6AndEphemeralListen) {
  EXPECT_EQ(parse_ok("metrics: {listen: \"[::]:9464\"}\n").metrics.listen, "[::]:9464");
  EXPECT_EQ(parse_ok("metrics: {listen: \"127.0.0.1:0\"}\n").metrics.listen, "127.0.0.1:0");
}

// ---- structural and type errors
// ------------------------------------------------------------------

TEST(ConfigErrors, UnknownKeySuggestsTheClosestKey) {
  EXPECT_EQ(parse_error("kafka:\n  grup_id: x\n"),
            "test.yaml:2:3: unknown key 'grup_id' in kafka (did you mean 'group_id'?)");
}

TEST(ConfigErrors, UnknownTopLevelKeyWithTransposition) {
  EXPECT_EQ(parse_error("log: {level: info}\nkafak: {}\n"),
            "test.yaml:2:1: unknown key 'kafak' (did you mean 'kafka'?)");
}

// A remembered id's time is 32 bits of milliseconds in memory: longer horizons are refused, not
// shortened.
TEST(ConfigErrors, ADedupHorizonOver49DaysIsRefused) {
  expect_error("dedup: {horizon: 50d}\n", "test.yaml:1:18", "dedup.horizon: must be at most 49d");
  EXPECT_EQ(parse_ok("dedup: {horizon: 49d}\n").dedup.horizon, std::chrono::hours(49 * 24));
}

TEST(ConfigErrors, UnknownKeyFarFromAnyListsTheChoices) {
  expect_error("dedup: {zzzzzzzz: 1m}\n", "test.yaml:1:9", "(expected one of: horizon)");
}

TEST(ConfigErrors, UnknownKeyInWindowItem) {
  EXPECT_EQ(parse_error("windows:\n  - {name: m, kind: tumbling, sise: 1m}\n"),
            "test.yaml:2:31: unknown key 'sise' in windows[0] (did you mean 'size'?)");
}

TEST(ConfigErrors, UnknownKeyInNestedSection) {
  expect_error("kpi:\n  spike:\n    alfa: 0.2\n", "test.yaml:3:5",
               "unknown key 'alfa' in kpi.spike (did you mean 'alpha'?)");
}

TEST(ConfigErrors, CurrencyMustBeAnIsoCode) {
  EXPECT_EQ(parse_ok("roi: {currency: USD}\n").roi.currency, "USD");
  expect_error("roi:\n  currency: euro\n", "test.yaml:2:13", "roi.currency: expected an ISO 4217 code");
}

TEST(ConfigSemantics, KpiGraceDefaultsTo30sAndIsConfigurable) {
  EXPECT_EQ(parse_ok("{}").kpi.grace, Millis{30'000});
  EXPECT_EQ(parse_ok("kpi: {grace: 5s}\n").kpi.grace, Millis{5'000});
  EXPECT_EQ(parse_ok("{}", {"kpi.grace=0s"}).kpi.grace, Millis{0});
}

TEST(ConfigErrors, AWindowMayNotBeNamedKpi) {
  expect_error("windows:\n  - {name: kpi, kind: tumbling, size: 1m}\n", "test.yaml:2:12",
               "'kpi' is reserved");
}

TEST(ConfigErrors, DuplicateKey) {
  expect_error("kafka:\n  group_id: a\n  group_id: b\n", "test.yaml:3:3",
               "duplicate key 'group_id' in kafka");
}

TEST(ConfigErrors, SyntaxErrorHasLocation) {
  expect_error("kafka:\n  topics: [a, b\nstate: {}\n", "test.yaml:3:6",
               "end of sequence flow not found");
  expect_error("kafka: {group_id: a: b}\n", "test.yaml:1:20", "end of map flow not found");
}

TEST(ConfigErrors, TopLevelMustBeAMap) {
  expect_error("- a\n- b\n", "test.yaml:1:1", "expected a map of settings at the top level");
}

TEST(ConfigErrors, OnlyOneDocument) {
  expect_error("kafka: {}\n---\nlog: {}\n", "test.yaml:3:1", "expected one YAML document");
}

TEST(ConfigErrors, SectionMustBeAMap) {
  EXPECT_EQ(parse_error("state: ./data\n"), "test.yaml:1:8: state: expected a map, got './data'");
}

TEST(ConfigErrors, StringWhereNumberExpected) {
  EXPECT_EQ(parse_error("metrics:\n  max_series: lots\n"),
            "test.yaml:2:15: metrics.max_series: expected an integer, got 'lots'");
  expect_error("emv: {cpm: cheap}\n", "test.yaml:1:12", "emv.cpm: expected a number, got 'cheap'");
}

TEST(ConfigErrors, StringWhereListExpected) {
  EXPECT_EQ(parse_error("kafka:\n  topics: social.events\n"),
            "test.yaml:2:11: kafka.topics: expected a list, got 'social.events'");
  expect_error("windows: minute\n", "test.yaml:1:10", "windows: expected a list");
}

TEST(ConfigErrors, ListWhereStringExpected) {
  expect_error("kafka:\n  group_id: [a, b]\n", "test.yaml:2:13",
               "kafka.group_id: expected a single value, got a list");
}

TEST(ConfigErrors, StringWhereMapExpected) {
  expect_error("kafka:\n  properties: acks=all\n", "test.yaml:2:15",
               "kafka.properties: expected a map");
  expect_error("roi:\n  daily_spend: {acme: 150}\n", "test.yaml:2:23",
               "roi.daily_spend.acme: expected a map of channel: spend");
}

TEST(ConfigErrors, NonScalarPropertyValue) {
  expect_error("kafka:\n  properties: {acks: [all]}\n", "test.yaml:2:22",
               "kafka.properties.acks: expected a single value");
}

TEST(ConfigErrors, BadDuration) {
  EXPECT_EQ(parse_error("state: {checkpoint_interval: 1 sec}\n"),
            "test.yaml:1:30: state.checkpoint_interval: invalid duration '1 sec' (unit must be "
            "ms, s, m, h or d)");
  expect_error("dedup:\n  horizon: 15\n", "test.yaml:2:12", "dedup.horizon: invalid duration '15'");
}

TEST(ConfigErrors, BadEnumValues) {
  EXPECT_EQ(parse_error("windows:\n  - {name: w, kind: sliding, size: 1m}\n"),
            "test.yaml:2:21: windows[0].kind: invalid value 'sliding' (expected one of: "
            "tumbling, hopping, session)");
  expect_error("windows:\n  - {name: w, size: 1m, emit: eager}\n", "test.yaml:2:31",
               "windows[0].emit: invalid value 'eager'");
  expect_error("brands: {unknown: drop}\n", "test.yaml:1:19", "brands.unknown: invalid value");
  expect_error("log:\n  level: verbose\n", "test.yaml:2:10", "log.level: invalid value 'verbose'");
  expect_error("log:\n  format: jsn\n", "test.yaml:2:11",
               "log.format: invalid value 'jsn' (did you mean 'json'?)");
  expect_error("brands:\n  tracked:\n    - {name: acme, own: maybe}\n", "test.yaml:3:25",
               "brands.tracked[0].own: expected true or false, got 'maybe'");
}

TEST(ConfigErrors, PositiveIntegers) {
  EXPECT_EQ(parse_error("metrics: {max_series: 0}\n"),
            "test.yaml:1:23: metrics.max_series: must be greater than 0, got 0");
  expect_error("limits:\n  max_message_bytes: -5\n", "test.yaml:2:22",
               "limits.max_message_bytes: must be greater than 0, got -5");
  expect_error("limits: {max_state_bytes: 0}\n", "test.yaml:1:27", "limits.max_state_bytes");
  expect_error("limits: {max_pending_records: 0}\n", "test.yaml:1:31",
               "limits.max_pending_records");
  expect_error("kafka: {embedded_partitions: 0}\n", "test.yaml:1:30", "kafka.embedded_partitions");
}

TEST(ConfigErrors, PositiveDurations) {
  EXPECT_EQ(parse_error("state:\n  checkpoint_interval: 0s\n"),
            "test.yaml:2:24: state.checkpoint_interval: must be greater than 0");
  expect_error("shutdown_timeout: 0ms\n", "test.yaml:1:19", "shutdown_timeout: must be greater");
  expect_error("kpi: {reputation_horizon: 0h}\n", "test.yaml:1:27", "kpi.reputation_horizon");
}

// ---- semantic errors
// ---------------------------------------------------------------------------------

TEST(ConfigSemantics, BrandNamePattern) {
  EXPECT_EQ(parse_error("brands:\n  tracked:\n    - {name: Acme Corp}\n"),
            "test.yaml:3:14: brands.tracked[0].name: invalid brand name 'Acme Corp' (must match "
            "^[a-z0-9][a-z0-9_.-]{0,63}$)");
  expect_error("brands: {tracked: [{name: _acme}]}\n", "test.yaml:1:27", "invalid brand name");
  expect_error("brands: {tracked: [{name: " + std::string(65, 'a') + "}]}\n", "test.yaml:1:27",
               "invalid brand name");
}

TEST(ConfigSemantics, BrandNamesUniqueAndNotOther) {
  expect_error("brands:\n  tracked:\n    - {name: acme}\n    - {name: acme}\n", "test.yaml:4:14",
               "brands.tracked[1].name: duplicate brand 'acme'");
  expect_error("brands: {tracked: [{name: other}]}\n", "test.yaml:1:27", "'other' is reserved");
  expect_error("brands:\n  tracked:\n    - {own: true}\n", "test.yaml:3:7",
               "brands.tracked[0]: needs a name");
  expect_error("brands:\n  tracked: [acme]\n", "test.yaml:2:13",
               "brands.tracked[0]: expected a map, got 'acme'");
}

TEST(ConfigSemantics, ChannelNames) {
  EXPECT_EQ(parse_error("channels: [twitter, Facebook]\n"),
            "test.yaml:1:21: channels: 'Facebook' must be lower-case (event channels are "
            "lower-cased before lookup)");
  expect_error("channels:\n  - web\n  - blog\n  - web\n", "test.yaml:4:5",
               "channels: duplicate channel 'web'");
  expect_error("channels: [web, other]\n", "test.yaml:1:17", "'other' is reserved");
  expect_error("channels: [\"a b\"]\n", "test.yaml:1:12", "invalid channel name 'a b'");
}

TEST(ConfigSemantics, WindowNames) {
  expect_error("windows:\n  - {name: m, size: 1m}\n  - {name: m, size: 2m}\n", "test.yaml:3:12",
               "windows[1].name: duplicate window 'm'");
  expect_error("windows:\n  - {kind: tumbling, size: 1m}\n", "test.yaml:2:5",
               "windows[0]: needs a name");
  expect_error("windows:\n  - {name: \"\", size: 1m}\n", "test.yaml:2:12",
               "windows[0].name: must not be empty");
}

TEST(ConfigSemantics, TumblingNeedsSize) {
  EXPECT_EQ(parse_error("windows:\n  - {name: m, kind: tumbling}\n"),
            "test.yaml:2:5: windows[0]: a tumbling window needs size > 0");
  expect_error("windows:\n  - {name: m, size: 0s}\n", "test.yaml:2:21",
               "a tumbling window needs size > 0");
  expect_error("windows:\n  - {name: m, size: 1m, advance: 30s}\n", "test.yaml:2:34",
               "windows[0].advance: a tumbling window advances by its size");
}

TEST(ConfigSemantics, HoppingAdvanceRules) {
  expect_error("windows:\n  - {name: h, kind: hopping, advance: 1m}\n", "test.yaml:2:5",
               "a hopping window needs size > 0");
  expect_error("windows:\n  - {name: h, kind: hopping, size: 1h}\n", "test.yaml:2:5",
               "a hopping window needs 0 < advance <= size");
  expect_error("windows:\n  - {name: h, kind: hopping, size: 1h, advance: 2h}\n", "test.yaml:2:49",
               "a hopping window needs 0 < advance <= size");
  EXPECT_EQ(parse_error("windows:\n  - {name: h, kind: hopping, size: 1h, advance: 7m}\n"),
            "test.yaml:2:49: windows[0].advance: size 1h must be a multiple of advance 7m");
}

TEST(ConfigSemantics, SessionNeedsGap) {
  EXPECT_EQ(parse_error("windows:\n  - {name: s, kind: session}\n"),
            "test.yaml:2:5: windows[0]: a session window needs gap > 0");
  expect_error("windows:\n  - {name: s, kind: session, gap: 0m}\n", "test.yaml:2:35",
               "a session window needs gap > 0");
  expect_error("windows:\n  - {name: s, kind: session, gap: 5m, size: 1h}\n", "test.yaml:2:45",
               "windows[0].size: session windows have a gap");
}

TEST(ConfigSemantics, Listen) {
  expect_error("metrics: {listen: \"9464\"}\n", "test.yaml:1:19",
               "metrics.listen: expected host:port");
  expect_error("metrics: {listen: \"0.0.0.0:99999\"}\n", "test.yaml:1:19",
               "metrics.listen: invalid port '99999'");
  expect_error("metrics: {listen: \"0.0.0.0:http\"}\n", "test.yaml:1:19", "invalid port 'http'");
  expect_error("metrics: {listen: \":9464\"}\n", "test.yaml:1:19", "expected host:port");
  expect_error("metrics: {listen: \"::1:9464\"}\n", "test.yaml:1:19",
               "IPv6 addresses need brackets");
}

TEST(ConfigSemantics, BasicAuthNeedsPasswordEnv) {
  expect_error("metrics:\n  basic_auth: {username: prom}\n", "test.yaml:2:15",
               "metrics.basic_auth: username needs password_env");
  expect_error("metrics:\n  basic_auth: {username: prom, password_env: \"not a var\"}\n",
               "test.yaml:2:46", "is not an environment variable name");
}

TEST(ConfigSemantics, SpikeSettings) {
  EXPECT_EQ(parse_error("kpi: {spike: {alpha: 0}}\n"),
            "test.yaml:1:22: kpi.spike.alpha: must be in (0, 1], got 0");
  expect_error("kpi: {spike: {alpha: 1.5}}\n", "test.yaml:1:22", "must be in (0, 1], got 1.5");
  EXPECT_EQ(parse_ok("kpi: {spike: {alpha: 1}}\n").kpi.spike.alpha, 1.0);
  expect_error("kpi: {spike: {z_threshold: 0}}\n", "test.yaml:1:28",
               "kpi.spike.z_threshold: must be greater than 0");
  expect_error("kpi: {spike: {min_events: -1}}\n", "test.yaml:1:27",
               "kpi.spike.min_events: must not be negative, got -1");
  EXPECT_EQ(parse_ok("kpi: {spike: {min_events: 0}}\n").kpi.spike.min_events, 0);
}

TEST(ConfigSemantics, SpikeDetectorV2Settings) {
  const Config c = parse_ok(
      "kpi: {spike: {warmup: 30, stddev_floor: 0.5, drop_threshold: 0, drop_stddev_floor: 0.1,\n"
      "              persistence: 3, cooldown: 5m, seasonal: false}}\n"
      "alerts: {max_lag: 2m}\n");
  EXPECT_EQ(c.kpi.spike.warmup, 30);
  EXPECT_EQ(c.kpi.spike.stddev_floor, 0.5);
  EXPECT_EQ(c.kpi.spike.drop_threshold, 0.0);
  EXPECT_EQ(c.kpi.spike.drop_stddev_floor, 0.1);
  EXPECT_EQ(c.kpi.spike.persistence, 3);
  EXPECT_EQ(c.kpi.spike.cooldown, std::chrono::minutes(5));
  EXPECT_FALSE(c.kpi.spike.seasonal);
  EXPECT_EQ(c.kpi.spike.max_lag, std::chrono::minutes(2));
  const Config d = parse_ok("");
  EXPECT_EQ(d.kpi.spike.warmup, 60);
  EXPECT_EQ(d.kpi.spike.persistence, 3);
  EXPECT_EQ(d.kpi.spike.cooldown, std::chrono::minutes(15));
  EXPECT_TRUE(d.kpi.spike.seasonal);
  EXPECT_EQ(d.kpi.spike.max_lag, std::chrono::minutes(10));
  expect_error("kpi: {spike: {warmup: -1}}\n", "test.yaml:1:23",
               "kpi.spike.warmup: must not be negative, got -1");
  expect_error("kpi: {spike: {persistence: 0}}\n", "test.yaml:1:28",
               "kpi.spike.persistence: must be greater than 0");
  expect_error("kpi: {spike: {stddev_floor: -0.1}}\n", "test.yaml:1:29",
               "kpi.spike.stddev_floor: must not be negative");
  expect_error("alerts: {max_lag: 0s}\n", "test.yaml:1:19", "alerts.max_lag: must be greater than 0");
  expect_error("alerts: {max_lga: 1m}\n", "test.yaml:1:10", "unknown key 'max_lga' in alerts");
}

TEST(ConfigSemantics, EngagementTypes) {
  expect_error("kpi:\n  engagement_types: [like, liek]\n", "test.yaml:2:28",
               "kpi.engagement_types: unknown event type 'liek' (did you mean 'like'?)");
  expect_error("kpi:\n  engagement_types: [like, like]\n", "test.yaml:2:28",
               "duplicate type 'like'");
}

TEST(ConfigSemantics, TopicsNonEmpty) {
  EXPECT_EQ(parse_error("kafka:\n  topics: []\n"),
            "test.yaml:2:11: kafka.topics: needs at least one topic");
  expect_error("kafka:\n  topics: [a, \"\"]\n", "test.yaml:2:15", "topic names must not be empty");
  expect_error("kafka:\n  group_id: \"\"\n", "test.yaml:2:13", "kafka.group_id: must not be empty");
}

TEST(ConfigScaleOut, StateTopicAndGroupInstanceIdParse) {
  const Config c =
      parse_ok("kafka:\n  state_topic: blue.state\n  group_instance_id: socialpulse-host_1.a\n");
  EXPECT_EQ(c.kafka.state_topic, "blue.state");
  EXPECT_EQ(c.kafka.group_instance_id, "socialpulse-host_1.a");
}

TEST(ConfigScaleOut, GroupInstanceIdFollowsTheEnvironment) {
  ScopedEnv host("SP_TEST_HOSTNAME", "node-7");
  EXPECT_EQ(
      parse_ok("kafka: {group_instance_id: \"${SP_TEST_HOSTNAME}\"}\n").kafka.group_instance_id,
      "node-7");
  ScopedEnv unset("SP_TEST_HOSTNAME", nullptr);
  // An empty value switches static membership off rather than failing.
  EXPECT_EQ(
      parse_ok("kafka: {group_instance_id: \"${SP_TEST_HOSTNAME:-}\"}\n").kafka.group_instance_id,
      "");
}

TEST(ConfigScaleOut, OverridesReachTheNewKeys) {
  const Config c =
      parse_ok("", {"kafka.state_topic=green.state", "kafka.group_instance_id=worker-2"});
  EXPECT_EQ(c.kafka.state_topic, "green.state");
  EXPECT_EQ(c.kafka.group_instance_id, "worker-2");
}

TEST(ConfigScaleOut, StateTopicMustBeAValidKafkaName) {
  expect_error("kafka:\n  state_topic: \"\"\n", "test.yaml:2:16",
               "kafka.state_topic: must not be empty");
  expect_error("kafka:\n  state_topic: my state\n", "test.yaml:2:16",
               "kafka.state_topic: invalid topic name 'my state'");
  expect_error("kafka:\n  state_topic: " + std::string(250, 's') + "\n", "test.yaml:2:16",
               "kafka.state_topic: invalid topic name");
}

TEST(ConfigScaleOut, StateTopicMustNotBeAnotherTopic) {
  expect_error("kafka:\n  state_topic: socialpulse.windows\n", "test.yaml:2:16",
               "kafka.state_topic: 'socialpulse.windows' is also used as another topic");
  expect_error("kafka:\n  state_topic: social.events\n", "test.yaml:2:16",
               "kafka.state_topic: 'social.events' is also an input topic");
  // Without the key, the default collides with the renamed DLQ: the message still names the key.
  expect_error("kafka:\n  dlq_topic: socialpulse.state\n", "test.yaml:2:3",
               "kafka.state_topic: 'socialpulse.state' is also used as another topic");
}

TEST(ConfigScaleOut, ChangelogMaxRecordBytesParsesWithinItsRange) {
  EXPECT_EQ(parse_ok("kafka: {changelog_max_record_bytes: 4096}\n").kafka.changelog_max_record_bytes,
            4096u);
  EXPECT_EQ(parse_ok("", {"kafka.changelog_max_record_bytes=67108864"})
                .kafka.changelog_max_record_bytes,
            size_t{64} << 20);
  expect_error("kafka:\n  changelog_max_record_bytes: 4095\n", "test.yaml:2:31",
               "kafka.changelog_max_record_bytes: 4095 is not between 4096 and 67108864");
  expect_error("kafka:\n  changelog_max_record_bytes: 67108865\n", "test.yaml:2:31",
               "is not between");
  expect_error("kafka:\n  changelog_max_record_bytes: 1MB\n", "test.yaml:2:31",
               "expected an integer");
}

TEST(ConfigScaleOut, GroupInstanceIdMustBeAValidKafkaName) {
  expect_error("kafka:\n  group_instance_id: host/1\n", "test.yaml:2:22",
               "kafka.group_instance_id: invalid id 'host/1'");
  expect_error("kafka:\n  group_instance_id: [a]\n", "test.yaml:2:22",
               "kafka.group_instance_id: expected a single value");
}

TEST(ConfigScaleOut, GroupInstanceIdIsNotAlsoAProperty) {
  expect_error("kafka:\n  group_instance_id: a\n  properties: {group.instance.id: b}\n",
               "test.yaml:3:15", "set kafka.group_instance_id instead");
  // Through the pass-through alone it stays allowed, as every librdkafka property is.
  EXPECT_EQ(parse_ok("kafka: {properties: {group.instance.id: b}}\n")
                .kafka.properties.at("group.instance.id"),
            "b");
}

TEST(ConfigScaleOut, ConsumerSettingsCarryTheGroupInstanceId) {
  const auto with = pipeline_consumer_settings("h:9092", "g", {}, "node-1");
  EXPECT_EQ(with.at("group.instance.id"), "node-1");
  EXPECT_EQ(with.at("group.id"), "g");
  const auto without = pipeline_consumer_settings("h:9092", "g", {}, "");
  EXPECT_FALSE(without.contains("group.instance.id"));
}

TEST(ConfigSemantics, MoneyIsNotNegative) {
  EXPECT_EQ(parse_error("emv: {cpm: -1}\n"),
            "test.yaml:1:12: emv.cpm: must not be negative, got -1");
  expect_error("emv:\n  action_value: {like: -0.5}\n", "test.yaml:2:24",
               "emv.action_value.like: must not be negative, got -0.5");
  expect_error("roi:\n  daily_spend: {acme: {web: -3}}\n", "test.yaml:2:29",
               "roi.daily_spend.acme.web: must not be negative, got -3");
}

TEST(ConfigSemantics, ActionValueKeysAreEventTypes) {
  EXPECT_EQ(parse_error("emv:\n  action_value: {likes: 0.1}\n"),
            "test.yaml:2:18: emv.action_value: unknown event type 'likes' (did you mean 'like'?)");
}

TEST(ConfigSemantics, SpendNeedsConfiguredBrandAndChannel) {
  expect_error("roi:\n  daily_spend: {initech: {web: 3}}\n", "test.yaml:2:17",
               "roi.daily_spend: 'initech' is not in brands.tracked");
  expect_error("roi:\n  daily_spend: {acme: {myspace: 3}}\n", "test.yaml:2:24",
               "roi.daily_spend.acme: 'myspace' is not in channels");
}

// ---- environment expansion
// -----------------------------------------------------------------------

TEST(ConfigEnv, PlainReference) {
  ScopedEnv group("SP_TEST_GROUP", "blue");
  EXPECT_EQ(parse_ok("kafka: {group_id: \"team-${SP_TEST_GROUP}-1\"}\n").kafka.group_id,
            "team-blue-1");
}

TEST(ConfigEnv, UnsetReferenceIsAnError) {
  ScopedEnv group("SP_TEST_GROUP", nullptr);
  EXPECT_EQ(parse_error("kafka:\n  group_id: ${SP_TEST_GROUP}\n"),
            "test.yaml:2:13: kafka.group_id: environment variable SP_TEST_GROUP is not set (use "
            "${SP_TEST_GROUP:-default} to give a default)");
}

TEST(ConfigEnv, SetButEmptyPlainReferenceIsEmpty) {
  ScopedEnv user("SP_TEST_USER", "");
  EXPECT_EQ(parse_ok("metrics: {basic_auth: {username: \"${SP_TEST_USER}\"}}\n")
                .metrics.basic_auth.username,
            "");
}

TEST(ConfigEnv, DefaultWhenUnsetOrEmpty) {
  const char* yaml = "kafka: {bootstrap_servers: \"${SP_TEST_BOOT:-localhost:9092}\"}\n";
  {
    ScopedEnv boot("SP_TEST_BOOT", nullptr);
    EXPECT_EQ(parse_ok(yaml).kafka.bootstrap_servers, "localhost:9092");
  }
  {
    ScopedEnv boot("SP_TEST_BOOT", "");
    EXPECT_EQ(parse_ok(yaml).kafka.bootstrap_servers, "localhost:9092");
  }
  {
    ScopedEnv boot("SP_TEST_BOOT", "broker:9093");
    EXPECT_EQ(parse_ok(yaml).kafka.bootstrap_servers, "broker:9093");
  }
}

TEST(ConfigEnv, NestedDefault) {
  ScopedEnv a("SP_TEST_A", nullptr);
  ScopedEnv b("SP_TEST_B", "from-b");
  EXPECT_EQ(parse_ok("kafka: {group_id: \"${SP_TEST_A:-${SP_TEST_B}}\"}\n").kafka.group_id,
            "from-b");
}

TEST(ConfigEnv, RequiredWithMessage) {
  const char* yaml = "log:\n  level: info\nkafka:\n  group_id: ${SP_TEST_REQ:?set the team name}\n";
  {
    ScopedEnv req("SP_TEST_REQ", nullptr);
    EXPECT_EQ(parse_error(yaml),
              "test.yaml:4:13: kafka.group_id: environment variable SP_TEST_REQ is unset or "
              "empty: set the team name");
  }
  {
    ScopedEnv req("SP_TEST_REQ", "");
    expect_error(yaml, "test.yaml:4:13", "set the team name");
  }
  {
    ScopedEnv req("SP_TEST_REQ", "red");
    EXPECT_EQ(parse_ok(yaml).kafka.group_id, "red");
  }
}

TEST(ConfigEnv, ExpandedNumbersAreTypeChecked) {
  ScopedEnv series("SP_TEST_SERIES", "500");
  EXPECT_EQ(parse_ok("metrics: {max_series: \"${SP_TEST_SERIES}\"}\n").metrics.max_series, 500u);
  ScopedEnv bad("SP_TEST_SERIES", "many");
  expect_error("metrics: {max_series: \"${SP_TEST_SERIES}\"}\n", "test.yaml:1:23",
               "expected an integer, got 'many'");
}

TEST(ConfigEnv, ValuesNeverBecomeYamlStructure) {
  ScopedEnv group("SP_TEST_GROUP", "[a, b]");
  EXPECT_EQ(parse_ok("kafka: {group_id: \"${SP_TEST_GROUP}\"}\n").kafka.group_id, "[a, b]");
}

TEST(ConfigEnv, DollarEscapes) {
  ScopedEnv group("SP_TEST_GROUP", "x");
  EXPECT_EQ(parse_ok("kafka: {group_id: \"$${SP_TEST_GROUP} costs $$5 or $3\"}\n").kafka.group_id,
            "${SP_TEST_GROUP} costs $5 or $3");
}

TEST(ConfigEnv, MalformedReferences) {
  expect_error("kafka: {group_id: \"${SP_TEST_GROUP\"}\n", "test.yaml:1:19", "unterminated '${'");
  expect_error("kafka: {group_id: \"${1X}\"}\n", "test.yaml:1:19", "invalid variable reference");
  expect_error("kafka: {group_id: \"${A:+b}\"}\n", "test.yaml:1:19", "invalid variable reference");
}

// ---- --set overrides
// ---------------------------------------------------------------------------------

TEST(ConfigOverrides, Scalar) {
  const Config c = parse_ok("kafka: {group_id: a}\n", {"kafka.group_id=b", "metrics.max_series=7"});
  EXPECT_EQ(c.kafka.group_id, "b");
  EXPECT_EQ(c.metrics.max_series, 7u);
}

TEST(ConfigOverrides, List) {
  const Config c = parse_ok(kSpecExample, {"kafka.topics=[a,b]"});
  EXPECT_EQ(c.kafka.topics, (std::vector<std::string>{"a", "b"}));
}

TEST(ConfigOverrides, NestedKeyMissingFromTheFile) {
  const Config c = parse_ok("", {"kpi.spike.alpha=0.5", "metrics.basic_auth.username=prom",
                                 "metrics.basic_auth.password_env=PW"});
  EXPECT_EQ(c.kpi.spike.alpha, 0.5);
  EXPECT_EQ(c.kpi.spike.z_threshold, 3.0);
  EXPECT_EQ(c.metrics.basic_auth.username, "prom");
}

TEST(ConfigOverrides, ReplaceWindowsWithAFlowList) {
  const Config c =
      parse_ok(kSpecExample, {"windows=[{name: w, kind: hopping, size: 10m, advance: 5m}]"});
  ASSERT_EQ(c.windows.size(), 1u);
  EXPECT_EQ(c.windows[0].name, "w");
  EXPECT_EQ(c.windows[0].advance, minutes(5));
}

TEST(ConfigOverrides, ListItemByIndex) {
  const Config c = parse_ok(kSpecExample, {"windows.1.advance=10m", "brands.tracked.1.own=true"});
  EXPECT_EQ(c.windows[1].advance, minutes(10));
  EXPECT_TRUE(c.brands.tracked[1].own);
  expect_error(kSpecExample, "--set windows.7.gap=1m", "'windows' has no item '7'",
               {"windows.7.gap=1m"});
}

TEST(ConfigOverrides, FreeMapKeysMayContainDots) {
  const Config c =
      parse_ok(kSpecExample, {"kafka.properties.security.protocol=SASL_SSL",
                              "roi.daily_spend.globex.web=10", "emv.action_value.lead=4"});
  EXPECT_EQ(c.kafka.properties.at("security.protocol"), "SASL_SSL");
  EXPECT_EQ(c.roi.daily_spend.at("globex").at("web"), 10.0);
  EXPECT_EQ(c.roi.daily_spend.at("acme").at("twitter"), 150.0);
  EXPECT_EQ(action_value(c, EventType::lead), 4.0);
  EXPECT_EQ(action_value(c, EventType::like), 0.10);
}

TEST(ConfigOverrides, ReplacesAnInvalidSectionInTheFile) {
  EXPECT_EQ(parse_ok("state: 5\n", {"state.path=/var/lib/sp"}).state.path, "/var/lib/sp");
}

TEST(ConfigOverrides, FixesAnUnsetVariable) {
  ScopedEnv group("SP_TEST_GROUP", nullptr);
  EXPECT_EQ(
      parse_ok("kafka: {group_id: \"${SP_TEST_GROUP}\"}\n", {"kafka.group_id=g"}).kafka.group_id,
      "g");
}

TEST(ConfigOverrides, ValuesAreExpandedToo) {
  ScopedEnv group("SP_TEST_GROUP", "env-group");
  EXPECT_EQ(parse_ok("", {"kafka.group_id=${SP_TEST_GROUP}"}).kafka.group_id, "env-group");
}

TEST(ConfigOverrides, UnknownPath) {
  EXPECT_EQ(parse_error("", {"kafka.grup_id=x"}),
            "--set kafka.grup_id=x: unknown key 'grup_id' in kafka (did you mean 'group_id'?)");
  EXPECT_EQ(parse_error("", {"kafak.group_id=x"}),
            "--set kafak.group_id=x: unknown key 'kafak' (did you mean 'kafka'?)");
  expect_error("", "--set kafka.group_id.x=1", "'kafka.group_id' has no sub-keys",
               {"kafka.group_id.x=1"});
}

TEST(ConfigOverrides, Malformed) {
  EXPECT_EQ(parse_error("", {"kafka.group_id"}), "--set kafka.group_id: expected key.path=value");
  expect_error("", "--set kafka..group_id=x", "empty key", {"kafka..group_id=x"});
  expect_error("", "--set kafka.topics=[a", "invalid value", {"kafka.topics=[a"});
}

TEST(ConfigOverrides, BadValuesReportTheOverride) {
  EXPECT_EQ(parse_error(kSpecExample, {"metrics.max_series=many"}),
            "--set metrics.max_series=many: metrics.max_series: expected an integer, got 'many'");
  expect_error(kSpecExample, "--set windows.1.advance=7m", "must be a multiple of advance 7m",
               {"kafka.group_id=ok", "windows.1.advance=7m"});
  expect_error("", "--set windows=[{name: x, sise: 1m}]", "unknown key 'sise' in windows[0]",
               {"windows=[{name: x, sise: 1m}]"});
}

TEST(ConfigOverrides, FileErrorsStillPointIntoTheFile) {
  expect_error("kafka:\n  group_id: a\nmetrics: {max_series: x}\n", "test.yaml:3:23",
               "expected an integer", {"kafka.group_id=b"});
}

// ---- durations
// ---------------------------------------------------------------------------------------

TEST(ConfigDurations, ValidForms) {
  EXPECT_EQ(*parse_duration("500ms"), Millis{500});
  EXPECT_EQ(*parse_duration("10s"), seconds(10));
  EXPECT_EQ(*parse_duration("1m"), minutes(1));
  EXPECT_EQ(*parse_duration("24h"), hours(24));
  EXPECT_EQ(*parse_duration("1h30m"), minutes(90));
  EXPECT_EQ(*parse_duration("2d"), hours(48));
  EXPECT_EQ(*parse_duration("0s"), Millis{0});
}

TEST(ConfigDurations, InvalidForms) {
  for (const char* bad :
       {"", "10", "s", "10x", "-5s", "1.5s", "5 s", "1h 30m", "99999999999999999d"}) {
    SCOPED_TRACE(bad);
    auto d = parse_duration(bad);
    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().kind, ErrorKind::invalid_input);
  }
}

// ---- files
// --------------------------------------------------------------------------------------------

TEST(ConfigFiles, MissingFile) {
  auto c = load_config("/nonexistent/socialpulse.yaml");
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().message.rfind("/nonexistent/socialpulse.yaml: cannot open", 0), 0u)
      << c.error().message;
}

TEST(ConfigFiles, ErrorsNameTheFile) {
  char path[] = "/tmp/socialpulse-config-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    std::ofstream out(path);
    out << "log:\n  level: loud\n";
  }
  auto c = load_config(path, {});
  std::remove(path);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().message.rfind(std::string(path) + ":2:10: log.level", 0), 0u)
      << c.error().message;
}

}  // namespace
}  // namespace sp
