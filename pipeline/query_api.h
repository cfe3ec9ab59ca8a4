#pragma once
// The query API of SPEC 10 over published checkpoints: /api/v1/kpis, /api/v1/series,
// /api/v1/alerts and the Server-Sent Events of /api/v1/stream. Every published /metrics snapshot
// becomes one checkpoint here (kpi_snapshot.h), so the API answers with the values /metrics shows
// at the same checkpoint. Per checkpoint it renders the KPI bodies and the stream event once;
// a query then concatenates prepared strings (microseconds, under one uncontended mutex).
//
// Series: a bounded ring per brand (24 h of closed minutes). A minute is closed when the
// pipeline watermark leaves it; its point holds the gauges of the last checkpoint inside that
// minute and the counters' increase since the previous point. The ring lives in memory and, with
// set_series_file(), is written beside the state at every closed minute (tmp + rename) and read
// back at start, so a restarted process serves the series and windows it had.
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/kpi_snapshot.h"

namespace sp {

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string extra_headers;  // "Name: value\r\n" lines
};

// One spike record of the alerts topic (SPEC 5), as the API serves it.
struct AlertEntry {
  uint64_t checkpoint = 0;  // published with this checkpoint
  std::string brand;
  int64_t bucket_start_ms = 0;
  bool started = false;  // episode started (else ended)
  std::string json;      // the record as the alerts topic carries it
};

// Contract: any thread may call any method.
class QueryApi {
 public:
  static constexpr int64_t kSeriesMinutes = 24 * 60;
  static constexpr size_t kAlertCap = 500;
  static constexpr size_t kEventCap = 600;  // stream events kept for Last-Event-ID

  // A new checkpoint: its /metrics snapshot, its number (increasing; the /metrics publish
  // sequence), the alert records committed since the previous one (JSON values) and the wall
  // clock. Returns the stream event of this checkpoint (what every open stream gets).
  std::shared_ptr<const std::string> on_checkpoint(const MetricsSnapshot& metrics,
                                                   uint64_t checkpoint,
                                                   const std::vector<std::string>& alerts,
                                                   int64_t now_ms);

  // GET `path`?`query` for /api/v1/kpis, /series, /alerts; nullopt: not an API path.
  std::optional<ApiResponse> handle(std::string_view path, std::string_view query) const;

  // What a new stream starts with: after `last_event_id`, the events it missed when they are
  // still kept, else one full event of the current checkpoint; nothing before the first one.
  // Event ids are "<run>-<checkpoint>": an id of another process (checkpoints restart at 1)
  // gets the full state, not the diffs of unrelated checkpoints.
  std::string stream_start(std::string_view last_event_id) const;
  uint64_t run() const { return run_; }

  std::shared_ptr<const KpiSnapshot> latest() const;
  // Alerts published with a checkpoint after `checkpoint`, oldest first.
  std::vector<AlertEntry> alerts_after(uint64_t checkpoint) const;
  // Closed minutes of `kpi` for `brand`, oldest first: (minute start ms, value or NaN).
  std::vector<std::pair<int64_t, double>> series(std::string_view brand, std::string_view kpi,
                                                 int64_t minutes) const;

  // Loads the series saved at `path` (when there) and saves there from now on. Call before the
  // first checkpoint; false: an unreadable or foreign file (ignored, overwritten later).
  bool set_series_file(std::string path);

  // The configured brands: known (never 400) even before their first event.
  void set_configured_brands(std::vector<std::string> brands);

  static const std::vector<std::string_view>& kpi_names();
  static ApiResponse error(int status, std::string_view code, std::string_view message);

 private:
  static constexpr size_t kValues = 11;  // kpi_names().size()
  struct Point {
    int64_t minute = 0;
    std::array<double, kValues> values{};  // gauges, and cumulative counters
  };
  struct Ring {
    std::deque<Point> points;
  };
  static Point point_of(const BrandKpis& b, int64_t minute);
  // The last `minutes` minutes up to the watermark: the counters at their start (the ring's
  // point before them, else the first checkpoint) and how many minutes that covers.
  struct Window {
    Point base;
    int64_t minutes = 0;
  };
  Window window(const BrandKpis& b, int64_t minutes) const;
  // Counter increase over that window (last_1h, last_24h in docs/http.md).
  std::string window_json(const BrandKpis& b, int64_t minutes) const;
  std::vector<std::pair<std::string, std::string>> brand_fields(const BrandKpis& b) const;
  std::string header_json(const KpiSnapshot& s) const;
  std::vector<std::pair<int64_t, double>> series_unlocked(std::string_view brand, size_t kpi,
                                                          int64_t minutes) const;

  bool known_brand(std::string_view brand) const;
  void save_series() const;

  // This process's start (wall clock ms): the first part of every event id.
  const uint64_t run_ =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  mutable std::mutex mu_;
  std::vector<std::string> configured_brands_;
  std::string series_file_;
  std::shared_ptr<const KpiSnapshot> latest_;
  std::shared_ptr<const KpiSnapshot> previous_;
  std::optional<int64_t> start_minute_;              // watermark minute of the first checkpoint
  std::map<std::string, Point, std::less<>> start_;  // cumulative counters at the first checkpoint
  std::map<std::string, Ring, std::less<>> rings_;
  std::deque<AlertEntry> alerts_;
  std::string header_;                                          // checkpoint, time, pipeline
  std::map<std::string, std::string, std::less<>> brand_json_;  // "{...}" per brand
  std::map<std::string, std::vector<std::pair<std::string, std::string>>, std::less<>> fields_;
  std::deque<std::pair<uint64_t, std::shared_ptr<const std::string>>> events_;
  std::string full_event_;
  double events_per_second_ = 0;
  double dlq_per_second_ = 0;
};

}  // namespace sp
