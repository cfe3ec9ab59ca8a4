#pragma once
// roi.currency and roi.daily_spend as exported by socialpulse_daily_spend (SPEC 2 social ROI).
// Spend is the one configuration a running instance reloads (SIGHUP, pipeline/service.cc): the
// table is replaced from that thread and read by the runner's collect().
#include <mutex>
#include <string>
#include <vector>

namespace sp {

// One `roi.daily_spend` entry, exported as socialpulse_daily_spend{brand,channel}.
struct SpendEntry {
  std::string brand;
  std::string channel;
  double spend = 0.0;
  bool operator==(const SpendEntry&) const = default;
};

struct SpendValues {
  std::string currency = "EUR";  // ISO 4217 code (config-validated), in the HELP text
  std::vector<SpendEntry> entries;
  bool operator==(const SpendValues&) const = default;
};

// Contract: thread-safe; replace() publishes a whole new set, get() returns a consistent copy.
class SpendTable {
 public:
  explicit SpendTable(SpendValues values) : values_(std::move(values)) {}
  SpendTable(const SpendTable&) = delete;
  SpendTable& operator=(const SpendTable&) = delete;

  void replace(SpendValues values);
  SpendValues get() const;

 private:
  mutable std::mutex mutex_;
  SpendValues values_;
};

}  // namespace sp
