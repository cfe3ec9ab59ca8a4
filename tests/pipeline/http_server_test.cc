#include "pipeline/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include "tests/support/test_support.h"

namespace sp {
namespace {

using Clock = std::chrono::steady_clock;

std::shared_ptr<const MetricsSnapshot> snapshot_with(double value) {
  MetricsRegistry r(100);
  r.begin();
  r.family("socialpulse_test_total", "test", MetricType::counter);
  r.add({}, value);
  return r.finish();
}

HttpServerOptions local_options() {
  HttpServerOptions o;
  o.listen = "127.0.0.1:0";
  return o;
}

int status_of(const std::string& raw) {
  return raw.size() >= 12 && raw.starts_with("HTTP/1.1 ") ? std::atoi(raw.c_str() + 9) : 0;
}

std::string body_of(const std::string& raw) {
  const auto end = raw.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : raw.substr(end + 4);
}

// True when the server closed `fd` (EOF or reset) within `deadline`.
bool closed_by_server(int fd, Millis deadline) {
  pollfd p{fd, POLLIN, 0};
  const auto until = Clock::now() + deadline;
  while (Clock::now() < until) {
    const auto left = std::chrono::duration_cast<Millis>(until - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 1))) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) return true;  // anything sent before the close (a 408) is read past
  }
  return false;
}

TEST(HttpServer, ServesTheLatestPublishedSnapshot) {
  auto server = HttpServer::start(local_options());
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
  auto server = HttpServer::start(local_options());
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

TEST(HttpServer, ReadyzAnswersWithTheReasonsInJson) {
  auto server = HttpServer::start(local_options());
  ASSERT_TRUE(server);
  const int port = (*server)->port();
  EXPECT_EQ(testing::http_get(port, "/livez")->status, 200);
  auto r = testing::http_get(port, "/readyz");
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "{\"ready\":false,\"reasons\":[\"no partitions assigned\"]}\n");
  (*server)->readiness().set_assigned_partitions(2);
  r = testing::http_get(port, "/readyz");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "{\"ready\":true,\"reasons\":[]}\n");
  (*server)->readiness().set_checkpoint_failing(true);
  r = testing::http_get(port, "/readyz");
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("checkpoints failing"), std::string::npos) << r->body;
}

TEST(HttpServer, BasicAuthProtectsMetrics) {
  HttpServerOptions o = local_options();
  o.basic_auth_user = "prom";
  o.basic_auth_password = "s3cret";
  auto server = HttpServer::start(o);
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
  auto first = HttpServer::start(local_options());
  ASSERT_TRUE(first);
  HttpServerOptions o = local_options();
  o.listen = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = HttpServer::start(o);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("cannot listen"), std::string::npos);
}

// Issue 19: with civetweb, 50 held connections made /metrics time out for 10 s.
TEST(HttpServer, ScrapesAndProbesAnswerWithinASecondUnder200HalfOpenConnections) {
  auto server = HttpServer::start(local_options());
  ASSERT_TRUE(server);
  const int port = (*server)->port();
  (*server)->publish(snapshot_with(5));
  std::vector<int> flood;
  for (int i = 0; i < 200; ++i) {
    const int fd = testing::loopback_connect(port);
    ASSERT_GE(fd, 0);
    // Half a request, never finished (slowloris); every other one sends nothing at all.
    if (i % 2 == 0) ::send(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n", 33, MSG_NOSIGNAL);
    flood.push_back(fd);
  }
  for (const char* path : {"/metrics", "/readyz", "/livez", "/metrics"}) {
    const auto started = Clock::now();
    const int fd = testing::loopback_connect(port, Millis{1000});
    ASSERT_GE(fd, 0);
    const std::string req = std::string("GET ") + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
    ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    const std::string raw = testing::read_until_closed(fd);
    ::close(fd);
    const auto took = Clock::now() - started;
    EXPECT_LT(took, std::chrono::seconds(1)) << path;
    EXPECT_NE(status_of(raw), 0) << path << ": no answer";
    if (std::string_view(path) == "/metrics") {
      EXPECT_EQ(testing::parse_metrics(body_of(raw))["socialpulse_test_total"], 5);
    }
  }
  for (int fd : flood) ::close(fd);
}

TEST(HttpServer, AnUnfinishedRequestIsAnswered408AndClosedAfterTheRequestTimeout) {
  HttpServerOptions o = local_options();
  o.request_timeout = Millis{300};
  auto server = HttpServer::start(o);
  ASSERT_TRUE(server);
  const int fd = testing::loopback_connect((*server)->port());
  ::send(fd, "GET /metrics HTTP/1.1\r\n", 23, MSG_NOSIGNAL);
  const auto started = Clock::now();
  const std::string raw = testing::read_until_closed(fd);  // returns at the server's close (or 5 s)
  ::close(fd);
  EXPECT_EQ(status_of(raw), 408);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(3));
  const int silent = testing::loopback_connect((*server)->port());
  EXPECT_TRUE(closed_by_server(silent, Millis{3000}));
  ::close(silent);
}

