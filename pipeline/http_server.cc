#include "pipeline/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>
#include <unordered_map>

#include "pipeline/console_assets.h"
#include "pipeline/metrics_text.h"
#include "pipeline/thread_policy.h"

namespace sp {
namespace {

using Clock = std::chrono::steady_clock;

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

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view status_text(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

struct Request {
  std::string_view method;
  std::string_view path;
  std::string_view query;
  std::string_view last_event_id;
  std::string_view authorization;
  std::string_view accept;
};

// Parses a request head (up to and including the blank line); false: malformed.
bool parse_request(std::string_view head, Request& r) {
  auto line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) return false;
  const std::string_view line = head.substr(0, line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return false;
  r.method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return false;
  if (target.empty() || target.front() != '/') return false;
  const auto question = target.find('?');
  r.path = target.substr(0, question);
  if (question != std::string_view::npos) r.query = target.substr(question + 1);
  head.remove_prefix(line_end + 2);
  while (!head.empty()) {
    line_end = head.find("\r\n");
    if (line_end == std::string_view::npos) return false;
    const std::string_view header = head.substr(0, line_end);
    head.remove_prefix(line_end + 2);
    if (header.empty()) break;
    const auto colon = header.find(':');
    if (colon == std::string_view::npos || colon == 0 || header.front() == ' ' ||
        header.front() == '\t') {
      return false;  // no name, or obsolete line folding
    }
    const std::string_view name = header.substr(0, colon);
    const std::string_view value = trim(header.substr(colon + 1));
    if (iequals(name, "Authorization")) r.authorization = value;
    if (iequals(name, "Accept")) r.accept = value;
    if (iequals(name, "Last-Event-ID")) r.last_event_id = value;
  }
  return true;
}

// OpenMetrics when the scraper lists it before (or instead of) the text format; Prometheus sends
// "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,
// text/plain;version=0.0.4;q=0.5,*/*;q=0.1".
bool wants_openmetrics(std::string_view accept) {
  double best_om = -1, best_text = -1;
  while (!accept.empty()) {
    const auto comma = accept.find(',');
    std::string_view item = trim(accept.substr(0, comma));
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    const std::string_view type = trim(item.substr(0, item.find(';')));
    double q = 1;
    if (const auto qpos = item.find(";q="); qpos != std::string_view::npos) {
      q = std::atof(std::string(item.substr(qpos + 3)).c_str());
    } else if (const auto qpos2 = item.find("; q="); qpos2 != std::string_view::npos) {
      q = std::atof(std::string(item.substr(qpos2 + 4)).c_str());
    }
    if (iequals(type, "application/openmetrics-text")) best_om = std::max(best_om, q);
    if (iequals(type, "text/plain") || iequals(type, "*/*")) best_text = std::max(best_text, q);
  }
  return best_om > 0 && best_om >= best_text;
}

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};

std::string ssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

Result<std::unique_ptr<SSL_CTX, SslCtxDeleter>> make_tls_context(const HttpServerOptions& o) {
  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return make_error(ErrorKind::invalid_input, "metrics.tls: " + ssl_errors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  const std::string& key = o.tls_key_file.empty() ? o.tls_cert_file : o.tls_key_file;
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), o.tls_cert_file.c_str()) != 1) {
    return make_error(ErrorKind::invalid_input, "metrics.tls.cert_file: cannot load '" +
                                                    o.tls_cert_file + "': " + ssl_errors());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    return make_error(ErrorKind::invalid_input, "metrics.tls.key_file: cannot load '" + key +
                                                    "' for the certificate: " + ssl_errors());
  }
  if (!o.tls_client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), o.tls_client_ca_file.c_str(), nullptr) != 1) {
      return make_error(ErrorKind::invalid_input, "metrics.tls.client_ca_file: cannot load '" +
                                                      o.tls_client_ca_file + "': " + ssl_errors());
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return ctx;
}

