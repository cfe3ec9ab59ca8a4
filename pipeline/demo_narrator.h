#pragma once
// The demo's terminal story: every `interval` one compact line per brand (reputation index,
// share of voice, interactions (the events' `count`s) in the last closed event-time minute), and a
// highlighted line as soon as an alert episode starts or ends, read from the query API (the
// values the console shows).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "pipeline/query_api.h"

namespace sp {

// Contract: prints from its own thread between construction and destruction.
class DemoNarrator {
 public:
  DemoNarrator(const QueryApi& api, std::FILE* out,
               std::chrono::milliseconds interval = std::chrono::seconds(10));
  ~DemoNarrator();
  DemoNarrator(const DemoNarrator&) = delete;
  DemoNarrator& operator=(const DemoNarrator&) = delete;

  // The lines of one tick (tests call these directly).
  static std::string brand_lines(const QueryApi& api);
  static std::string alert_line(const AlertEntry& alert, bool color);

 private:
  void run();

  const QueryApi& api_;
  std::FILE* out_;
  const std::chrono::milliseconds interval_;
  const bool color_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace sp