TEST(HttpServer, OversizedHeadersGet431) {
  HttpServerOptions o = local_options();
  o.max_request_bytes = 1024;
  auto server = HttpServer::start(o);
  ASSERT_TRUE(server);
  const std::string big = "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n";
  EXPECT_EQ(status_of(testing::loopback_exchange((*server)->port(), big)), 431);
  // Without an end of headers at all.
  EXPECT_EQ(status_of(testing::loopback_exchange((*server)->port(), "GET /metrics HTTP/1.1\r\nX: " +
                                                      std::string(4000, 'b'))),
            431);
  EXPECT_EQ(status_of(testing::loopback_exchange((*server)->port(), "GET /livez HTTP/1.1\r\n\r\n")), 200);
}

TEST(HttpServer, MalformedRequestsGet4xxAndTheServerKeepsServing) {
  auto server = HttpServer::start(local_options());
  ASSERT_TRUE(server);
  const int port = (*server)->port();
  EXPECT_EQ(status_of(testing::loopback_exchange(port, "garbage\r\n\r\n")), 400);
  EXPECT_EQ(status_of(testing::loopback_exchange(port, "GET /metrics SPDY/9\r\n\r\n")), 400);
  EXPECT_EQ(status_of(testing::loopback_exchange(port, "GET metrics HTTP/1.1\r\n\r\n")), 400);
  EXPECT_EQ(status_of(testing::loopback_exchange(port, "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n")), 400);
  EXPECT_EQ(status_of(testing::loopback_exchange(port, std::string("\0\1\2\3\r\n\r\n", 8))), 400);
  EXPECT_EQ(status_of(testing::loopback_exchange(port, "GET /nope HTTP/1.1\r\n\r\n")), 404);
  EXPECT_EQ(status_of(testing::loopback_exchange(port, "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")),
            405);
  const std::string head = testing::loopback_exchange(port, "HEAD /livez HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status_of(head), 200);
  EXPECT_EQ(body_of(head), "");
  EXPECT_EQ(status_of(testing::loopback_exchange(port, "GET /livez?x=1 HTTP/1.0\r\n\r\n")), 200);
}

TEST(HttpServer, AtThePerClientCapTheLongestWaitingConnectionMakesRoom) {
  HttpServerOptions o = local_options();
  o.max_connections_per_client = 8;
  auto server = HttpServer::start(o);
  ASSERT_TRUE(server);
  const int port = (*server)->port();
  std::vector<int> held;
  for (int i = 0; i < 20; ++i) held.push_back(testing::loopback_connect(port));
  // The 12 oldest were closed to make room for the newer ones...
  for (int i = 0; i < 12; ++i) EXPECT_TRUE(closed_by_server(held[i], Millis{3000})) << i;
  // ...and a scraper from the same address still gets in.
  EXPECT_EQ(status_of(testing::loopback_exchange(port, "GET /livez HTTP/1.1\r\n\r\n")), 200);
  for (int fd : held) ::close(fd);
}

// Clients that request /metrics and never read the answer cannot pin the caps either.
TEST(HttpServer, ClientsThatNeverReadTheirResponseDoNotLockScrapersOut) {
  HttpServerOptions o = local_options();
  o.max_connections = 16;
  // A server that waited for these clients would answer nothing before the first of them timed
  // out (30 s): the bound below is far from that, and far above a loaded machine's slowness.
  o.response_timeout = Millis{30'000};
  auto server = HttpServer::start(o);
  ASSERT_TRUE(server);
  const int port = (*server)->port();
  MetricsRegistry r(1000000);
  r.begin();
  r.family("socialpulse_big_total", "big", MetricType::counter);
  for (int i = 0; i < 200000; ++i) {
    const std::string v = std::to_string(i);
    const LabelPair labels[] = {{"brand", v}};
    r.add(labels, i);
  }
  (*server)->publish(r.finish());  // ~7 MB: more than a socket buffer holds (4 MB at most)
  std::vector<int> stuck;
  for (int i = 0; i < 40; ++i) {
    const int fd = testing::loopback_connect(port);
    const int small = 4096;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ::send(fd, "GET /metrics HTTP/1.1\r\n\r\n", 25, MSG_NOSIGNAL);
    stuck.push_back(fd);
  }
  const auto started = Clock::now();
  EXPECT_EQ(status_of(testing::loopback_exchange(port, "GET /livez HTTP/1.1\r\n\r\n")), 200);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(5));
  for (int fd : stuck) ::close(fd);
}

TEST(HttpServer, NegotiatesOpenMetrics) {
  auto server = HttpServer::start(local_options());
  ASSERT_TRUE(server);
  const int port = (*server)->port();
  (*server)->publish(snapshot_with(4));
  // What Prometheus 2.42 sends.
  const std::string om = testing::loopback_exchange(
      port,
      "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,"
      "application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;"
      "q=0.1\r\n\r\n");
  EXPECT_NE(om.find("Content-Type: application/openmetrics-text; version=1.0.0"),
            std::string::npos);
  EXPECT_TRUE(body_of(om).ends_with("# EOF\n")) << om;
  EXPECT_NE(body_of(om).find("# TYPE socialpulse_test counter\n"), std::string::npos) << om;
  EXPECT_NE(body_of(om).find("socialpulse_test_total 4\n"), std::string::npos) << om;
  const std::string text = testing::loopback_exchange(port, "GET /metrics HTTP/1.1\r\nAccept: text/plain\r\n\r\n");
  EXPECT_NE(text.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_EQ(body_of(text).find("# EOF"), std::string::npos);
  const std::string none = testing::loopback_exchange(port, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_NE(none.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
}

// ---- TLS (issue 19 item 2), with certificates made by the openssl CLI for each run -----------

class HttpServerTls : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("openssl version > /dev/null 2>&1") != 0) {
      GTEST_SKIP() << "the openssl command is not installed (scripts/setup-deps.sh installs it)";
    }
    dir_ = testing::make_temp_dir("sp-tls");
    std::ofstream(dir_ + "/ext.cnf") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    const std::string d = dir_;
    const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
    const std::string script =
        "cd " + d + " && " +
        "openssl req -x509" + key + "-keyout ca.key -out ca.pem -days 2 -subj /CN=sp-test-ca && " +
        "openssl req" + key + "-keyout server.key -out server.csr -subj /CN=localhost && " +
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 " +
        "-extfile ext.cnf -out server.pem && " +
        "openssl req" + key + "-keyout client.key -out client.csr -subj /CN=prometheus && " +
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 " +
        "-out client.pem";
    ASSERT_EQ(std::system(("(" + script + ") > " + d + "/openssl.log 2>&1").c_str()), 0)
        << "see " << d << "/openssl.log";
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  HttpServerOptions tls_options() {
    HttpServerOptions o = local_options();
    o.tls_cert_file = dir_ + "/server.pem";
    o.tls_key_file = dir_ + "/server.key";
    return o;
  }

  // GET over TLS, verifying the server against the test CA; "" when the handshake or the
  // exchange fails. `with_client_cert`: present client.pem.
  std::string tls_get(int port, const std::string& path, bool with_client_cert = false) {
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                           &SSL_CTX_free);
    SSL_CTX_load_verify_locations(ctx.get(), (dir_ + "/ca.pem").c_str(), nullptr);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (with_client_cert) {
      SSL_CTX_use_certificate_file(ctx.get(), (dir_ + "/client.pem").c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(ctx.get(), (dir_ + "/client.key").c_str(), SSL_FILETYPE_PEM);
    }
    const int fd = testing::loopback_connect(port);
    if (fd < 0) return {};
    std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), &SSL_free);
    SSL_set_fd(ssl.get(), fd);
    SSL_set1_host(ssl.get(), "127.0.0.1");
    std::string raw;
    if (SSL_connect(ssl.get()) == 1) {
      const std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
      if (SSL_write(ssl.get(), req.data(), static_cast<int>(req.size())) > 0) {
        char buf[16384];
        int n = 0;
        while ((n = SSL_read(ssl.get(), buf, sizeof buf)) > 0) raw.append(buf, static_cast<size_t>(n));
      }
    }
    ERR_clear_error();
    ::close(fd);
    return raw;
  }

  std::string dir_;
};

