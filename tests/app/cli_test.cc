// Black-box tests of the `socialpulse` binary: validate exit codes, demo, SIGTERM handling, and
// broker + kcat + run counting exactly what kcat produced.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "tests/support/test_support.h"

namespace sp {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;

const std::string kBinary = SOCIALPULSE_BINARY;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::make_temp_dir("sp-cli"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string log(const std::string& name) { return dir_ + "/" + name; }
  std::string dir_;
};

TEST_F(CliTest, VersionPrintsTheVersion) {
  ChildProcess p({kBinary, "--version"}, log("version"));
  ASSERT_EQ(p.wait(10s), 0);
  EXPECT_NE(p.stdout_text().find("socialpulse 0."), std::string::npos);
}

TEST_F(CliTest, ValidateAcceptsTheShippedExampleConfig) {
  ChildProcess p({kBinary, "validate", "-c", std::string(SOCIALPULSE_SOURCE_DIR) + "/deploy/socialpulse.yaml"},
                 log("validate-ok"));
  ASSERT_EQ(p.wait(10s), 0) << p.stderr_text();
}

TEST_F(CliTest, ValidateReportsATypoWithLineAndColumnAndExits78) {
  const std::string path = write("typo.yaml", "kafka:\n  group_id: x\n  grup_id: y\n");
  ChildProcess p({kBinary, "validate", "-c", path}, log("validate-typo"));
  ASSERT_EQ(p.wait(10s), 78);
  EXPECT_NE(p.stderr_text().find(path + ":3:3:"), std::string::npos) << p.stderr_text();
  EXPECT_NE(p.stderr_text().find("grup_id"), std::string::npos);
}

// Issue 19 item 5: every configuration problem is 78 (EX_CONFIG), which systemd is told not to
// restart on (deploy/systemd), never a CLI11 code or 1.
TEST_F(CliTest, AMissingConfigFileExits78ForValidateAndRun) {
  for (const char* cmd : {"validate", "run"}) {
    ChildProcess p({kBinary, cmd, "-c", dir_ + "/does-not-exist.yaml"}, log(std::string("missing-") + cmd));
    ASSERT_EQ(p.wait(10s), 78) << cmd << ": " << p.stderr_text();
    EXPECT_NE(p.stderr_text().find("does-not-exist.yaml"), std::string::npos) << p.stderr_text();
  }
}

TEST_F(CliTest, AnUnsetBasicAuthPasswordVariableExits78ForValidateAndRun) {
  ::unsetenv("SP_CLI_TEST_UNSET_PASSWORD");
  const std::string path = write(
      "auth.yaml", "metrics:\n  listen: 127.0.0.1:0\n  basic_auth: {username: prom, password_env: SP_CLI_TEST_UNSET_PASSWORD}\n");
  for (const char* cmd : {"validate", "run"}) {
    ChildProcess p({kBinary, cmd, "-c", path}, log(std::string("unset-secret-") + cmd));
    ASSERT_EQ(p.wait(10s), 78) << cmd << ": " << p.stderr_text();
    EXPECT_NE(p.stderr_text().find("SP_CLI_TEST_UNSET_PASSWORD is not set"), std::string::npos)
        << p.stderr_text();
  }
}

TEST_F(CliTest, AnUnreadableTlsCertificateExits78) {
  const std::string path =
      write("tls.yaml", "metrics:\n  listen: 127.0.0.1:0\n  tls: {cert_file: " + dir_ + "/nope.pem}\n");
  ChildProcess p({kBinary, "validate", "-c", path}, log("tls-missing"));
  ASSERT_EQ(p.wait(10s), 78) << p.stderr_text();
  EXPECT_NE(p.stderr_text().find("metrics.tls.cert_file"), std::string::npos) << p.stderr_text();
}

TEST_F(CliTest, DemoServesGrowingMetricsAndStopsCleanlyOnSigterm) {
  const int port = testing::free_port();
  ChildProcess p({kBinary, "demo", "--metrics-listen", "127.0.0.1:" + std::to_string(port), "--rate", "300"},
                 log("demo"));
  double first = 0;
  ASSERT_TRUE(testing::wait_until([&] {
    auto r = testing::http_get(port, "/metrics");
    if (!r) return false;
    first = testing::metric_sum(testing::parse_metrics(r->body), "socialpulse_interactions_total");
    return first > 0;
  }, 60s)) << p.stderr_text();
  ASSERT_TRUE(testing::wait_until([&] {
    auto r = testing::http_get(port, "/metrics");
    return r && testing::metric_sum(testing::parse_metrics(r->body), "socialpulse_interactions_total") > first;
  }, 30s));
  EXPECT_NE(p.stdout_text().find("http://127.0.0.1:" + std::to_string(port) + "/metrics"), std::string::npos);
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(15s), 0) << p.stderr_text();
}