// A bound, listening, non-blocking socket for "host:port" or "[v6]:port".
Result<int> listen_on(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return make_error(ErrorKind::fatal, "bad listen address");
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc =
          ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    return make_error(ErrorKind::fatal, std::string("cannot resolve: ") + gai_strerror(rc));
  }
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 1024) == 0) {
      ::freeaddrinfo(found);
      return fd;
    }
    why = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return make_error(ErrorKind::fatal, why);
}

}  // namespace

// One thread, epoll, every socket non-blocking. A connection goes handshake (TLS) -> reading ->
// writing -> draining (response sent, waiting briefly for the client to close, so that unread
// request bytes do not turn our close into a reset that destroys the response) -> closed.
class HttpServer::Loop {
 public:
  friend class HttpServer;
  Loop(HttpServer& server, int listen_fd, std::unique_ptr<SSL_CTX, SslCtxDeleter> tls)
      : server_(server), options_(server.options_), listen_fd_(listen_fd), tls_(std::move(tls)) {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    add(listen_fd_, EPOLLIN, kListenTag);
    add(wake_fd_, EPOLLIN, kWakeTag);
  }
  ~Loop() {
    for (auto& [id, c] : connections_) ::close(c.fd);
    ::close(listen_fd_);
    ::close(wake_fd_);
    ::close(epoll_fd_);
  }
  bool ok() const { return epoll_fd_ >= 0 && wake_fd_ >= 0; }
  bool tls() const { return tls_ != nullptr; }

  void stop() {
    stopping_.store(true);
    const uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
  }