TEST_F(HttpServerTls, ServesEveryEndpointOverTls) {
  auto server = HttpServer::start(tls_options());
  ASSERT_TRUE(server) << server.error().message;
  EXPECT_TRUE((*server)->tls());
  (*server)->publish(snapshot_with(6));
  const std::string metrics = tls_get((*server)->port(), "/metrics");
  EXPECT_EQ(status_of(metrics), 200) << metrics;
  EXPECT_EQ(testing::parse_metrics(body_of(metrics))["socialpulse_test_total"], 6);
  EXPECT_EQ(status_of(tls_get((*server)->port(), "/livez")), 200);
  EXPECT_EQ(status_of(tls_get((*server)->port(), "/readyz")), 503);
}

TEST_F(HttpServerTls, PlainTextAndGarbageHandshakesAreDroppedWithoutHarm) {
  HttpServerOptions o = tls_options();
  o.request_timeout = Millis{500};
  auto server = HttpServer::start(o);
  ASSERT_TRUE(server) << server.error().message;
  const int port = (*server)->port();
  // Plain HTTP to the TLS port: never an HTTP answer, and the connection is closed.
  EXPECT_EQ(status_of(testing::loopback_exchange(port, "GET /metrics HTTP/1.1\r\n\r\n")), 0);
  EXPECT_EQ(status_of(testing::loopback_exchange(port, std::string(300, '\x16'))), 0);
  // A client that opens and says nothing is closed after the request timeout.
  const int silent = testing::loopback_connect(port);
  EXPECT_TRUE(closed_by_server(silent, Millis{3000}));
  ::close(silent);
  EXPECT_EQ(status_of(tls_get(port, "/livez")), 200);
}

