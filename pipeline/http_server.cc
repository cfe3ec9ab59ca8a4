#include "pipeline/http_server.h"

#include <civetweb.h>

#include <array>
#include <cstring>

#include "pipeline/metrics_text.h"

namespace sp {
namespace {

std::string base64_decode(std::string_view in) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const auto pos = kAlphabet.find(c);
    if (pos == std::string_view::npos) return {};
    buffer = (buffer << 6) | static_cast<uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

// Comparison whose time does not depend on where the first mismatch is.
bool equal_secret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  }
  return diff == 0;
}

void reply(mg_connection* conn, int status, std::string_view content_type, std::string_view body,
           std::string_view extra_headers = "") {
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " +
                     mg_get_response_code_text(conn, status) + "\r\nContent-Type: ";
  head.append(content_type).append("\r\nContent-Length: ").append(std::to_string(body.size()));
  head.append("\r\n").append(extra_headers).append("Connection: close\r\n\r\n");
  mg_write(conn, head.data(), head.size());
  mg_write(conn, body.data(), body.size());
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options) {
  static const bool initialised = [] {
    mg_init_library(0);
    return true;
  }();
  (void)initialised;
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->options_ = std::move(options);
  std::string listen = server->options_.listen;
  std::array<const char*, 7> civet_options = {
      "listening_ports",    listen.c_str(), "num_threads", "4",
      "request_timeout_ms", "10000",        nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof callbacks);
  server->ctx_ = mg_start(&callbacks, server.get(), civet_options.data());
  if (server->ctx_ == nullptr) {
    return make_error(ErrorKind::fatal, "cannot listen on " + listen + " for /metrics");
  }
  std::array<mg_server_port, 4> ports{};
  const int n = mg_get_server_ports(server->ctx_, static_cast<int>(ports.size()), ports.data());
  if (n > 0) server->port_ = ports[0].port;
  mg_set_request_handler(server->ctx_, "/metrics", &HttpServer::handle_metrics, server.get());
  mg_set_request_handler(server->ctx_, "/livez", &HttpServer::handle_livez, server.get());
  mg_set_request_handler(server->ctx_, "/readyz", &HttpServer::handle_readyz, server.get());
  return server;
}

HttpServer::~HttpServer() {
  if (ctx_ != nullptr) mg_stop(ctx_);
}

void HttpServer::publish(std::shared_ptr<const MetricsSnapshot> snapshot) {
  std::lock_guard lock(mu_);
  snapshot_ = std::move(snapshot);
}

std::shared_ptr<const std::string> HttpServer::render() const {
  auto current = [this] {
    std::lock_guard lock(mu_);
    return std::pair{snapshot_, rendered_snapshot_ == snapshot_ ? rendered_ : nullptr};
  };
  if (auto [snapshot, text] = current(); !snapshot || text) return text;
  std::lock_guard render_lock(render_mu_);
  auto [snapshot, text] = current();  // another scrape may have rendered it meanwhile
  if (!snapshot || text) return text;
  std::string out;
  out.reserve(rendered_ ? rendered_->size() + rendered_->size() / 8 : 1 << 16);
  write_metrics_text(*snapshot, out);
  auto rendered = std::make_shared<const std::string>(std::move(out));
  std::lock_guard lock(mu_);
  rendered_snapshot_ = snapshot;
  rendered_ = rendered;
  return rendered;
}

bool HttpServer::authorized(mg_connection* conn) const {
  if (options_.basic_auth_user.empty()) return true;
  const char* header = mg_get_header(conn, "Authorization");
  if (header == nullptr) return false;
  std::string_view value(header);
  if (!value.starts_with("Basic ")) return false;
  const std::string decoded = base64_decode(value.substr(6));
  const auto colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  const bool user_ok =
      equal_secret(std::string_view(decoded).substr(0, colon), options_.basic_auth_user);
  const bool pass_ok =
      equal_secret(std::string_view(decoded).substr(colon + 1), options_.basic_auth_password);
  return user_ok && pass_ok;
}

int HttpServer::handle_metrics(mg_connection* conn, void* self) {
  auto* server = static_cast<HttpServer*>(self);
  if (!server->authorized(conn)) {
    reply(conn, 401, "text/plain", "unauthorized\n",
          "WWW-Authenticate: Basic realm=\"socialpulse\"\r\n");
    return 401;
  }
  const std::shared_ptr<const std::string> body = server->render();
  reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8",
        body ? std::string_view(*body) : std::string_view());
  return 200;
}

int HttpServer::handle_livez(mg_connection* conn, void*) {
  reply(conn, 200, "text/plain", "ok\n");
  return 200;
}

int HttpServer::handle_readyz(mg_connection* conn, void* self) {
  auto* server = static_cast<HttpServer*>(self);
  if (server->ready()) {
    reply(conn, 200, "text/plain", "ready\n");
    return 200;
  }
  reply(conn, 503, "text/plain", "not ready\n");
  return 503;
}

}  // namespace sp