  void run() {
    std::array<epoll_event, 256> events;
    while (!stopping_.load()) {
      const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                                 wait_ms(Clock::now()));
      if (n < 0 && errno != EINTR) {
        spdlog::error("msg=\"http: epoll_wait failed\" error=\"{}\"", std::strerror(errno));
        return;
      }
      for (int i = 0; i < n; ++i) {
        const uint64_t tag = events[static_cast<size_t>(i)].data.u64;
        if (tag == kWakeTag) {
          digest_checkpoint();
          continue;
        }
        if (tag == kListenTag) {
          accept_all();
          continue;
        }
        auto it = connections_.find(tag);
        if (it != connections_.end()) advance(it->second);
      }
      expire(Clock::now());
    }
  }

 private:
  // streaming: an event stream; `head` holds the bytes not yet sent, the connection stays open.
  enum class Phase { handshake, reading, writing, draining, streaming };
  struct Connection {
    uint64_t id = 0;
    int fd = -1;
    std::unique_ptr<SSL, SslDeleter> ssl;
    std::string client;
    Phase phase = Phase::reading;
    Clock::time_point deadline;
    std::string in;
    std::string head;  // the response head, then the shared body
    std::shared_ptr<const std::string> body;
    size_t written = 0;  // bytes of head + body sent
    uint32_t events = 0;
    bool want_write = false;  // the last I/O call blocked on writability
  };
  static constexpr uint64_t kListenTag = 0;
  static constexpr uint64_t kWakeTag = 1;
  static constexpr Millis kDrainTime{1000};
  // A stream whose client lets kStreamBacklog pile up, or has not taken the previous bytes by
  // the next heartbeat (options_.stream_heartbeat), ends.
  static constexpr size_t kStreamBacklog = 4 << 20;

  void add(int fd, uint32_t events, uint64_t tag) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }

  int wait_ms(Clock::time_point now) const {
    Clock::time_point next = now + Millis{1000};
    for (const auto& [id, c] : connections_) next = std::min(next, c.deadline);
    return static_cast<int>(
        std::max<int64_t>(0, std::chrono::duration_cast<Millis>(next - now).count() + 1));
  }

  void accept_all() {
    for (;;) {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        // Out of descriptors: make room from the longest waiting connection, or try later.
        if ((errno == EMFILE || errno == ENFILE) && evict_oldest(nullptr)) continue;
        return;
      }
      std::string client = client_address(addr);
      if (per_client_[client] >= options_.max_connections_per_client && !evict_oldest(&client)) {
        ::close(fd);
        continue;
      }
      if (connections_.size() >= options_.max_connections && !evict_oldest(nullptr)) {
        ::close(fd);
        continue;
      }
      Connection c;
      c.id = next_id_++;
      c.fd = fd;
      c.client = std::move(client);
      c.deadline = Clock::now() + options_.request_timeout;
      if (tls_) {
        c.ssl.reset(SSL_new(tls_.get()));
        if (!c.ssl || SSL_set_fd(c.ssl.get(), fd) != 1) {
          ERR_clear_error();
          ::close(fd);
          continue;
        }
        SSL_set_accept_state(c.ssl.get());
        c.phase = Phase::handshake;
      }
      ++per_client_[c.client];
      c.events = EPOLLIN;
      add(fd, EPOLLIN, c.id);
      auto [it, inserted] = connections_.emplace(c.id, std::move(c));
      advance(it->second);  // the request may be there already
    }
  }

  static std::string client_address(const sockaddr_storage& addr) {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (addr.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, buf, sizeof buf);
    } else if (addr.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, buf,
                  sizeof buf);
    }
    return buf;
  }

  // Closes the oldest connection (of `client`, or any) that is still waiting for its request or
  // already answered; only when there is none, the oldest one whose client is slow to take its
  // response (clients that never read must not pin the caps either). False: nothing to close.
  bool evict_oldest(const std::string* client) {
    Connection* oldest = nullptr;
    Connection* oldest_writing = nullptr;
    for (auto& [id, c] : connections_) {  // ids grow with accept order
      if (client != nullptr && c.client != *client) continue;
      Connection*& slot =
          c.phase == Phase::writing || c.phase == Phase::streaming ? oldest_writing : oldest;
      if (slot == nullptr) slot = &c;
    }
    if (oldest == nullptr) oldest = oldest_writing;
    if (oldest == nullptr) return false;
    close_connection(oldest->id);
    return true;
  }

  void close_connection(uint64_t id) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    Connection& c = it->second;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    c.ssl.reset();
    ::close(c.fd);
    if (auto pc = per_client_.find(c.client); pc != per_client_.end() && --pc->second == 0)
      per_client_.erase(pc);
    connections_.erase(it);
  }

  void expire(Clock::time_point now) {
    std::vector<uint64_t> expired;
    for (auto& [id, c] : connections_) {
      if (c.deadline <= now) expired.push_back(id);
    }
    for (uint64_t id : expired) {
      Connection& c = connections_.at(id);
      if (c.phase == Phase::streaming && c.written >= c.head.size()) {
        push(c, ": keepalive\n\n");
        continue;
      }
      // A plain-HTTP client that never finished its request learns why; TLS ones just go.
      if (c.phase == Phase::reading && !c.ssl && !c.in.empty()) {
        const std::string_view msg = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n";
        [[maybe_unused]] const auto n = ::send(c.fd, msg.data(), msg.size(), MSG_NOSIGNAL);
      }
      close_connection(id);
    }
  }

  // >0: bytes; 0: the peer closed or failed; -1: would block (want_write says on what).
  ssize_t read_some(Connection& c, char* buf, size_t cap) {
    c.want_write = false;
    if (!c.ssl) {
      const ssize_t n = ::recv(c.fd, buf, cap, 0);
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : 0;
      return n;
    }
    const int n = SSL_read(c.ssl.get(), buf, static_cast<int>(cap));
    if (n > 0) return n;
    return tls_blocked(c, n) ? -1 : 0;
  }

  ssize_t write_some(Connection& c, const char* data, size_t len) {
    c.want_write = false;
    if (!c.ssl) {
      const ssize_t n = ::send(c.fd, data, len, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
          c.want_write = true;
          return -1;
        }
        return 0;
      }
      return n;
    }
    const int n = SSL_write(c.ssl.get(), data, static_cast<int>(std::min<size_t>(len, 1 << 20)));
    if (n > 0) return n;
    return tls_blocked(c, n) ? -1 : 0;
  }

  bool tls_blocked(Connection& c, int rc) {
    const int err = SSL_get_error(c.ssl.get(), rc);
    ERR_clear_error();
    if (err == SSL_ERROR_WANT_READ) return true;
    if (err == SSL_ERROR_WANT_WRITE) {
      c.want_write = true;
      return true;
    }
    return false;
  }

  void watch(Connection& c) {
    const uint32_t events = c.want_write ? EPOLLOUT : EPOLLIN;
    if (events == c.events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = c.id;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
    c.events = events;
  }

  // Moves the connection as far as its socket allows.
  void advance(Connection& c) {
    const uint64_t id = c.id;
    if (c.phase == Phase::handshake) {
      c.want_write = false;
      const int rc = SSL_do_handshake(c.ssl.get());
      if (rc != 1) {
        if (!tls_blocked(c, rc)) {
          spdlog::debug("msg=\"http: TLS handshake failed\" client={}", c.client);
          return close_connection(id);
        }
        return watch(c);
      }
      c.phase = Phase::reading;
    }
    if (c.phase == Phase::reading) {
      char buf[4096];
      for (;;) {
        const ssize_t n = read_some(c, buf, sizeof buf);
        if (n == 0) return close_connection(id);
        if (n < 0) break;
        c.in.append(buf, static_cast<size_t>(n));
        if (const auto end = c.in.find("\r\n\r\n"); end != std::string::npos) {
          if (end + 4 > options_.max_request_bytes) {
            respond(c, 431, "text/plain", "request head too large\n");
          } else {
            handle(c, std::string_view(c.in).substr(0, end + 4));
          }
          break;
        }
        if (c.in.size() > options_.max_request_bytes) {
          respond(c, 431, "text/plain", "request head too large\n");
          break;
        }
      }
      if (c.phase == Phase::reading) return watch(c);
    }
    if (c.phase == Phase::writing) {
      const size_t total = c.head.size() + (c.body ? c.body->size() : 0);
      while (c.written < total) {
        const bool in_head = c.written < c.head.size();
        const char* data =
            in_head ? c.head.data() + c.written : c.body->data() + (c.written - c.head.size());
        const size_t len = in_head ? c.head.size() - c.written : total - c.written;
        const ssize_t n = write_some(c, data, len);
        if (n == 0) return close_connection(id);
        if (n < 0) return watch(c);
        c.written += static_cast<size_t>(n);
      }
      if (c.ssl) {
        SSL_shutdown(c.ssl.get());  // close_notify; the client's answer is not awaited
        ERR_clear_error();
      }
      ::shutdown(c.fd, SHUT_WR);
      c.phase = Phase::draining;
      c.deadline = std::min(c.deadline, Clock::now() + kDrainTime);
      c.in.clear();
    }
    if (c.phase == Phase::streaming) {
      while (c.written < c.head.size()) {
        const ssize_t n = write_some(c, c.head.data() + c.written, c.head.size() - c.written);
        if (n == 0) return close_connection(id);
        if (n < 0) return watch(c);
        c.written += static_cast<size_t>(n);
      }
      c.head.clear();
      c.written = 0;
      char buf[1024];
      for (;;) {  // a stream's client sends nothing more: this only notices it leave
        const ssize_t n = read_some(c, buf, sizeof buf);
        if (n == 0) return close_connection(id);
        if (n < 0) break;
      }
      return watch(c);
    }
    if (c.phase == Phase::draining) {
      char buf[4096];
      for (;;) {
        const ssize_t n = c.ssl ? ::recv(c.fd, buf, sizeof buf, 0) : read_some(c, buf, sizeof buf);
        if (n == 0) return close_connection(id);
        if (n < 0) {
          if (c.ssl && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return close_connection(id);
          break;
        }
      }
      c.want_write = false;
      watch(c);
    }
  }

  void respond(Connection& c, int status, std::string_view content_type, std::string_view text,
               std::string_view extra_headers = {}) {
    respond_shared(c, status, content_type, std::make_shared<const std::string>(text),
                   extra_headers);
  }

  void respond_shared(Connection& c, int status, std::string_view content_type,
                      std::shared_ptr<const std::string> body, std::string_view extra_headers,
                      bool head_only = false) {
    const size_t length = body ? body->size() : 0;
    c.head = "HTTP/1.1 " + std::to_string(status) + " ";
    c.head.append(status_text(status)).append("\r\nContent-Type: ").append(content_type);
    c.head.append("\r\nContent-Length: ").append(std::to_string(length)).append("\r\n");
    c.head.append(extra_headers).append("Connection: close\r\n\r\n");
    c.body = head_only ? nullptr : std::move(body);
    c.written = 0;
    c.phase = Phase::writing;
    c.deadline = Clock::now() + options_.response_timeout;
  }

  bool authorized(const Request& r) const {
    if (options_.basic_auth_user.empty()) return true;
    if (!r.authorization.starts_with("Basic ")) return false;
    const std::string decoded = base64_decode(trim(r.authorization.substr(6)));
    const auto colon = decoded.find(':');
    if (colon == std::string::npos) return false;
    const bool user_ok =
        equal_secret(std::string_view(decoded).substr(0, colon), options_.basic_auth_user);
    const bool pass_ok =
        equal_secret(std::string_view(decoded).substr(colon + 1), options_.basic_auth_password);
    return user_ok && pass_ok;
  }

  void handle(Connection& c, std::string_view head) {
    Request r;
    if (!parse_request(head, r)) return respond(c, 400, "text/plain", "bad request\n");
    const ConsoleAsset* asset = find_console_asset(r.path);
    const bool api = r.path.starts_with("/api/");
    const bool known = r.path == "/metrics" || r.path == "/livez" || r.path == "/readyz" ||
                       asset != nullptr || api;
    if (!known) return respond(c, 404, "text/plain", "not found\n");
    const bool head_only = r.method == "HEAD";
    if (r.method != "GET" && !head_only) {
      return respond(c, 405, "text/plain", "method not allowed\n", "Allow: GET, HEAD\r\n");
    }
    if (r.path == "/livez") {
      return respond_shared(c, 200, "text/plain", std::make_shared<const std::string>("ok\n"), {},
                            head_only);
    }
    if (r.path == "/readyz") {
      const Readiness::Verdict verdict = server_.readiness_.evaluate(Clock::now());
      return respond_shared(c, verdict.ready ? 200 : 503, "application/json",
                            std::make_shared<const std::string>(Readiness::to_json(verdict)), {},
                            head_only);
    }
    if (!authorized(r)) {
      if (api) {
        const ApiResponse e = QueryApi::error(401, "unauthorized", "credentials required");
        return respond(c, 401, e.content_type, e.body,
                       "WWW-Authenticate: Basic realm=\"socialpulse\"\r\n");
      }
      return respond(c, 401, "text/plain", "unauthorized\n",
                     "WWW-Authenticate: Basic realm=\"socialpulse\"\r\n");
    }
    if (asset != nullptr) {
      return respond_shared(c, 200, asset->content_type,
                            std::make_shared<const std::string>(asset->body),
                            "Cache-Control: no-cache\r\n", head_only);
    }
    if (api) return handle_api(c, r, head_only);
    const bool openmetrics = wants_openmetrics(r.accept);
    server_.note_scrape();
    uint64_t checkpoint = 0;
    auto body = server_.render(openmetrics, &checkpoint);
    if (!body) body = std::make_shared<const std::string>(openmetrics ? "# EOF\n" : "");
    respond_shared(c, 200,
                   openmetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                               : "text/plain; version=0.0.4; charset=utf-8",
                   std::move(body), checkpoint_header(checkpoint), head_only);
  }

  static std::string checkpoint_header(uint64_t checkpoint) {
    return checkpoint == 0 ? std::string()
                           : "X-Socialpulse-Checkpoint: " + std::to_string(checkpoint) + "\r\n";
  }

  void handle_api(Connection& c, const Request& r, bool head_only) {
    const QueryApi& api = server_.query_;
    if (server_.readiness_.restoring()) {
      const ApiResponse e = QueryApi::error(503, "restoring", "state is being restored");
      return respond(c, e.status, e.content_type, e.body, e.extra_headers);
    }
    if (r.path == "/api/v1/stream") {
      c.head =
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
          "X-Accel-Buffering: no\r\nConnection: close\r\n\r\n";
      c.body = nullptr;
      c.written = 0;
      if (head_only) {
        c.phase = Phase::writing;
        c.deadline = Clock::now() + options_.response_timeout;
        return;
      }
      c.head += api.stream_start(r.last_event_id);
      c.phase = Phase::streaming;
      c.deadline = Clock::now() + options_.stream_heartbeat;
      c.in.clear();
      return;
    }
    const auto response = api.handle(r.path, r.query);
    const ApiResponse& a = *response;  // every /api/ path has an answer (404 included)
    std::string headers = a.extra_headers + "Cache-Control: no-cache\r\n";
    if (a.status == 200) {
      // The checkpoint in the body, where a client that compares with /metrics looks.
      const auto at = a.body.find("\"checkpoint\":");
      if (at != std::string::npos)
        headers += "X-Socialpulse-Checkpoint: " +
                   a.body.substr(at + 13, a.body.find_first_of(",}", at) - at - 13) + "\r\n";
    }
    respond_shared(c, a.status, a.content_type, std::make_shared<const std::string>(a.body),
                   headers, head_only);
  }

  // Appends `bytes` to a stream and sends what the socket takes.
  void push(Connection& c, std::string_view bytes) {
    if (c.head.size() - c.written + bytes.size() > kStreamBacklog) return close_connection(c.id);
    c.head.append(bytes);
    c.deadline = Clock::now() + options_.stream_heartbeat;
    advance(c);
  }

  // The pipeline published a checkpoint: the query API digests it, every stream gets its event.
  void digest_checkpoint() {
    uint64_t count = 0;
    [[maybe_unused]] const auto n = ::read(wake_fd_, &count, sizeof count);
    auto [snapshot, checkpoint, alerts] = server_.take_undigested();
    if (!snapshot) return;
    const auto now_ms =
        std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    const auto event = server_.query_.on_checkpoint(*snapshot, checkpoint, alerts, now_ms);
    std::vector<uint64_t> streams;
    for (const auto& [id, conn] : connections_) {
      if (conn.phase == Phase::streaming) streams.push_back(id);
    }
    for (uint64_t id : streams) {
      if (auto it = connections_.find(id); it != connections_.end()) push(it->second, *event);
    }
  }

  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
  }

  HttpServer& server_;
  const HttpServerOptions& options_;
  int listen_fd_;
  std::unique_ptr<SSL_CTX, SslCtxDeleter> tls_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  uint64_t next_id_ = 2;  // 0 and 1 tag the listener and the wake-up
  std::map<uint64_t, Connection> connections_;
  std::unordered_map<std::string, size_t> per_client_;
};

