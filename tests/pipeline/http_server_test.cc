#include "pipeline/http_server.h"

#include <gtest/gtest.h>

#include <array>

#include "tests/support/test_support.h"

namespace sp {
namespace {

std::shared_ptr<const MetricsSnapshot> snapshot_with(double value) {
  MetricsRegistry r(100);
  r.begin();
  r.family("socialpulse_test_total", "test", MetricType::counter);
  r.add({}, value);
  return r.finish();
}

TEST(HttpServer, ServesTheLatestPublishedSnapshot) {
  auto server = HttpServer::start({"127.0.0.1:0", "", ""});
  ASSERT_TRUE(server) << server.error().message;
  const int port = (*server)->port();
  ASSERT_GT(port, 0);
  (*server)->publish(snapshot_with(7));
  auto r = testing::http_get(port, "/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(testing::parse_metrics(r->body)["socialpulse_test_total"], 7);
  (*server)->publish(snapshot_with(9));
  r = testing::http_get(port, "/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(testing::parse_metrics(r->body)["socialpulse_test_total"], 9);
}

TEST(HttpServer, RendersEachPublishedSnapshotOnce) {
  auto server = HttpServer::start({"127.0.0.1:0", "", ""});
  ASSERT_TRUE(server) << server.error().message;
  EXPECT_EQ((*server)->render(), nullptr);  // nothing published yet
  const auto snapshot = snapshot_with(3);
  (*server)->publish(snapshot);
  const auto first = (*server)->render();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ((*server)->render(), first);  // same snapshot: the same text, not rendered again
  // A new snapshot (even with equal values) is rendered anew.
  (*server)->publish(std::make_shared<const MetricsSnapshot>(*snapshot));
  const auto second = (*server)->render();
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second, first);
  EXPECT_EQ(*second, *first);
}

TEST(HttpServer, ReadinessFollowsThePipeline) {
  auto server = HttpServer::start({"127.0.0.1:0", "", ""});
  ASSERT_TRUE(server);
  const int port = (*server)->port();
  EXPECT_EQ(testing::http_get(port, "/livez")->status, 200);
  EXPECT_EQ(testing::http_get(port, "/readyz")->status, 503);
  (*server)->set_ready(true);
  EXPECT_EQ(testing::http_get(port, "/readyz")->status, 200);
}

TEST(HttpServer, BasicAuthProtectsMetrics) {
  auto server = HttpServer::start({"127.0.0.1:0", "prom", "s3cret"});
  ASSERT_TRUE(server);
  const int port = (*server)->port();
  (*server)->publish(snapshot_with(1));
  EXPECT_EQ(testing::http_get(port, "/metrics")->status, 401);
  // base64("prom:wrong") and base64("prom:s3cret")
  EXPECT_EQ(testing::http_get(port, "/metrics", "Basic cHJvbTp3cm9uZw==")->status, 401);
  EXPECT_EQ(testing::http_get(port, "/metrics", "Basic cHJvbTpzM2NyZXQ=")->status, 200);
  EXPECT_EQ(testing::http_get(port, "/livez")->status, 200);  // probes stay open
}

TEST(HttpServer, ListenFailureIsAClearError) {
  auto first = HttpServer::start({"127.0.0.1:0", "", ""});
  ASSERT_TRUE(first);
  auto second = HttpServer::start({"127.0.0.1:" + std::to_string((*first)->port()), "", ""});
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("cannot listen"), std::string::npos);
}

}  // namespace
}  // namespace sp
