// Golden-file tests: tests/data/windows/<case>/{config.txt,input.txt,expected.jsonl[,
// expected_metrics.txt]}. Run with SOCIALPULSE_UPDATE_GOLDEN=1 to rewrite the expected files
// (then review the diff: a regenerated golden file proves nothing by itself).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/operators/topology_driver.h"

namespace sp::testing {
namespace {

const std::filesystem::path kDataDir = SOCIALPULSE_WINDOWS_TEST_DATA_DIR;

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    lines.push_back(line);
  }
  return lines;
}

std::vector<std::string> split(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// `key=value` words after the first.
std::map<std::string, std::string> options(const std::vector<std::string>& words) {
  std::map<std::string, std::string> out;
  for (size_t i = 1; i < words.size(); ++i) {
    const auto eq = words[i].find('=');
    out[words[i].substr(0, eq)] = eq == std::string::npos ? "" : words[i].substr(eq + 1);
  }
  return out;
}

Millis duration(const std::map<std::string, std::string>& o, const std::string& key) {
  auto it = o.find(key);
  if (it == o.end()) return Millis{0};
  auto d = parse_duration(it->second);
  EXPECT_TRUE(d.has_value()) << key << "=" << it->second;
  return d.value_or(Millis{0});
}

struct CaseConfig {
  std::vector<WindowSpec> windows;
  WatermarkSettings watermark;
  std::vector<BrandInfo> brands;
  std::vector<std::string> channels;
  WallTime wall_start{};
  std::vector<PartitionId> partitions;
};

CaseConfig read_config(const std::filesystem::path& path) {
  CaseConfig c;
  for (const std::string& line : read_lines(path)) {
    const auto words = split(line);
    const auto o = options(words);
    if (words[0] == "window") {
      WindowSpec w;
      w.name = o.at("name");
      const std::string kind = o.at("kind");
      w.kind = kind == "tumbling"  ? WindowKind::tumbling
               : kind == "hopping" ? WindowKind::hopping
                                   : WindowKind::session;
      w.size = duration(o, "size");
      w.advance = w.kind == WindowKind::tumbling ? w.size : duration(o, "advance");
      w.gap = duration(o, "gap");
      w.grace = duration(o, "grace");
      w.emit = o.contains("emit") && o.at("emit") == "update" ? EmitMode::update : EmitMode::final;
      c.windows.push_back(w);
    } else if (words[0] == "watermark") {
      c.watermark.max_out_of_orderness = duration(o, "max_out_of_orderness");
      c.watermark.idle_timeout = duration(o, "idle_timeout");
    } else if (words[0] == "brands") {
      for (size_t i = 1; i < words.size(); ++i) c.brands.push_back({words[i], i == 1});
    } else if (words[0] == "channels") {
      c.channels.assign(words.begin() + 1, words.end());
    } else if (words[0] == "wall") {
      c.wall_start = WallTime{parse_time(words.at(1)).value().time_since_epoch()};
    } else if (words[0] == "partitions") {
      for (size_t i = 1; i < words.size(); ++i) c.partitions.push_back({std::stoi(words[i])});
    } else {
      ADD_FAILURE() << "unknown config line: " << line;
    }
  }
  return c;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class WindowsGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(WindowsGolden, RecordsMatchExpected) {
  const auto dir = kDataDir / GetParam();
  ASSERT_TRUE(std::filesystem::exists(dir / "input.txt")) << dir;
  const CaseConfig config = read_config(dir / "config.txt");
  const Vocabulary vocabulary(config.brands, config.channels);
  TopologyDriver driver(config.windows, vocabulary, config.watermark, config.wall_start);
  for (PartitionId p : config.partitions) driver.assign(p);

  for (const std::string& line : read_lines(dir / "input.txt")) {
    const auto words = split(line);
    const auto o = options(words);
    if (words[0] == "advance") {
      driver.advance_wall_clock(parse_duration(words.at(1)).value());
    } else if (words[0] == "lag") {
      driver.set_lag({std::stoi(o.at("p"))}, o.contains("on"));
    } else if (words[0] == "checkpoint") {
      driver.checkpoint();
    } else if (words[0] == "snapshot") {
      ASSERT_TRUE(driver.snapshot_and_restore());
    } else if (words[0] == "expect") {
      // Timing assertions: how many records exist at this point of the script.
      ASSERT_EQ(driver.records().size(), std::stoul(o.at("records"))) << "at: " << line;
    } else {
      auto event = parse_event_line(line, vocabulary);
      ASSERT_TRUE(event.has_value()) << event.error().message;
      driver.pipe(*event);
    }
  }

  std::string actual;
  for (const OutputRecord& r : driver.records()) {
    actual += "{\"key\":\"" + r.key + "\",\"value\":" + r.value + "}\n";
  }
  const std::string metrics = driver.metrics_text();
  if (std::getenv("SOCIALPULSE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(dir / "expected.jsonl") << actual;
    std::ofstream(dir / "expected_metrics.txt") << metrics;
    GTEST_SKIP() << "golden files rewritten";
  }
  EXPECT_EQ(actual, read_file(dir / "expected.jsonl"));
  if (std::filesystem::exists(dir / "expected_metrics.txt")) {
    EXPECT_EQ(metrics, read_file(dir / "expected_metrics.txt"));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, WindowsGolden,
                         ::testing::Values("out_of_order", "late_within_grace", "too_late",
                                           "idle_partition", "all_idle", "session_merge",
                                           "hopping_overlap", "emit_update", "two_partitions"));

}  // namespace
}  // namespace sp::testing