HttpServer::HttpServer(HttpServerOptions options)
    : options_(std::move(options)), readiness_(options_.ready_timeout) {
  query_.set_configured_brands(options_.brands);
  if (!options_.series_file.empty()) query_.set_series_file(options_.series_file);
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options) {
  std::unique_ptr<HttpServer> server(new HttpServer(std::move(options)));
  std::unique_ptr<SSL_CTX, SslCtxDeleter> tls;
  if (!server->options_.tls_cert_file.empty()) {
    auto ctx = make_tls_context(server->options_);
    if (!ctx) return tl::unexpected(ctx.error());
    tls = std::move(*ctx);
  }
  const std::string& listen = server->options_.listen;
  auto fd = listen_on(listen);
  if (!fd) {
    return make_error(ErrorKind::fatal,
                      "cannot listen on " + listen + " for /metrics: " + fd.error().message);
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(*fd, reinterpret_cast<sockaddr*>(&bound), &len);
  server->port_ =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6&>(bound).sin6_port
                                        : reinterpret_cast<const sockaddr_in&>(bound).sin_port);
  server->loop_ = std::make_unique<Loop>(*server, *fd, std::move(tls));
  if (!server->loop_->ok()) {
    return make_error(ErrorKind::fatal, std::string("http: ") + std::strerror(errno));
  }
  server->thread_ = std::thread([loop = server->loop_.get()] {
    mark_interactive_thread();  // whatever its creator's policy (thread_policy.h)
    name_thread("sp-http");
    // OpenSSL writes with write(): a client gone mid-response must be EPIPE, not a SIGPIPE that
    // kills a process which did not ignore it (plain sockets use MSG_NOSIGNAL).
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    loop->run();
  });
  return server;
}

