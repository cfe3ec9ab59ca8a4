#pragma once
// The HTTP face of a running pipeline: /metrics renders the latest published snapshot (the
// Prometheus text format, or OpenMetrics when the scraper asks for it; metrics_text.h), once per
// snapshot and format: values change only at checkpoints, so every later scrape of the same
// snapshot sends the same text. /livez answers while the process runs; /readyz judges
// readiness.h and says why in JSON. The query API and the console (SPEC 10, query_api.h) share
// the listener and the auth of /metrics: `/` and its assets are compiled in (console_assets.h),
// `/api/v1/*` answers from the published checkpoints, and `/api/v1/stream` keeps its connection
// open to push one Server-Sent Event per checkpoint.
//
// Why not a thread per connection (civetweb, as before): 50 half-open connections held every
// worker until its request timeout, and scrapes timed out while the pipeline was fine. Here one
// thread multiplexes every connection with epoll, non-blocking, so a slow or silent client costs
// a file descriptor and a buffer, never a worker; each request must arrive within
// `request_timeout`, each response be taken within `response_timeout`, and at the connection
// caps the connection that has waited longest for its request is closed to make room, so a
// flood from one client (or many) cannot lock a scraper out. Handlers are cheap (a cached
// rendering, a few atomics), so serving on the event thread is fine.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "operators/time.h"
#include "pipeline/metrics_registry.h"
#include "pipeline/query_api.h"
#include "pipeline/readiness.h"

namespace sp {

struct HttpServerOptions {
  std::string listen = "0.0.0.0:9464";  // host:port or [v6]:port; port 0 picks a free port
  std::string basic_auth_user{};        // empty: /metrics is open
  std::string basic_auth_password{};
  Millis request_timeout{5000};    // from accept to the end of the request head (TLS included)
  Millis response_timeout{10000};  // for the client to take the whole response
  size_t max_connections = 512;    // open connections in all
  size_t max_connections_per_client = 64;  // from one IP address
  size_t max_request_bytes = 8192;         // request line + headers; larger: 431
  // TLS for every endpoint when cert_file is set (PEM; the key file may be the same file).
  std::string tls_cert_file{};
  std::string tls_key_file{};
  std::string tls_client_ca_file{};   // set: clients must present a certificate signed by it
  Millis ready_timeout{30'000};       // kafka.ready_timeout, for /readyz
  std::vector<std::string> brands{};  // configured brands: known to the query API from the start
  std::string series_file{};          // the query API's series ring survives restarts here
  // An event stream's comment line at this interval keeps proxies from closing it as idle.
  Millis stream_heartbeat{15'000};
};

class HttpServer {
 public:
  static Result<std::unique_ptr<HttpServer>> start(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  bool tls() const;
  // A completed checkpoint: its /metrics snapshot and the alert records (JSON) it committed.
  // Cheap for the caller: the query API digests it on the HTTP thread.
  void publish(std::shared_ptr<const MetricsSnapshot> snapshot,
               std::vector<std::string> alerts = {});
  // The checkpoints as the query API sees them (the demo's terminal story reads it too).
  const QueryApi& query_api() const { return query_; }
  // What /readyz judges; the pipeline reports into it.
  Readiness& readiness() { return readiness_; }
  // The text of the current snapshot (what a scrape returns), rendered by the first scrape after
  // a publish; null before the first publish. Public for benchmarks.
  std::shared_ptr<const std::string> render(bool openmetrics = false) const {
    return render(openmetrics, nullptr);
  }
  // The same, and the checkpoint (publish sequence) the text belongs to.
  std::shared_ptr<const std::string> render(bool openmetrics, uint64_t* checkpoint) const;

  // Scrapes of /metrics, for a leaving instance that must not exit before its last values were
  // scraped (issue #15 item 4): whether the latest published snapshot was served, and the time
  // of the last scrape and between the last two (zero before the second).
  struct ScrapeRhythm {
    uint64_t scrapes = 0;
    std::chrono::steady_clock::time_point last{};
    std::chrono::steady_clock::duration interval{};
  };
  bool latest_served() const;
  ScrapeRhythm scrape_rhythm() const;

  class Loop;  // the event loop (http_server.cc)

 private:
  explicit HttpServer(HttpServerOptions options);
  void note_scrape();  // the event loop, before it renders /metrics

  HttpServerOptions options_;
  Readiness readiness_;
  int port_ = 0;
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::shared_ptr<const MetricsSnapshot> snapshot_;
  uint64_t checkpoint_ = 0;  // publish sequence of snapshot_
  // Published, not yet digested by the query API (the HTTP thread takes them on its wake-up).
  struct Undigested {
    std::shared_ptr<const MetricsSnapshot> snapshot;
    uint64_t checkpoint = 0;
    std::vector<std::string> alerts;
  };
  Undigested take_undigested();
  std::shared_ptr<const MetricsSnapshot> undigested_;
  uint64_t undigested_checkpoint_ = 0;
  std::vector<std::string> undigested_alerts_;
  QueryApi query_;
  // The renderings of `rendered_snapshot_` (kept alive so that a new snapshot is never mistaken
  // for it), per format; render_mu_ makes concurrent first scrapes render once.
  mutable std::mutex render_mu_;
  mutable std::shared_ptr<const MetricsSnapshot> rendered_snapshot_[2];
  mutable std::shared_ptr<const std::string> rendered_[2];
  // Published snapshots, and the newest one a scrape was answered with (scrape_mu_: the rhythm).
  std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> served_{0};
  mutable std::mutex scrape_mu_;
  ScrapeRhythm rhythm_;
};

}  // namespace sp