TEST_F(CliTest, BrokerPlusKcatPlusRunCountsExactlyWhatKcatProduced) {
  ASSERT_EQ(std::system("command -v kcat > /dev/null"), 0) << "kcat is installed by scripts/setup-deps.sh";
  ChildProcess broker({kBinary, "broker", "--partitions", "4"}, log("broker"));
  std::string bootstrap;
  ASSERT_TRUE(testing::wait_until([&] {
    std::smatch m;
    const std::string out = broker.stdout_text();
    if (!std::regex_search(out, m, std::regex(R"(([0-9.]+:[0-9]+))"))) return false;
    bootstrap = m[1];
    return true;
  }, 20s)) << broker.stderr_text();

  constexpr int kEvents = 500;
  std::string lines;
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  for (int i = 0; i < kEvents; ++i) {
    lines += R"({"id":"k)" + std::to_string(i) + R"(","time":)" + std::to_string(secs - 60000 + i) +
             R"(,"brand":"acme","channel":"twitter","type":"like"})" + "\n";
  }
  const std::string input = write("events.jsonl", lines);
  const std::string cmd = "kcat -b " + bootstrap + " -P -t social.events -l " + input + " 2>" + log("kcat.err");
  ASSERT_EQ(std::system(cmd.c_str()), 0);

  const int port = testing::free_port();
  const std::string config = write("run.yaml",
      "kafka:\n  bootstrap_servers: " + bootstrap + "\n  group_id: cli-run\n"
      "state:\n  path: " + dir_ + "/state\n  checkpoint_interval: 200ms\n"
      "metrics:\n  listen: 127.0.0.1:" + std::to_string(port) + "\n");
  ChildProcess run({kBinary, "run", "-c", config}, log("run"));
  std::map<std::string, double> m;
  ASSERT_TRUE(testing::wait_until([&] {
    auto r = testing::http_get(port, "/metrics");
    if (!r) return false;
    m = testing::parse_metrics(r->body);
    return testing::metric_sum(m, "socialpulse_events_consumed_total") >= kEvents;
  }, 60s)) << run.stderr_text();
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_events_consumed_total"), kEvents);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_interactions_total", {"brand=\"acme\"", "type=\"like\""}), kEvents);
  run.signal(SIGTERM);
  EXPECT_EQ(run.wait(15s), 0) << run.stderr_text();
  broker.signal(SIGTERM);
  EXPECT_EQ(broker.wait(10s), 0);
}

TEST_F(CliTest, SighupReloadsTheSpendAndKeepsItWhenTheFileIsBad) {
  const int port = testing::free_port();
  auto config_text = [&](const std::string& roi) {
    return "state:\n  path: " + dir_ + "/state\n  checkpoint_interval: 200ms\n"
           "metrics:\n  listen: 127.0.0.1:" + std::to_string(port) + "\n" + roi;
  };
  const std::string config = write("run.yaml", config_text("roi: {daily_spend: {acme: {twitter: 100}}}\n"));
  ChildProcess run({kBinary, "run", "-c", config}, log("run"));
  auto spend_is = [&](double want) {
    return testing::wait_until([&] {
      auto r = testing::http_get(port, "/metrics");
      return r && testing::metric_sum(testing::parse_metrics(r->body), "socialpulse_daily_spend") == want;
    }, 60s);
  };
  ASSERT_TRUE(spend_is(100)) << run.stderr_text() << run.stdout_text();

  write("run.yaml", config_text("roi: {currency: USD, daily_spend: {acme: {twitter: 250}}}\n"));
  run.signal(SIGHUP);
  ASSERT_TRUE(spend_is(250)) << run.stderr_text() << run.stdout_text();
  auto r = testing::http_get(port, "/metrics");
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("in USD (roi.currency)"), std::string::npos);

  write("run.yaml", config_text("roi: {daily_spend: {acme: {twitter: -5}}}\n"));
  run.signal(SIGHUP);
  ASSERT_TRUE(testing::wait_until([&] {
    return (run.stdout_text() + run.stderr_text()).find("roi reload failed") != std::string::npos;
  }, 20s)) << run.stderr_text() << run.stdout_text();
  EXPECT_TRUE(spend_is(250));
  run.signal(SIGTERM);
  EXPECT_EQ(run.wait(15s), 0) << run.stderr_text();
}

}  // namespace
}  // namespace sp