HttpServer::~HttpServer() {
  if (loop_) loop_->stop();
  if (thread_.joinable()) thread_.join();
}

bool HttpServer::tls() const { return loop_ && loop_->tls(); }

void HttpServer::publish(std::shared_ptr<const MetricsSnapshot> snapshot,
                         std::vector<std::string> alerts) {
  {
    std::lock_guard lock(mu_);
    snapshot_ = snapshot;
    ++checkpoint_;
    published_.fetch_add(1);
    undigested_ = std::move(snapshot);
    undigested_checkpoint_ = checkpoint_;
    for (auto& a : alerts) undigested_alerts_.push_back(std::move(a));
  }
  if (loop_) loop_->wake();
}

// Before render(): the snapshot rendered is this one or a newer one.
void HttpServer::note_scrape() {
  uint64_t seen = published_.load();
  uint64_t served = served_.load();
  while (served < seen && !served_.compare_exchange_weak(served, seen)) {
  }
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(scrape_mu_);
  if (rhythm_.scrapes > 0) rhythm_.interval = now - rhythm_.last;
  rhythm_.last = now;
  ++rhythm_.scrapes;
}

bool HttpServer::latest_served() const { return served_.load() >= published_.load(); }

HttpServer::ScrapeRhythm HttpServer::scrape_rhythm() const {
  std::lock_guard lock(scrape_mu_);
  return rhythm_;
}

