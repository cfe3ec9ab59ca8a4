#pragma once
// The HTTP face of a running pipeline (civetweb): /metrics renders the latest published snapshot
// in the text format (metrics_text.h), once per snapshot: values change only at checkpoints, so
// every later scrape of the same snapshot sends the same text. /livez answers while the process
// runs; /readyz only when state is restored, partitions are assigned and the pipeline consumes.
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "base/result.h"
#include "pipeline/metrics_registry.h"

struct mg_context;
struct mg_connection;

namespace sp {

struct HttpServerOptions {
  std::string listen = "0.0.0.0:9464";  // host:port; port 0 picks a free port
  std::string basic_auth_user;          // empty: /metrics is open
  std::string basic_auth_password;
};

class HttpServer {
 public:
  static Result<std::unique_ptr<HttpServer>> start(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  void publish(std::shared_ptr<const MetricsSnapshot> snapshot);
  void set_ready(bool ready) { ready_.store(ready); }
  bool ready() const { return ready_.load(); }
  // The text of the current snapshot (what a scrape returns), rendered by the first scrape after
  // a publish; null before the first publish. Public for benchmarks.
  std::shared_ptr<const std::string> render() const;

 private:
  HttpServer() = default;
  static int handle_metrics(mg_connection* conn, void* self);
  static int handle_livez(mg_connection* conn, void* self);
  static int handle_readyz(mg_connection* conn, void* self);
  bool authorized(mg_connection* conn) const;

  HttpServerOptions options_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
  std::atomic<bool> ready_{false};
  mutable std::mutex mu_;
  std::shared_ptr<const MetricsSnapshot> snapshot_;
  // The rendering of `rendered_snapshot_` (kept alive so that a new snapshot is never mistaken
  // for it); render_mu_ makes concurrent first scrapes render once.
  mutable std::mutex render_mu_;
  mutable std::shared_ptr<const MetricsSnapshot> rendered_snapshot_;
  mutable std::shared_ptr<const std::string> rendered_;
};

}  // namespace sp