TEST_F(HttpServerTls, AClientCaRequiresClientCertificates) {
  HttpServerOptions o = tls_options();
  o.tls_client_ca_file = dir_ + "/ca.pem";
  auto server = HttpServer::start(o);
  ASSERT_TRUE(server) << server.error().message;
  EXPECT_EQ(status_of(tls_get((*server)->port(), "/livez", false)), 0);
  EXPECT_EQ(status_of(tls_get((*server)->port(), "/livez", true)), 200);
}

TEST_F(HttpServerTls, AKeyThatDoesNotMatchTheCertificateIsAConfigurationError) {
  HttpServerOptions o = tls_options();
  o.tls_key_file = dir_ + "/client.key";
  auto server = HttpServer::start(o);
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().kind, ErrorKind::invalid_input);
  EXPECT_NE(server.error().message.find("metrics.tls.key_file"), std::string::npos);
}

// ---- Readiness, judged on a virtual clock ----------------------------------------------------

Clock::time_point at(int64_t seconds) { return Clock::time_point{std::chrono::seconds(seconds)}; }

constexpr Millis kReadyTimeout{30'000};

bool has_reason(const Readiness::Verdict& v, std::string_view what) {
  for (const auto& reason : v.reasons) {
    if (reason.find(what) != std::string::npos) return true;
  }
  return false;
}

TEST(Readiness, ReadyWithPartitionsAndNothingWrong) {
  Readiness r(kReadyTimeout);
  r.set_assigned_partitions(4);
  EXPECT_TRUE(r.evaluate(at(100)).ready);
}

TEST(Readiness, NotReadyWithZeroPartitions) {
  Readiness r(kReadyTimeout);
  r.set_assigned_partitions(4);
  r.set_assigned_partitions(0);
  const auto v = r.evaluate(at(100));
  EXPECT_FALSE(v.ready);
  EXPECT_TRUE(has_reason(v, "no partitions assigned"));
}

TEST(Readiness, NotReadyWhileRestoring) {
  Readiness r(kReadyTimeout);
  r.set_assigned_partitions(4);
  r.set_restoring(true);
  EXPECT_TRUE(has_reason(r.evaluate(at(100)), "restoring"));
  r.set_restoring(false);
  EXPECT_TRUE(r.evaluate(at(100)).ready);
}

TEST(Readiness, BrokerLossCountsOnlyAfterTheReadyTimeout) {
  Readiness r(kReadyTimeout);
  r.set_assigned_partitions(4);
  r.broker_lost(at(100));
  EXPECT_TRUE(r.evaluate(at(129)).ready);
  r.broker_lost(at(120));  // still the same loss: its start is kept
  const auto v = r.evaluate(at(130));
  EXPECT_FALSE(v.ready);
  EXPECT_TRUE(has_reason(v, "broker unreachable for 30s")) << v.reasons.front();
  r.broker_reachable();
  EXPECT_TRUE(r.evaluate(at(131)).ready);
}

TEST(Readiness, NotReadyWhileCheckpointsFail) {
  Readiness r(kReadyTimeout);
  r.set_assigned_partitions(4);
  r.set_checkpoint_failing(true);
  EXPECT_TRUE(has_reason(r.evaluate(at(100)), "checkpoints failing"));
  r.set_checkpoint_failing(false);
  EXPECT_TRUE(r.evaluate(at(100)).ready);
}

TEST(Readiness, StuckWhenLagMakesNoProgressForTheReadyTimeout) {
  Readiness r(kReadyTimeout);
  r.set_assigned_partitions(4);
  r.note_lag(true, at(100));
  r.note_progress(at(110));
  r.note_lag(true, at(120));  // lag persists since 100
  EXPECT_TRUE(r.evaluate(at(139)).ready);
  const auto v = r.evaluate(at(140));
  EXPECT_FALSE(v.ready);
  EXPECT_TRUE(has_reason(v, "consumed nothing for 30s"));
  r.note_progress(at(141));
  EXPECT_TRUE(r.evaluate(at(141)).ready);
  // No lag: nothing to consume is not being stuck.
  r.note_lag(false, at(200));
  EXPECT_TRUE(r.evaluate(at(500)).ready);
  // Lag that appears after a long quiet time has its full timeout.
  r.note_lag(true, at(500));
  EXPECT_TRUE(r.evaluate(at(529)).ready);
  EXPECT_FALSE(r.evaluate(at(530)).ready);
}

TEST(Readiness, NotReadyWhenStoppingOrFailed) {
  Readiness a(kReadyTimeout);
  a.set_assigned_partitions(4);
  a.set_stopping();
  EXPECT_TRUE(has_reason(a.evaluate(at(1)), "shutting down"));
  Readiness b(kReadyTimeout);
  b.set_assigned_partitions(4);
  b.set_failed();
  EXPECT_TRUE(has_reason(b.evaluate(at(1)), "fatal"));
}

TEST(Readiness, JsonEscapesReasons) {
  Readiness::Verdict v;
  v.reasons = {"a \"quoted\" \\ reason"};
  EXPECT_EQ(Readiness::to_json(v), "{\"ready\":false,\"reasons\":[\"a \\\"quoted\\\" \\\\ reason\"]}\n");
}

}  // namespace
}  // namespace sp