HttpServer::Undigested HttpServer::take_undigested() {
  std::lock_guard lock(mu_);
  Undigested out{std::move(undigested_), undigested_checkpoint_, std::move(undigested_alerts_)};
  undigested_ = nullptr;
  undigested_alerts_.clear();
  return out;
}

std::shared_ptr<const std::string> HttpServer::render(bool openmetrics,
                                                      uint64_t* checkpoint) const {
  const size_t f = openmetrics ? 1 : 0;
  auto current = [this, f, checkpoint] {
    std::lock_guard lock(mu_);
    if (checkpoint != nullptr) *checkpoint = checkpoint_;
    return std::pair{snapshot_, rendered_snapshot_[f] == snapshot_ ? rendered_[f] : nullptr};
  };
  if (auto [snapshot, text] = current(); !snapshot || text) return text;
  std::lock_guard render_lock(render_mu_);
  auto [snapshot, text] = current();  // another scrape may have rendered it meanwhile
  if (!snapshot || text) return text;
  std::string out;
  out.reserve(rendered_[f] ? rendered_[f]->size() + rendered_[f]->size() / 8 : 1 << 16);
  if (openmetrics) {
    write_openmetrics_text(*snapshot, out);
  } else {
    write_metrics_text(*snapshot, out);
  }
  auto rendered = std::make_shared<const std::string>(std::move(out));
  std::lock_guard lock(mu_);
  rendered_snapshot_[f] = snapshot;
  rendered_[f] = rendered;
  return rendered;
}

}  // namespace sp
