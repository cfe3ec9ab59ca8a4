// The query API and console of SPEC 10: the KPI digest of published checkpoints (QueryApi) and
// its HTTP contract on the real server (every endpoint and error, the event stream, auth).
#include "pipeline/query_api.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "operators/window_record_format.h"
#include "pipeline/demo_narrator.h"
#include "pipeline/http_server.h"
#include "tests/support/test_support.h"

namespace sp {
namespace {

constexpr int64_t kMinute = 60'000;
constexpr int64_t kT0 = 1'795'000'000'000 / kMinute * kMinute;  // a minute boundary

struct Values {
  double ri_acme = 10;
  double emv_acme = 0;
  double consumed = 0;
  int64_t watermark_ms = kT0;
  bool acme_alert = false;
};

// A /metrics snapshot with the KPI families the API reads, for acme and globex.
std::shared_ptr<const MetricsSnapshot> metrics(const Values& v) {
  MetricsRegistry r(1000);
  r.begin();
  const LabelPair acme[] = {{"brand", "acme"}};
  const LabelPair globex[] = {{"brand", "globex"}};
  r.family("socialpulse_events_consumed_total", "", MetricType::counter);
  r.add({}, v.consumed);
  r.family("socialpulse_reputation_index", "", MetricType::gauge);
  r.add(acme, v.ri_acme);
  r.add(globex, 42.5);
  r.family("socialpulse_share_of_voice_ratio", "", MetricType::gauge);
  r.add(acme, 0.25);
  r.add(globex, 0.75);
  r.family("socialpulse_earned_media_value_total", "", MetricType::counter);
  const LabelPair acme_tw[] = {{"brand", "acme"}, {"channel", "twitter"}};
  const LabelPair acme_fb[] = {{"brand", "acme"}, {"channel", "facebook"}};
  r.add(acme_tw, v.emv_acme);
  r.add(acme_fb, 1.0);
  r.family("socialpulse_engagement_rate", "", MetricType::gauge);
  r.add(acme_tw, 0.125);
  r.family("socialpulse_daily_spend", "", MetricType::gauge);
  r.add(acme_tw, 144);
  r.family("socialpulse_reputation_alert_active", "", MetricType::gauge);
  const LabelPair acme_kind[] = {{"brand", "acme"}, {"kind", "negative_surge"}};
  r.add(acme_kind, v.acme_alert ? 1 : 0);
  r.family("socialpulse_watermark_timestamp_seconds", "", MetricType::gauge);
  r.add({}, static_cast<double>(v.watermark_ms) / 1000.0);
  return r.finish();
}

std::string alert_json(std::string_view brand, int64_t minute_ms, std::string_view episode) {
  const std::string t = format_rfc3339_ms(from_epoch_ms(minute_ms));
  return "{\"brand\":\"" + std::string(brand) + "\",\"bucket_start\":\"" + t +
         "\",\"value\":9,\"zscore\":82.7,\"kind\":\"negative_surge\",\"severity\":10,\"episode\":\"" +
         std::string(episode) + "\",\"episode_start\":\"" + t +
         "\",\"episode_end\":null,\"replay\":false,\"explanation\":null}";
}

struct Json {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  explicit Json(const std::string& body) { root = parser.parse(body); }
};

TEST(QueryApi, KpisAreTheValuesOfTheMetricsSnapshotOfTheSameCheckpoint) {
  QueryApi api;
  api.on_checkpoint(*metrics({.ri_acme = -12.5, .emv_acme = 3}), 7, {}, kT0);
  const auto r = api.handle("/api/v1/kpis", "");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  Json j(r->body);
  EXPECT_EQ(uint64_t(j.root["checkpoint"]), 7u);
  EXPECT_EQ(std::string_view(j.root["watermark"]), format_rfc3339_ms(from_epoch_ms(kT0)));
  EXPECT_DOUBLE_EQ(double(j.root["brands"]["acme"]["reputation_index"]), -12.5);
  EXPECT_DOUBLE_EQ(double(j.root["brands"]["globex"]["reputation_index"]), 42.5);
  EXPECT_DOUBLE_EQ(double(j.root["brands"]["acme"]["share_of_voice"]), 0.25);
  EXPECT_DOUBLE_EQ(double(j.root["brands"]["acme"]["totals"]["emv"]), 4.0);  // both channels
  EXPECT_DOUBLE_EQ(double(j.root["brands"]["acme"]["engagement_rate"]["twitter"]), 0.125);
  EXPECT_DOUBLE_EQ(double(j.root["brands"]["acme"]["daily_spend"]), 144);
  EXPECT_TRUE(simdjson::dom::element(j.root["brands"]["globex"]["daily_spend"]).is_null());
  EXPECT_FALSE(bool(j.root["brands"]["acme"]["spike"]["active"]));

  const auto one = api.handle("/api/v1/kpis", "brand=globex");
  ASSERT_EQ(one->status, 200);
  Json k(one->body);
  EXPECT_EQ(simdjson::dom::object(k.root["brands"]).size(), 1u);
  EXPECT_DOUBLE_EQ(double(k.root["brands"]["globex"]["share_of_voice"]), 0.75);
}

TEST(QueryApi, ErrorsAreJsonWithAFittingStatus) {
  QueryApi api;
  const auto before = api.handle("/api/v1/kpis", "");
  EXPECT_EQ(before->status, 503);
  EXPECT_NE(before->extra_headers.find("Retry-After: 1"), std::string::npos);
  api.on_checkpoint(*metrics({}), 1, {}, kT0);
  auto code = [&](std::string_view path, std::string_view query) {
    const auto r = api.handle(path, query);
    Json j(r->body);
    return std::pair{r->status, std::string(std::string_view(j.root["error"]))};
  };
  EXPECT_EQ(code("/api/v1/kpis", "brand=nobody"), std::pair(400, std::string("unknown_brand")));
  EXPECT_EQ(code("/api/v1/series", "brand=acme&kpi=nope"),
            std::pair(400, std::string("unknown_kpi")));
  EXPECT_EQ(code("/api/v1/series", "kpi=emv"), std::pair(400, std::string("missing_parameter")));
  EXPECT_EQ(code("/api/v1/series", "brand=acme&kpi=emv&minutes=1441"),
            std::pair(400, std::string("bad_parameter")));
  EXPECT_EQ(code("/api/v1/series", "brand=acme&kpi=emv&minutes=x"),
            std::pair(400, std::string("bad_parameter")));
  EXPECT_EQ(code("/api/v1/alerts", "since=yesterday"),
            std::pair(400, std::string("bad_parameter")));
  EXPECT_EQ(code("/api/v1/nothing", ""), std::pair(404, std::string("not_found")));
  EXPECT_FALSE(api.handle("/metrics", ""));
}

TEST(QueryApi, ConfiguredBrandsAreKnownBeforeTheirFirstEvent) {
  QueryApi api;
  api.set_configured_brands({"acme", "initech"});
  api.on_checkpoint(*metrics({}), 1, {}, kT0);
  EXPECT_EQ(api.handle("/api/v1/kpis", "brand=initech")->status, 200);
  EXPECT_EQ(api.handle("/api/v1/series", "brand=initech&kpi=emv")->status, 200);
  EXPECT_EQ(api.handle("/api/v1/kpis", "brand=hooli")->status, 400);
}

TEST(QueryApi, SeriesHasOnePointPerClosedMinuteWithGaugesAndCounterIncreases) {
  QueryApi api;
  api.on_checkpoint(*metrics({.ri_acme = 1, .emv_acme = 10, .watermark_ms = kT0 + 30'000}), 1, {},
                    kT0);
  api.on_checkpoint(*metrics({.ri_acme = 2, .emv_acme = 15, .watermark_ms = kT0 + 50'000}), 2, {},
                    kT0);
  api.on_checkpoint(*metrics({.ri_acme = 3, .emv_acme = 20, .watermark_ms = kT0 + 70'000}), 3, {},
                    kT0);
  api.on_checkpoint(*metrics({.ri_acme = 4, .emv_acme = 32, .watermark_ms = kT0 + 125'000}), 4,
                    {}, kT0);
  const auto ri = api.series("acme", "reputation_index", 60);
  ASSERT_EQ(ri.size(), 2u);  // minutes T0 and T0+1 closed, T0+2 open
  EXPECT_EQ(ri[0], std::pair(kT0, 2.0));  // the last checkpoint inside the minute
  EXPECT_EQ(ri[1], std::pair(kT0 + kMinute, 3.0));
  const auto emv = api.series("acme", "emv", 60);
  ASSERT_EQ(emv.size(), 2u);
  EXPECT_DOUBLE_EQ(emv[0].second, 5.0);  // since the first checkpoint
  EXPECT_DOUBLE_EQ(emv[1].second, 5.0);
  EXPECT_EQ(api.series("acme", "emv", 1).size(), 1u);

  const auto r = api.handle("/api/v1/series", "brand=acme&kpi=emv&minutes=60");
  ASSERT_EQ(r->status, 200) << r->body;
  Json j(r->body);
  const simdjson::dom::array points = j.root["points"];
  ASSERT_EQ(points.size(), 2u);
  const simdjson::dom::array second = points.at(1);
  EXPECT_EQ(int64_t(second.at(0)), kT0 + kMinute);
  EXPECT_DOUBLE_EQ(double(second.at(1)), 5.0);
  // The last hour: everything since the first checkpoint (2 minutes covered), 32 + 1 - (10 + 1).
  const auto k = api.handle("/api/v1/kpis", "brand=acme");
  Json kj(k->body);
  EXPECT_EQ(int64_t(kj.root["brands"]["acme"]["last_1h"]["minutes"]), 2);
  EXPECT_DOUBLE_EQ(double(kj.root["brands"]["acme"]["last_1h"]["emv"]), 22.0);
  EXPECT_DOUBLE_EQ(double(kj.root["brands"]["acme"]["reputation_trend_1h"]), 2.0);  // 4 - 2
  // ROI over those 2 minutes: return 22 (EMV, no lead value) against 144/day prorated (0.2).
  EXPECT_NEAR(double(kj.root["brands"]["acme"]["roi_24h"]), (22 - 0.2) / 0.2, 1e-9);
  EXPECT_TRUE(simdjson::dom::element(kj.root["brands"]["acme"]["last_24h"]["minutes"]).is_int64());
}

TEST(QueryApi, ARestartedProcessServesTheSeriesAndAlertsItHad) {
  const std::string file = testing::make_temp_dir("query-api") + "/console-series";
  {
    QueryApi api;
    EXPECT_FALSE(api.set_series_file(file));  // nothing saved yet
    for (int i = 0; i < 4; ++i) {
      std::vector<std::string> alerts;
      if (i == 1) alerts.push_back(alert_json("acme", kT0, "started"));
      api.on_checkpoint(*metrics({.ri_acme = double(i), .emv_acme = 10.0 * i,
                                  .watermark_ms = kT0 + i * kMinute + 1000}),
                        uint64_t(i + 1), alerts, kT0);
    }
    ASSERT_EQ(api.series("acme", "emv", 60).size(), 3u);
  }
  QueryApi restarted;
  ASSERT_TRUE(restarted.set_series_file(file));
  // The restored checkpoint (same counters), then the watermark resumes inside the last minute.
  restarted.on_checkpoint(*metrics({.ri_acme = 3, .emv_acme = 30, .watermark_ms = kT0 + 3 * kMinute + 2000}),
                          1, {}, kT0);
  restarted.on_checkpoint(*metrics({.ri_acme = 4, .emv_acme = 40, .watermark_ms = kT0 + 4 * kMinute + 1000}),
                          2, {}, kT0);
  const auto ri = restarted.series("acme", "reputation_index", 60);
  ASSERT_EQ(ri.size(), 4u);
  EXPECT_EQ(ri[0], std::pair(kT0, 0.0));
  EXPECT_EQ(ri[3], std::pair(kT0 + 3 * kMinute, 3.0));
  const auto emv = restarted.series("acme", "emv", 60);
  EXPECT_DOUBLE_EQ(emv[3].second, 10.0);  // 30 - 20: the counters continue across the restart
  Json k(restarted.handle("/api/v1/kpis", "brand=acme")->body);
  EXPECT_EQ(int64_t(k.root["brands"]["acme"]["last_1h"]["minutes"]), 4);
  Json a(restarted.handle("/api/v1/alerts", "")->body);
  const simdjson::dom::array kept = a.root["alerts"];
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_DOUBLE_EQ(double(kept.at(0)["zscore"]), 82.7);
  EXPECT_TRUE(restarted.alerts_after(0).empty());  // not news to this process
  std::filesystem::remove_all(std::filesystem::path(file).parent_path());
}

TEST(QueryApi, AlertsAreKeptAndFilteredBySince) {
  QueryApi api;
  api.on_checkpoint(*metrics({}), 1, {alert_json("acme", kT0, "started")}, kT0);
  api.on_checkpoint(*metrics({}), 2, {alert_json("acme", kT0 + 10 * kMinute, "ended")}, kT0);
  Json all(api.handle("/api/v1/alerts", "")->body);
  EXPECT_EQ(simdjson::dom::array(all.root["alerts"]).size(), 2u);
  const std::string since = format_rfc3339_ms(from_epoch_ms(kT0 + kMinute));
  Json later(api.handle("/api/v1/alerts", "since=" + since)->body);
  const simdjson::dom::array later_alerts = later.root["alerts"];
  ASSERT_EQ(later_alerts.size(), 1u);
  EXPECT_EQ(std::string_view(later_alerts.at(0)["episode"]), "ended");
  Json by_ms(api.handle("/api/v1/alerts", "since=" + std::to_string(kT0 + kMinute))->body);
  EXPECT_EQ(simdjson::dom::array(by_ms.root["alerts"]).size(), 1u);
  EXPECT_EQ(api.alerts_after(1).size(), 1u);
}

TEST(QueryApi, StreamEventsCarryChangedKpisAndResumeFromLastEventId) {
  QueryApi api;
  EXPECT_EQ(api.stream_start(""), "retry: 2000\n\n");  // nothing before a checkpoint
  const std::string run = std::to_string(api.run()) + "-";
  api.on_checkpoint(*metrics({.ri_acme = 1}), 1, {}, kT0);
  const auto second = api.on_checkpoint(*metrics({.ri_acme = 2}), 2, {}, kT0);
  EXPECT_TRUE(second->starts_with("id: " + run + "2\nevent: checkpoint\ndata: {")) << *second;
  EXPECT_NE(second->find("\"full\":false"), std::string::npos);
  EXPECT_NE(second->find("\"acme\":{\"reputation_index\":2"), std::string::npos);
  EXPECT_EQ(second->find("\"globex\""), std::string::npos);  // nothing of globex changed
  // Resumed after 1: the event it missed; unknown or current ids: the full state.
  const std::string resumed = api.stream_start(run + "1");
  EXPECT_NE(resumed.find("id: " + run + "2\n"), std::string::npos);
  EXPECT_NE(resumed.find("\"full\":false"), std::string::npos);
  const std::string fresh = api.stream_start("");
  EXPECT_NE(fresh.find("id: " + run + "2\n"), std::string::npos);
  EXPECT_NE(fresh.find("\"full\":true"), std::string::npos);
  EXPECT_NE(fresh.find("\"globex\":{"), std::string::npos);
  EXPECT_EQ(api.stream_start(run + "2"), "retry: 2000\n\n");
  // Another process's checkpoint 1 is not ours: the full state.
  EXPECT_NE(api.stream_start("12-1").find("\"full\":true"), std::string::npos);
  EXPECT_NE(api.stream_start("garbage").find("\"full\":true"), std::string::npos);
}

TEST(DemoNarrator, TellsOneLinePerBrandAndHighlightsAlerts) {
  QueryApi api;
  api.on_checkpoint(*metrics({.ri_acme = 5.94, .acme_alert = true}), 1,
                    {alert_json("acme", kT0, "started")}, kT0);
  const std::string lines = DemoNarrator::brand_lines(api);
  EXPECT_NE(lines.find("acme       RI   5.9  SoV  25.0%"), std::string::npos) << lines;
  EXPECT_NE(lines.find("[ALERT]"), std::string::npos);
  EXPECT_NE(lines.find("globex     RI  42.5"), std::string::npos) << lines;
  const auto alerts = api.alerts_after(0);
  ASSERT_EQ(alerts.size(), 1u);
  const std::string line = DemoNarrator::alert_line(alerts[0], false);
  EXPECT_NE(line.find("ALERT acme: negative_surge started"), std::string::npos) << line;
  EXPECT_NE(line.find("z = 82.7"), std::string::npos) << line;
  AlertEntry ended = alerts[0];
  ended.started = false;
  ended.json = "{\"brand\":\"acme\",\"episode\":\"ended\",\"episode_end\":\"2026-11-24T10:25:00.000Z\"}";
  EXPECT_EQ(DemoNarrator::alert_line(ended, false), ">>> ALERT acme: episode ended at 10:25 UTC <<<\n");
  EXPECT_TRUE(DemoNarrator::alert_line(ended, true).starts_with("\033[1;97;42m"));  // green
}

// ---- over HTTP ---------------------------------------------------------------------------

std::string get(int port, const std::string& path, const std::string& headers = "") {
  return testing::loopback_exchange(port, "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n");
}

int status_of(const std::string& raw) {
  return raw.starts_with("HTTP/1.1 ") ? std::atoi(raw.c_str() + 9) : 0;
}
std::string body_of(const std::string& raw) {
  const auto at = raw.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : raw.substr(at + 4);
}

// Reads a stream until `text` arrived (true) or 5 s passed.
bool read_until(int fd, std::string& got, std::string_view text) {
  char buf[65536];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (got.find(text) == std::string::npos) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    got.append(buf, size_t(n));
  }
  return true;
}

std::unique_ptr<HttpServer> start_server(const std::string& user = "",
                                         Millis heartbeat = Millis{15'000}) {
  HttpServerOptions o;
  o.stream_heartbeat = heartbeat;
  o.listen = "127.0.0.1:0";
  o.basic_auth_user = user;
  o.basic_auth_password = user.empty() ? "" : "secret";
  auto server = HttpServer::start(o);
  EXPECT_TRUE(server) << server.error().message;
  return std::move(*server);
}

bool digested(const HttpServer& server, uint64_t checkpoint) {
  return testing::wait_until(
      [&] {
        const auto latest = server.query_api().latest();
        return latest && latest->checkpoint >= checkpoint;
      },
      std::chrono::seconds(5));
}

TEST(ConsoleHttp, ServesTheConsoleAndItsAssetsFromTheBinary) {
  auto server = start_server();
  const std::string page = get(server->port(), "/");
  EXPECT_EQ(status_of(page), 200);
  EXPECT_NE(page.find("Content-Type: text/html; charset=utf-8"), std::string::npos);
  EXPECT_NE(page.find("<script src=\"/console.js\">"), std::string::npos);
  const std::string js = get(server->port(), "/console.js");
  EXPECT_EQ(status_of(js), 200);
  EXPECT_NE(js.find("EventSource(\"/api/v1/stream\")"), std::string::npos);
  EXPECT_EQ(status_of(get(server->port(), "/console.css")), 200);
  // Nothing fetched from elsewhere: the only absolute URL is the SVG namespace name.
  auto count = [](const std::string& text, std::string_view what) {
    size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count(body_of(page), "http"), 0u);
  EXPECT_EQ(count(body_of(js), "http"), count(body_of(js), "http://www.w3.org/2000/svg\""));
}

TEST(ConsoleHttp, ApiAnswersWithTheCheckpointOfMetrics) {
  auto server = start_server();
  const std::string early = get(server->port(), "/api/v1/kpis");
  EXPECT_EQ(status_of(early), 503);
  EXPECT_NE(early.find("Retry-After: 1\r\n"), std::string::npos);
  EXPECT_NE(early.find("application/json"), std::string::npos);
  server->publish(metrics({.ri_acme = -3.25}));
  ASSERT_TRUE(digested(*server, 1));
  const std::string kpis = get(server->port(), "/api/v1/kpis?brand=acme");
  ASSERT_EQ(status_of(kpis), 200) << kpis;
  EXPECT_NE(kpis.find("X-Socialpulse-Checkpoint: 1\r\n"), std::string::npos);
  EXPECT_NE(kpis.find("\"reputation_index\":-3.25"), std::string::npos);
  const std::string text = get(server->port(), "/metrics");
  EXPECT_NE(text.find("X-Socialpulse-Checkpoint: 1\r\n"), std::string::npos);
  EXPECT_NE(text.find("socialpulse_reputation_index{brand=\"acme\"} -3.25"), std::string::npos);
  EXPECT_EQ(status_of(get(server->port(), "/api/v1/series?brand=acme&kpi=emv")), 200);
  EXPECT_EQ(status_of(get(server->port(), "/api/v1/alerts?since=2026-11-24T10:00:00Z")), 200);
  EXPECT_EQ(status_of(get(server->port(), "/api/v1/series?brand=zzz&kpi=emv")), 400);
  EXPECT_EQ(status_of(get(server->port(), "/api/v1/series?brand=acme&kpi=zzz")), 400);
  EXPECT_EQ(status_of(get(server->port(), "/api/v1/other")), 404);
  server->readiness().set_restoring(true);
  const std::string restoring = get(server->port(), "/api/v1/kpis");
  EXPECT_EQ(status_of(restoring), 503);
  EXPECT_NE(restoring.find("Retry-After: 1\r\n"), std::string::npos);
  EXPECT_NE(restoring.find("\"error\":\"restoring\""), std::string::npos);
}

TEST(ConsoleHttp, ApiAndConsoleNeedTheCredentialsOfMetrics) {
  auto server = start_server("viewer");
  server->publish(metrics({}));
  ASSERT_TRUE(digested(*server, 1));
  const std::string denied = get(server->port(), "/api/v1/kpis");
  EXPECT_EQ(status_of(denied), 401);
  EXPECT_NE(denied.find("\"error\":\"unauthorized\""), std::string::npos);
  EXPECT_EQ(status_of(get(server->port(), "/")), 401);
  EXPECT_EQ(status_of(get(server->port(), "/api/v1/stream")), 401);
  const std::string auth = "Authorization: Basic dmlld2VyOnNlY3JldA==\r\n";  // viewer:secret
  EXPECT_EQ(status_of(get(server->port(), "/api/v1/kpis", auth)), 200);
  EXPECT_EQ(status_of(get(server->port(), "/", auth)), 200);
}

TEST(ConsoleHttp, StreamPushesOneEventPerCheckpointAndResumesWithLastEventId) {
  auto server = start_server();
  server->publish(metrics({.ri_acme = 1}));
  ASSERT_TRUE(digested(*server, 1));
  const int fd = testing::loopback_connect(server->port());
  const std::string req = "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n";
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string got;
  ASSERT_TRUE(read_until(fd, got, "\"full\":true")) << got;
  EXPECT_NE(got.find("Content-Type: text/event-stream"), std::string::npos);
  server->publish(metrics({.ri_acme = 2}));
  const std::string run = std::to_string(server->query_api().run()) + "-";
  ASSERT_TRUE(read_until(fd, got, "id: " + run + "2\nevent: checkpoint\n")) << got;
  ASSERT_TRUE(read_until(fd, got, "\"reputation_index\":2")) << got;
  ::close(fd);
  server->publish(metrics({.ri_acme = 3}));
  ASSERT_TRUE(digested(*server, 3));
  // A client that saw 2 gets exactly 3.
  const int again = testing::loopback_connect(server->port());
  const std::string resume =
      "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: " + run + "2\r\n\r\n";
  ::send(again, resume.data(), resume.size(), MSG_NOSIGNAL);
  std::string more;
  ASSERT_TRUE(read_until(again, more, "id: " + run + "3\n")) << more;
  ASSERT_TRUE(read_until(again, more, "]}\n\n")) << more;
  EXPECT_EQ(more.find("id: " + run + "2\n"), std::string::npos);
  EXPECT_EQ(more.find("\"full\":true"), std::string::npos);
  ::close(again);
  // Streams do not stop the server from answering anything else.
  EXPECT_EQ(status_of(get(server->port(), "/livez")), 200);
}

TEST(ConsoleHttp, AnIdleStreamGetsHeartbeatsAndStaysOpen) {
  auto server = start_server("", Millis{200});
  const int fd = testing::loopback_connect(server->port());
  const std::string req = "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n";
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string got;
  ASSERT_TRUE(read_until(fd, got, ": keepalive\n\n")) << got;
  got.clear();
  ASSERT_TRUE(read_until(fd, got, ": keepalive\n\n")) << got;  // and again: still open
  server->publish(metrics({}));
  ASSERT_TRUE(read_until(fd, got, "\"full\":false")) << got;
  ::close(fd);
}

}  // namespace
}  // namespace sp
