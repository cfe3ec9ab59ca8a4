#include "pipeline/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <utility>

#include "operators/deduplicator.h"
#include "operators/topology.h"
#include "pipeline/changelog.h"

namespace sp {

Result<Millis> parse_duration(std::string_view text) {
  if (text.empty()) return make_error(ErrorKind::invalid_input, "empty duration");
  int64_t total = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    int64_t n = 0;
    auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
    if (ec != std::errc() || ptr == rest.data() || n < 0) {
      return make_error(ErrorKind::invalid_input, "invalid duration '" + std::string(text) +
                                                      "' (expected e.g. 500ms, 10s, 1m, 24h)");
    }
    rest.remove_prefix(static_cast<size_t>(ptr - rest.data()));
    int64_t unit = 0;
    if (rest.starts_with("ms")) {
      unit = 1, rest.remove_prefix(2);
    } else if (rest.starts_with("s")) {
      unit = 1000, rest.remove_prefix(1);
    } else if (rest.starts_with("m")) {
      unit = 60'000, rest.remove_prefix(1);
    } else if (rest.starts_with("h")) {
      unit = 3'600'000, rest.remove_prefix(1);
    } else if (rest.starts_with("d")) {
      unit = 86'400'000, rest.remove_prefix(1);
    } else {
      return make_error(ErrorKind::invalid_input, "invalid duration '" + std::string(text) +
                                                      "' (unit must be ms, s, m, h or d)");
    }
    // Signed overflow would be UB and could turn a typo into a tiny or negative interval.
    if (n > (std::numeric_limits<int64_t>::max() - total) / unit) {
      return make_error(ErrorKind::invalid_input,
                        "duration '" + std::string(text) + "' is too large");
    }
    total += n * unit;
  }
  return Millis{total};
}

namespace {

// ---------------------------------------------------------------------------------------------
// Schema: the one list of known keys. It rejects unknown keys in the file and unknown `--set`
// paths before any value is converted, so a typo never silently falls back to a default.

struct KeySchema {
  enum class Shape { value, section, section_list, free_map };
  std::string_view name;
  Shape shape = Shape::value;
  std::vector<KeySchema> children;  // section: its keys; section_list: the keys of each item
  int free_map_depth = 0;           // free_map: levels of user-chosen keys (brand -> channel = 2)
};

KeySchema value(std::string_view name) { return {name, KeySchema::Shape::value, {}, 0}; }
KeySchema section(std::string_view name, std::vector<KeySchema> keys) {
  return {name, KeySchema::Shape::section, std::move(keys), 0};
}
KeySchema section_list(std::string_view name, std::vector<KeySchema> item_keys) {
  return {name, KeySchema::Shape::section_list, std::move(item_keys), 0};
}
KeySchema free_map(std::string_view name, int depth) {
  return {name, KeySchema::Shape::free_map, {}, depth};
}

const KeySchema& config_schema() {
  static const KeySchema schema = section(
      "",
      {section("kafka", {value("bootstrap_servers"), value("group_id"), value("topics"),
                         value("output_topic"), value("alerts_topic"), value("dlq_topic"),
                         value("state_topic"), value("changelog_max_record_bytes"),
                         value("group_instance_id"), free_map("properties", 1),
                         value("embedded_partitions"), value("ready_timeout")}),
       section("state", {value("path"), value("checkpoint_interval"), value("sync")}),
       section("metrics",
               {value("listen"), value("max_series"),
                section("basic_auth", {value("username"), value("password_env")}),
                section("tls", {value("cert_file"), value("key_file"), value("client_ca_file")}),
                value("request_timeout"), value("response_timeout"), value("max_connections"),
                value("max_connections_per_client"), value("max_request_bytes")}),
       section("brands",
               {section_list("tracked", {value("name"), value("own")}), value("unknown")}),
       value("channels"),
       section_list("windows", {value("name"), value("kind"), value("size"), value("advance"),
                                value("gap"), value("grace"), value("emit")}),
       section("watermark",
               {value("max_out_of_orderness"), value("idle_timeout"), value("max_future")}),
       section("dedup", {value("horizon")}),
       section("kpi",
               {value("reputation_horizon"), value("engagement_types"), value("grace"),
                section("spike",
                        {value("alpha"), value("z_threshold"), value("min_events"), value("warmup"),
                         value("stddev_floor"), value("drop_threshold"), value("drop_stddev_floor"),
                         value("persistence"), value("cooldown"), value("seasonal")})}),
       section("alerts", {value("max_lag")}),
       section("emv", {value("cpm"), free_map("action_value", 1)}),
       section("roi", {value("currency"), free_map("daily_spend", 2)}),
       section("limits", {value("max_message_bytes"), value("max_state_bytes"),
                          value("max_pending_records")}),
       section("log", {value("level"), value("format")}), value("shutdown_timeout")});
  return schema;
}

const KeySchema* find_key(const std::vector<KeySchema>& keys, std::string_view name) {
  for (const KeySchema& k : keys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

// Optimal string alignment distance: like Levenshtein but a swap of two neighbours costs 1,
// the most common typo in hand-written keys ("kafak").
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// " (did you mean 'x'?)" when a candidate is close enough, otherwise the full list of choices.
std::string suggestion(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::string_view best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (std::string_view c : candidates) {
    const size_t dist = edit_distance(word, c);
    if (dist < best_distance) best = c, best_distance = dist;
  }
  if (!best.empty() && best_distance <= std::max<size_t>(2, word.size() / 3)) {
    return " (did you mean '" + std::string(best) + "'?)";
  }
  std::string list;
  for (std::string_view c : candidates) list += (list.empty() ? "" : ", ") + std::string(c);
  return " (expected one of: " + list + ")";
}

std::string unknown_key_message(std::string_view key, const std::vector<KeySchema>& keys,
                                const std::string& where) {
  std::vector<std::string_view> names;
  for (const KeySchema& k : keys) names.push_back(k.name);
  return "unknown key '" + std::string(key) + "'" + (where.empty() ? "" : " in " + where) +
         suggestion(key, names);
}

std::string join_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

// ---------------------------------------------------------------------------------------------
// Environment expansion, applied to each scalar when it is read (not to the raw text), so that
// marks still point into the file and a value can never inject YAML structure.

bool is_var_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_var_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; `$$` is a literal `$`.
// The colon forms treat an empty variable like an unset one, as POSIX shells do.
Result<std::string> expand_env(std::string_view in, int depth = 0) {
  if (depth > 8) return make_error(ErrorKind::invalid_input, "variable defaults nested too deeply");
  std::string out;
  size_t i = 0;
  while (i < in.size()) {
    if (in[i] != '$') {
      out += in[i++];
      continue;
    }
    if (i + 1 < in.size() && in[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (i + 1 >= in.size() || in[i + 1] != '{') {
      out += in[i++];
      continue;
    }
    // Find the matching brace so that defaults may hold references of their own.
    size_t open = 1;
    size_t j = i + 2;
    for (; j < in.size() && open > 0; ++j) {
      if (in[j] == '$' && j + 1 < in.size() && (in[j + 1] == '{' || in[j + 1] == '$')) {
        if (in[j + 1] == '{') ++open;
        ++j;
      } else if (in[j] == '}') {
        --open;
      }
    }
    if (open > 0) {
      return make_error(ErrorKind::invalid_input, "unterminated '${' in '" + std::string(in) + "'");
    }
    const std::string_view body = in.substr(i + 2, j - 1 - (i + 2));
    size_t name_len = 0;
    if (!body.empty() && is_var_start(body[0])) {
      name_len = 1;
      while (name_len < body.size() && is_var_char(body[name_len])) ++name_len;
    }
    const std::string name(body.substr(0, name_len));
    std::string_view op = body.substr(name_len);
    const bool colon = op.starts_with(':');
    if (colon) op.remove_prefix(1);
    if (name.empty() || (!op.empty() && op[0] != '-' && op[0] != '?') || (colon && op.empty())) {
      return make_error(ErrorKind::invalid_input,
                        "invalid variable reference '${" + std::string(body) +
                            "}' (expected ${VAR}, ${VAR:-default} or ${VAR:?message})");
    }
    const char* raw = std::getenv(name.c_str());
    const bool missing = raw == nullptr || (colon && *raw == '\0');
    if (op.empty()) {
      if (raw == nullptr) {
        return make_error(ErrorKind::invalid_input, "environment variable " + name +
                                                        " is not set (use ${" + name +
                                                        ":-default} to give a default)");
      }
      out += raw;
    } else if (!missing) {
      out += raw;
    } else if (op[0] == '-') {
      auto fallback = expand_env(op.substr(1), depth + 1);
      if (!fallback) return fallback;
      out += *fallback;
    } else {
      const std::string_view message = op.substr(1);
      return make_error(ErrorKind::invalid_input,
                        "environment variable " + name + " is " +
                            (colon ? "unset or empty" : "unset") +
                            (message.empty() ? "" : ": " + std::string(message)));
    }
    i = j;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scalar parsing helpers.

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> parse_double(std::string_view s) {
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

std::optional<bool> parse_bool(std::string_view s) {
  std::string lower(s);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "true" || lower == "yes" || lower == "on") return true;
  if (lower == "false" || lower == "no" || lower == "off") return false;
  return std::nullopt;
}

std::string format_duration(Millis d) {
  const int64_t ms = d.count();
  for (auto [unit, suffix] : {std::pair<int64_t, const char*>{86'400'000, "d"},
                              {3'600'000, "h"},
                              {60'000, "m"},
                              {1000, "s"}}) {
    if (ms != 0 && ms % unit == 0) return std::to_string(ms / unit) + suffix;
  }
  return std::to_string(ms) + "ms";
}

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Brand and channel names become Prometheus label values and output-record keys.
bool is_label_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [&](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
}
constexpr std::string_view kLabelPattern = "^[a-z0-9][a-z0-9_.-]{0,63}$";

// Kafka's rule for topic names and group instance ids; the broker would refuse anything else,
// later and with a less helpful message.
bool is_kafka_name(std::string_view s) {
  if (s.empty() || s.size() > 249 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}
constexpr std::string_view kKafkaNameRule = "1 to 249 of a-z A-Z 0-9 . _ -";

bool present(const YAML::Node& n) { return n.IsDefined() && !n.IsNull(); }

std::string kind_of(const YAML::Node& n) {
  if (!present(n)) return "nothing";
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a list";
  return "'" + n.Scalar() + "'";
}

// The value of `key` in a map, or a null node (which every reader treats as "keep the default").
YAML::Node child(const YAML::Node& map, std::string_view key) {
  if (!present(map) || !map.IsMap()) return YAML::Node();
  for (const auto& kv : map) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) return kv.second;
  }
  return YAML::Node();
}

std::vector<std::string_view> event_type_names() {
  std::vector<std::string_view> names;
  for (size_t i = 0; i < kEventTypeCount; ++i)
    names.push_back(to_string(static_cast<EventType>(i)));
  return names;
}

// ---------------------------------------------------------------------------------------------

// Converts one YAML tree into a Config. It keeps only the first error (with its location) and
// never throws, so `socialpulse validate` reports the problem a user would hit first.
class ConfigParser {
 public:
  ConfigParser(std::string_view file_name, size_t file_size, const std::vector<std::string>& sets)
      : file_name_(file_name) {
    // Each override value is parsed at its own private offset past the end of the file, so a
    // node's mark alone tells whether it came from the file or from which `--set`.
    int64_t begin = static_cast<int64_t>(file_size) + 1;
    for (const std::string& s : sets) {
      overrides_.push_back({s, begin, begin + static_cast<int64_t>(s.size()) + 1});
      begin += static_cast<int64_t>(s.size()) + 1;
    }
  }

  Result<Config> run(std::string_view yaml_text) {
    try {
      return run_unguarded(yaml_text);
    } catch (const YAML::Exception& e) {
      // The readers never subscript unchecked; this only guards against yaml-cpp surprises.
      return make_error(ErrorKind::invalid_input, locate(e.mark) + ": " + e.msg);
    }
  }

 private:
  struct OverrideSource {
    std::string text;
    int64_t begin = 0;  // [begin, end) of mark positions of nodes parsed from this override
    int64_t end = 0;
  };

  Result<Config> run_unguarded(std::string_view yaml_text) {
    std::vector<YAML::Node> documents;
    try {
      documents = YAML::LoadAll(std::string(yaml_text));
    } catch (const YAML::ParserException& e) {
      return make_error(ErrorKind::invalid_input, locate(e.mark) + ": " + e.msg);
    }
    if (documents.size() > 1) {
      fail(documents[1], "expected one YAML document, found " + std::to_string(documents.size()));
      return finish();
    }
    YAML::Node root = documents.empty() ? YAML::Node() : documents[0];
    if (present(root) && !root.IsMap()) {
      fail(root, "expected a map of settings at the top level, got " + kind_of(root));
      return finish();
    }
    // A fresh map gives overrides a shared node to write into (a default Node has none).
    if (!present(root)) root.reset(YAML::Node(YAML::NodeType::Map));
    for (size_t i = 0; i < overrides_.size() && ok(); ++i) apply_override(root, overrides_[i]);
    if (!ok()) return finish();
    check_section(root, config_schema().children, "");
    if (!ok()) return finish();
    convert(root);
    return finish();
  }

  Result<Config> finish() {
    if (error_) return make_error(ErrorKind::invalid_input, *error_);
    return std::move(config_);
  }

  bool ok() const { return !error_.has_value(); }

  std::string locate(const YAML::Mark& m) const {
    for (const OverrideSource& o : overrides_) {
      if (m.pos >= o.begin && m.pos < o.end) return "--set " + o.text;
    }
    if (m.is_null()) return std::string(file_name_);
    return std::string(file_name_) + ":" + std::to_string(m.line + 1) + ":" +
           std::to_string(m.column + 1);
  }

  void fail(const YAML::Node& at, const std::string& message) {
    if (error_) return;
    const YAML::Mark mark = at.IsDefined() ? at.Mark() : YAML::Mark::null_mark();
    error_ = locate(mark) + ": " + message;
  }

  // ---- overrides ------------------------------------------------------------------------------

  void apply_override(YAML::Node root, const OverrideSource& source) {
    auto fail_set = [&](const std::string& message) {
      if (!error_) error_ = "--set " + source.text + ": " + message;
    };
    const size_t eq = source.text.find('=');
    if (eq == std::string::npos) return fail_set("expected key.path=value");
    const std::string key_path = source.text.substr(0, eq);
    std::vector<std::string> path;
    for (size_t start = 0;;) {
      const size_t dot = key_path.find('.', start);
      path.push_back(key_path.substr(start, dot - start));
      if (path.back().empty()) return fail_set("empty key in path '" + key_path + "'");
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    YAML::Node value;
    try {
      value.reset(YAML::Load(std::string(static_cast<size_t>(source.begin), ' ') +
                             source.text.substr(eq + 1)));
    } catch (const YAML::ParserException& e) {
      return fail_set("invalid value: " + e.msg);
    }
    try {
      if (auto problem = set_in_section(root, config_schema().children, path, "", value)) {
        fail_set(*problem);
      }
    } catch (const YAML::Exception& e) {
      fail_set(e.msg);
    }
  }

  // A section that is not a map in the file is replaced: the override is what the user wants now.
  static YAML::Node as_map(YAML::Node node) {
    if (present(node) && !node.IsMap()) node = YAML::Node(YAML::NodeType::Map);
    return node;
  }

  // Returns the problem, if any, with the key path in `--set`.
  std::optional<std::string> set_in_section(YAML::Node node, const std::vector<KeySchema>& keys,
                                            std::span<const std::string> path,
                                            const std::string& walked, const YAML::Node& value) {
    node = as_map(node);
    const std::string& key = path[0];
    const KeySchema* schema = find_key(keys, key);
    if (!schema) return unknown_key_message(key, keys, walked);
    const std::string here = join_path(walked, key);
    if (path.size() == 1) {
      node[key] = value;
      return std::nullopt;
    }
    const auto rest = path.subspan(1);
    switch (schema->shape) {
      case KeySchema::Shape::value:
        return "'" + here + "' has no sub-keys";
      case KeySchema::Shape::section:
        return set_in_section(node[key], schema->children, rest, here, value);
      case KeySchema::Shape::section_list: {
        const YAML::Node list = node[key];
        const auto index = parse_int(rest[0]);
        if (!index || !list.IsSequence() || *index < 0 ||
            static_cast<size_t>(*index) >= list.size()) {
          return "'" + here + "' has no item '" + rest[0] + "' (use " + here +
                 "=[...] to replace the list)";
        }
        const std::string item = here + "[" + rest[0] + "]";
        YAML::Node element = list[static_cast<size_t>(*index)];
        if (rest.size() == 1) {
          element = value;
          return std::nullopt;
        }
        return set_in_section(element, schema->children, rest.subspan(1), item, value);
      }
      case KeySchema::Shape::free_map: {
        // User-chosen keys may contain dots (librdkafka's `security.protocol`), so the leading
        // components are joined into the first key and only the last levels are split.
        const size_t depth = static_cast<size_t>(schema->free_map_depth);
        const size_t joined = rest.size() >= depth ? rest.size() - depth + 1 : 1;
        std::vector<std::string> keys_below;
        std::string first;
        for (size_t i = 0; i < joined; ++i) first += (i ? "." : "") + rest[i];
        keys_below.push_back(first);
        for (size_t i = joined; i < rest.size(); ++i) keys_below.push_back(rest[i]);
        YAML::Node cursor = as_map(node[key]);
        for (size_t i = 0; i + 1 < keys_below.size(); ++i) {
          YAML::Node next = as_map(cursor[keys_below[i]]);
          cursor.reset(next);
        }
        cursor[keys_below.back()] = value;
        return std::nullopt;
      }
    }
    return std::nullopt;
  }

  // ---- structure ------------------------------------------------------------------------------

  // Calls fn(key_node, key, value) for each entry, rejecting non-scalar and duplicate keys
  // (yaml-cpp keeps both duplicates and lookups would silently pick the first).
  template <typename Fn>
  void for_each_entry(const YAML::Node& map, const std::string& where, Fn&& fn) {
    std::set<std::string> seen;
    for (const auto& kv : map) {
      if (!ok()) return;
      if (!kv.first.IsScalar()) {
        fail(kv.first, "keys must be plain names" + (where.empty() ? "" : " in " + where));
        return;
      }
      const std::string key = kv.first.Scalar();
      if (!seen.insert(key).second) {
        fail(kv.first, "duplicate key '" + key + "'" + (where.empty() ? "" : " in " + where));
        return;
      }
      fn(kv.first, key, kv.second);
    }
  }

  void check_section(const YAML::Node& node, const std::vector<KeySchema>& keys,
                     const std::string& where) {
    if (!present(node)) return;
    if (!node.IsMap()) return fail(node, where + ": expected a map, got " + kind_of(node));
    for_each_entry(
        node, where,
        [&](const YAML::Node& key_node, const std::string& key, const YAML::Node& value) {
          const KeySchema* schema = find_key(keys, key);
          if (!schema) return fail(key_node, unknown_key_message(key, keys, where));
          const std::string here = join_path(where, key);
          switch (schema->shape) {
            case KeySchema::Shape::value:
              break;
            case KeySchema::Shape::section:
              check_section(value, schema->children, here);
              break;
            case KeySchema::Shape::section_list:
              if (!present(value)) break;
              if (!value.IsSequence())
                return fail(value, here + ": expected a list, got " + kind_of(value));
              for (size_t i = 0; i < value.size() && ok(); ++i) {
                const YAML::Node item = value[i];
                const std::string item_path = here + "[" + std::to_string(i) + "]";
                if (!present(item) || !item.IsMap()) {
                  return fail(item, item_path + ": expected a map, got " + kind_of(item));
                }
                check_section(item, schema->children, item_path);
              }
              break;
            case KeySchema::Shape::free_map:
              if (present(value) && !value.IsMap()) {
                return fail(value, here + ": expected a map, got " + kind_of(value));
              }
              break;
          }
        });
  }

  // ---- typed readers: each returns true when a value was present and valid -------------------

  std::optional<std::string> text(const YAML::Node& n, const std::string& path) {
    if (!present(n)) return std::nullopt;
    if (!n.IsScalar()) {
      fail(n, path + ": expected a single value, got " + kind_of(n));
      return std::nullopt;
    }
    auto expanded = expand_env(n.Scalar());
    if (!expanded) {
      fail(n, path + ": " + expanded.error().message);
      return std::nullopt;
    }
    return std::move(*expanded);
  }

  bool read_string(const YAML::Node& n, const std::string& path, std::string& out,
                   bool allow_empty = false) {
    auto s = text(n, path);
    if (!s) return false;
    if (s->empty() && !allow_empty) {
      fail(n, path + ": must not be empty");
      return false;
    }
    out = std::move(*s);
    return true;
  }

  bool read_int(const YAML::Node& n, const std::string& path, int64_t& out) {
    auto s = text(n, path);
    if (!s) return false;
    auto v = parse_int(*s);
    if (!v) {
      fail(n, path + ": expected an integer, got '" + *s + "'");
      return false;
    }
    out = *v;
    return true;
  }

  template <typename T>
  void read_positive(const YAML::Node& n, const std::string& path, T& out) {
    int64_t v = 0;
    if (!read_int(n, path, v)) return;
    if (v <= 0) return fail(n, path + ": must be greater than 0, got " + std::to_string(v));
    if (static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      return fail(n, path + ": " + std::to_string(v) + " is too large");
    }
    out = static_cast<T>(v);
  }

  bool read_double(const YAML::Node& n, const std::string& path, double& out) {
    auto s = text(n, path);
    if (!s) return false;
    auto v = parse_double(*s);
    if (!v) {
      fail(n, path + ": expected a number, got '" + *s + "'");
      return false;
    }
    out = *v;
    return true;
  }

  void read_non_negative(const YAML::Node& n, const std::string& path, double& out) {
    double v = 0;
    if (!read_double(n, path, v)) return;
    if (v < 0) return fail(n, path + ": must not be negative, got " + format_number(v));
    out = v;
  }

  void read_bool(const YAML::Node& n, const std::string& path, bool& out) {
    auto s = text(n, path);
    if (!s) return;
    auto v = parse_bool(*s);
    if (!v) return fail(n, path + ": expected true or false, got '" + *s + "'");
    out = *v;
  }

  bool read_duration(const YAML::Node& n, const std::string& path, Millis& out) {
    auto s = text(n, path);
    if (!s) return false;
    auto d = parse_duration(*s);
    if (!d) {
      fail(n, path + ": " + d.error().message);
      return false;
    }
    out = *d;
    return true;
  }

  void read_positive_duration(const YAML::Node& n, const std::string& path, Millis& out) {
    Millis d{0};
    if (!read_duration(n, path, d)) return;
    if (d.count() <= 0) return fail(n, path + ": must be greater than 0");
    out = d;
  }

  template <typename E>
  bool read_enum(const YAML::Node& n, const std::string& path, E& out,
                 std::initializer_list<std::pair<std::string_view, E>> choices) {
    auto s = text(n, path);
    if (!s) return false;
    std::vector<std::string_view> names;
    for (const auto& [name, v] : choices) {
      if (name == *s) {
        out = v;
        return true;
      }
      names.push_back(name);
    }
    fail(n, path + ": invalid value '" + *s + "'" + suggestion(*s, names));
    return false;
  }

  void read_choice(const YAML::Node& n, const std::string& path, std::string& out,
                   std::initializer_list<std::string_view> choices) {
    auto s = text(n, path);
    if (!s) return;
    std::vector<std::string_view> names(choices);
    if (std::find(names.begin(), names.end(), *s) == names.end()) {
      return fail(n, path + ": invalid value '" + *s + "'" + suggestion(*s, names));
    }
    out = *s;
  }

  // A list of plain values; nodes are returned alongside so later checks can point at each item.
  bool read_list(const YAML::Node& n, const std::string& path,
                 std::vector<std::pair<std::string, YAML::Node>>& out) {
    if (!present(n)) return false;
    if (!n.IsSequence()) {
      fail(n, path + ": expected a list, got " + kind_of(n));
      return false;
    }
    out.clear();
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      auto s = text(item, path + "[" + std::to_string(i) + "]");
      if (!ok()) return false;
      if (!s) {
        fail(item, path + "[" + std::to_string(i) + "]: expected a value, got nothing");
        return false;
      }
      out.emplace_back(std::move(*s), item);
    }
    return true;
  }

  // ---- sections ---------------------------------------------------------------------------------

  void convert(const YAML::Node& root) {
    read_kafka(child(root, "kafka"));
    read_state(child(root, "state"));
    read_metrics(child(root, "metrics"));
    read_brands(child(root, "brands"));
    read_channels(child(root, "channels"));
    read_windows(child(root, "windows"));
    read_watermark(child(root, "watermark"));
    read_dedup(child(root, "dedup"));
    read_kpi(child(root, "kpi"));
    read_alerts(child(root, "alerts"));
    read_emv(child(root, "emv"));
    read_roi(child(root, "roi"));
    read_limits(child(root, "limits"));
    read_log(child(root, "log"));
    read_positive_duration(child(root, "shutdown_timeout"), "shutdown_timeout",
                           config_.shutdown_timeout);
  }

  void read_kafka(const YAML::Node& n) {
    KafkaConfig& k = config_.kafka;
    read_string(child(n, "bootstrap_servers"), "kafka.bootstrap_servers", k.bootstrap_servers);
    read_string(child(n, "group_id"), "kafka.group_id", k.group_id);
    std::vector<std::pair<std::string, YAML::Node>> topics;
    const YAML::Node topics_node = child(n, "topics");
    if (read_list(topics_node, "kafka.topics", topics)) {
      if (topics.empty()) return fail(topics_node, "kafka.topics: needs at least one topic");
      k.topics.clear();
      for (auto& [topic, node] : topics) {
        if (topic.empty()) return fail(node, "kafka.topics: topic names must not be empty");
        if (std::find(k.topics.begin(), k.topics.end(), topic) != k.topics.end()) {
          return fail(node, "kafka.topics: duplicate topic '" + topic + "'");
        }
        k.topics.push_back(std::move(topic));
      }
    }
    read_string(child(n, "output_topic"), "kafka.output_topic", k.output_topic);
    read_string(child(n, "alerts_topic"), "kafka.alerts_topic", k.alerts_topic);
    read_string(child(n, "dlq_topic"), "kafka.dlq_topic", k.dlq_topic);
    const YAML::Node state_topic = child(n, "state_topic");
    if (read_string(state_topic, "kafka.state_topic", k.state_topic)) {
      if (!is_kafka_name(k.state_topic)) {
        return fail(state_topic, "kafka.state_topic: invalid topic name '" + k.state_topic + "' (" +
                                     std::string(kKafkaNameRule) + ")");
      }
    }
    if (!ok()) return;
    // The changelog gets records no other reader understands, and is created compacted: sharing a
    // name with another topic would corrupt both.
    for (const std::string* other : {&k.output_topic, &k.alerts_topic, &k.dlq_topic}) {
      if (*other == k.state_topic) {
        return fail(present(state_topic) ? state_topic : n,
                    "kafka.state_topic: '" + k.state_topic + "' is also used as another topic");
      }
    }
    if (std::find(k.topics.begin(), k.topics.end(), k.state_topic) != k.topics.end()) {
      return fail(present(state_topic) ? state_topic : n,
                  "kafka.state_topic: '" + k.state_topic + "' is also an input topic");
    }
    const YAML::Node max_record = child(n, "changelog_max_record_bytes");
    int64_t record_bytes = 0;
    if (read_int(max_record, "kafka.changelog_max_record_bytes", record_bytes)) {
      if (record_bytes < static_cast<int64_t>(kChangelogMinRecordBytes) ||
          record_bytes > static_cast<int64_t>(kChangelogMaxRecordBytesLimit)) {
        return fail(max_record,
                    "kafka.changelog_max_record_bytes: " + std::to_string(record_bytes) +
                        " is not between " + std::to_string(kChangelogMinRecordBytes) + " and " +
                        std::to_string(kChangelogMaxRecordBytesLimit) +
                        " (at most the broker's max.message.bytes minus " +
                        std::to_string(kChangelogBatchSlack) + ")");
      }
      k.changelog_max_record_bytes = static_cast<size_t>(record_bytes);
    }
    // Empty is allowed and means unset, so `${HOSTNAME:-}` can switch static membership off.
    const YAML::Node instance_id = child(n, "group_instance_id");
    if (read_string(instance_id, "kafka.group_instance_id", k.group_instance_id, true) &&
        !k.group_instance_id.empty() && !is_kafka_name(k.group_instance_id)) {
      return fail(instance_id, "kafka.group_instance_id: invalid id '" + k.group_instance_id +
                                   "' (" + std::string(kKafkaNameRule) + ")");
    }
    const YAML::Node properties = child(n, "properties");
    if (present(properties)) {
      for_each_entry(properties, "kafka.properties",
                     [&](const YAML::Node& key_node, const std::string& key, const YAML::Node& v) {
                       if (key.empty()) return fail(key_node, "kafka.properties: empty key");
                       // librdkafka takes only strings; numbers and booleans keep their text.
                       std::string s;
                       if (read_string(v, "kafka.properties." + key, s, true)) {
                         k.properties[key] = std::move(s);
                       }
                     });
    }
    read_positive(child(n, "embedded_partitions"), "kafka.embedded_partitions",
                  k.embedded_partitions);
    if (ok() && !k.group_instance_id.empty() && k.properties.contains("group.instance.id")) {
      return fail(properties,
                  "kafka.properties.group.instance.id: set kafka.group_instance_id "
                  "instead (both are set)");
    }
    read_positive_duration(child(n, "ready_timeout"), "kafka.ready_timeout", k.ready_timeout);
  }

  void read_state(const YAML::Node& n) {
    read_string(child(n, "path"), "state.path", config_.state.path);
    read_positive_duration(child(n, "checkpoint_interval"), "state.checkpoint_interval",
                           config_.state.checkpoint_interval);
    read_bool(child(n, "sync"), "state.sync", config_.state.sync);
  }

  void read_metrics(const YAML::Node& n) {
    MetricsConfig& m = config_.metrics;
    const YAML::Node listen = child(n, "listen");
    if (read_string(listen, "metrics.listen", m.listen)) check_listen(listen, m.listen);
    read_positive(child(n, "max_series"), "metrics.max_series", m.max_series);
    const YAML::Node auth = child(n, "basic_auth");
    const YAML::Node username = child(auth, "username");
    const YAML::Node password_env = child(auth, "password_env");
    read_string(username, "metrics.basic_auth.username", m.basic_auth.username, true);
    read_string(password_env, "metrics.basic_auth.password_env", m.basic_auth.password_env, true);
    const YAML::Node tls = child(n, "tls");
    read_string(child(tls, "cert_file"), "metrics.tls.cert_file", m.tls.cert_file, true);
    read_string(child(tls, "key_file"), "metrics.tls.key_file", m.tls.key_file, true);
    read_string(child(tls, "client_ca_file"), "metrics.tls.client_ca_file", m.tls.client_ca_file,
                true);
    if (ok() && m.tls.cert_file.empty() &&
        (!m.tls.key_file.empty() || !m.tls.client_ca_file.empty())) {
      return fail(tls, "metrics.tls: key_file and client_ca_file need cert_file");
    }
    read_positive_duration(child(n, "request_timeout"), "metrics.request_timeout",
                           m.request_timeout);
    read_positive_duration(child(n, "response_timeout"), "metrics.response_timeout",
                           m.response_timeout);
    read_positive(child(n, "max_connections"), "metrics.max_connections", m.max_connections);
    read_positive(child(n, "max_connections_per_client"), "metrics.max_connections_per_client",
                  m.max_connections_per_client);
    read_positive(child(n, "max_request_bytes"), "metrics.max_request_bytes", m.max_request_bytes);
    if (!ok()) return;
    const std::string& env = m.basic_auth.password_env;
    if (!env.empty() &&
        (!is_var_start(env[0]) || !std::all_of(env.begin(), env.end(), is_var_char))) {
      return fail(password_env, "metrics.basic_auth.password_env: '" + env +
                                    "' is not an environment variable name");
    }
    // The password itself never lives in the file; a username without it would lock scrapers out.
    if (!m.basic_auth.username.empty() && env.empty()) {
      return fail(present(password_env) ? password_env : auth,
                  "metrics.basic_auth: username needs password_env (the variable holding the "
                  "password)");
    }
  }

  void check_listen(const YAML::Node& node, const std::string& listen) {
    const size_t colon = listen.rfind(':');
    const std::string expected =
        "metrics.listen: expected host:port (e.g. 0.0.0.0:9464), got '" + listen + "'";
    if (colon == std::string::npos || colon == 0) return fail(node, expected);
    const std::string host = listen.substr(0, colon);
    const bool bracketed = host.front() == '[' && host.back() == ']';
    if (!bracketed && host.find(':') != std::string::npos) {
      return fail(node, "metrics.listen: IPv6 addresses need brackets, e.g. [::]:9464");
    }
    const auto port = parse_int(std::string_view(listen).substr(colon + 1));
    // Port 0 is allowed: the OS picks a free port (tests, several instances on one host).
    if (!port || *port < 0 || *port > 65535) {
      return fail(node, "metrics.listen: invalid port '" + listen.substr(colon + 1) +
                            "' (expected 0-65535)");
    }
  }

  void read_brands(const YAML::Node& n) {
    BrandsConfig& b = config_.brands;
    const YAML::Node tracked = child(n, "tracked");
    if (present(tracked)) {  // shape (list of maps) was checked with the schema
      b.tracked.clear();
      for (size_t i = 0; i < tracked.size() && ok(); ++i) {
        const YAML::Node item = tracked[i];
        const std::string path = "brands.tracked[" + std::to_string(i) + "]";
        const YAML::Node name_node = child(item, "name");
        BrandInfo brand;
        if (!present(name_node)) return fail(item, path + ": needs a name");
        if (!read_string(name_node, path + ".name", brand.name)) return;
        if (!is_label_name(brand.name)) {
          return fail(name_node, path + ".name: invalid brand name '" + brand.name +
                                     "' (must match " + std::string(kLabelPattern) + ")");
        }
        if (brand.name == "other") {
          return fail(name_node, path + ".name: 'other' is reserved for brands not listed here");
        }
        for (const BrandInfo& seen : b.tracked) {
          if (seen.name == brand.name) {
            return fail(name_node, path + ".name: duplicate brand '" + brand.name + "'");
          }
        }
        read_bool(child(item, "own"), path + ".own", brand.own);
        b.tracked.push_back(std::move(brand));
      }
    }
    read_enum(child(n, "unknown"), "brands.unknown", b.unknown,
              {{"other", UnknownBrandPolicy::other}, {"reject", UnknownBrandPolicy::reject}});
  }

  void read_channels(const YAML::Node& n) {
    std::vector<std::pair<std::string, YAML::Node>> items;
    if (!read_list(n, "channels", items)) return;
    config_.channels.clear();
    for (auto& [name, node] : items) {
      const bool has_upper = std::any_of(name.begin(), name.end(),
                                         [](unsigned char c) { return std::isupper(c) != 0; });
      if (has_upper) {
        return fail(node,
                    "channels: '" + name +
                        "' must be lower-case (event channels are lower-cased before lookup)");
      }
      if (!is_label_name(name)) {
        return fail(node, "channels: invalid channel name '" + name + "' (must match " +
                              std::string(kLabelPattern) + ")");
      }
      if (name == "other") {
        return fail(node, "channels: 'other' is reserved for channels not listed here");
      }
      auto& list = config_.channels;
      if (std::find(list.begin(), list.end(), name) != list.end()) {
        return fail(node, "channels: duplicate channel '" + name + "'");
      }
      list.push_back(std::move(name));
    }
  }

  void read_windows(const YAML::Node& n) {
    if (!present(n)) return;  // shape (list of maps) was checked with the schema
    config_.windows.clear();
    for (size_t i = 0; i < n.size() && ok(); ++i) {
      const YAML::Node item = n[i];
      const std::string path = "windows[" + std::to_string(i) + "]";
      WindowSpec w;
      const YAML::Node name = child(item, "name");
      if (!present(name)) return fail(item, path + ": needs a name");
      if (!read_string(name, path + ".name", w.name)) return;
      // The name is a metric label and part of the `brand|channel|window|start` record key.
      if (w.name.find('|') != std::string::npos) {
        return fail(name, path + ".name: must not contain '|'");
      }
      // It also names the window's checkpointed state (`<name>/<partition>/...`).
      if (w.name.empty() || w.name.find('/') != std::string::npos) {
        return fail(name, path + ".name: must be non-empty and must not contain '/'");
      }
      // "kpi" labels the KPI minute buckets' late events (socialpulse_late_events_total).
      if (w.name == "kpi") {
        return fail(name, path + ".name: 'kpi' is reserved for the KPI buckets' late events");
      }
      for (std::string_view reserved : kReservedStateOwners) {
        if (w.name == reserved) {
          return fail(name, path + ".name: '" + w.name + "' is reserved for internal state");
        }
      }
      for (const WindowSpec& seen : config_.windows) {
        if (seen.name == w.name)
          return fail(name, path + ".name: duplicate window '" + w.name + "'");
      }
      read_enum(child(item, "kind"), path + ".kind", w.kind,
                {{"tumbling", WindowKind::tumbling},
                 {"hopping", WindowKind::hopping},
                 {"session", WindowKind::session}});
      const YAML::Node size = child(item, "size");
      const YAML::Node advance = child(item, "advance");
      const YAML::Node gap = child(item, "gap");
      read_duration(size, path + ".size", w.size);
      read_duration(advance, path + ".advance", w.advance);
      read_duration(gap, path + ".gap", w.gap);
      read_duration(child(item, "grace"), path + ".grace", w.grace);
      read_enum(child(item, "emit"), path + ".emit", w.emit,
                {{"final", EmitMode::final}, {"update", EmitMode::update}});
      if (!ok()) return;
      check_window(item, path, w, size, advance, gap);
      config_.windows.push_back(std::move(w));
    }
  }

  void check_window(const YAML::Node& item, const std::string& path, WindowSpec& w,
                    const YAML::Node& size, const YAML::Node& advance, const YAML::Node& gap) {
    auto at = [&](const YAML::Node& n) -> const YAML::Node& { return present(n) ? n : item; };
    switch (w.kind) {
      case WindowKind::tumbling:
        if (w.size.count() <= 0) return fail(at(size), path + ": a tumbling window needs size > 0");
        if (present(advance) && w.advance != w.size) {
          return fail(advance, path +
                                   ".advance: a tumbling window advances by its size (use "
                                   "kind: hopping for overlapping windows)");
        }
        if (present(gap)) return fail(gap, path + ".gap: only session windows have a gap");
        w.advance = w.size;
        return;
      case WindowKind::hopping:
        if (w.size.count() <= 0) return fail(at(size), path + ": a hopping window needs size > 0");
        if (w.advance.count() <= 0 || w.advance > w.size) {
          return fail(at(advance), path + ": a hopping window needs 0 < advance <= size");
        }
        // Every event then belongs to exactly size/advance windows, and windows align to epoch.
        if (w.size.count() % w.advance.count() != 0) {
          return fail(advance, path + ".advance: size " + format_duration(w.size) +
                                   " must be a multiple of advance " + format_duration(w.advance));
        }
        if (present(gap)) return fail(gap, path + ".gap: only session windows have a gap");
        return;
      case WindowKind::session:
        if (w.gap.count() <= 0) return fail(at(gap), path + ": a session window needs gap > 0");
        if (present(size))
          return fail(size, path + ".size: session windows have a gap, not a size");
        if (present(advance)) {
          return fail(advance, path + ".advance: session windows have a gap, not an advance");
        }
        return;
    }
  }

  void read_watermark(const YAML::Node& n) {
    WatermarkSettings& w = config_.watermark;
    read_duration(child(n, "max_out_of_orderness"), "watermark.max_out_of_orderness",
                  w.max_out_of_orderness);
    read_positive_duration(child(n, "idle_timeout"), "watermark.idle_timeout", w.idle_timeout);
    read_positive_duration(child(n, "max_future"), "watermark.max_future", w.max_future);
  }

  void read_dedup(const YAML::Node& n) {
    const YAML::Node h = child(n, "horizon");
    Millis d = config_.dedup.horizon;
    if (!read_duration(h, "dedup.horizon", d)) return;
    // A remembered id's time is held in 32 bits of milliseconds (operators/deduplicator.h).
    if (d > Deduplicator::kMaxHorizon) return fail(h, "dedup.horizon: must be at most 49d");
    config_.dedup.horizon = d;
  }

  void read_kpi(const YAML::Node& n) {
    KpiSettings& k = config_.kpi;
    read_positive_duration(child(n, "reputation_horizon"), "kpi.reputation_horizon",
                           k.reputation_horizon);
    read_duration(child(n, "grace"), "kpi.grace", k.grace);
    std::vector<std::pair<std::string, YAML::Node>> types;
    if (read_list(child(n, "engagement_types"), "kpi.engagement_types", types)) {
      k.engagement_types.fill(false);
      for (const auto& [name, node] : types) {
        const auto type = parse_event_type(name);
        if (!type) {
          return fail(node, "kpi.engagement_types: unknown event type '" + name + "'" +
                                suggestion(name, event_type_names()));
        }
        if (k.engagement_types[static_cast<size_t>(*type)]) {
          return fail(node, "kpi.engagement_types: duplicate type '" + name + "'");
        }
        k.engagement_types[static_cast<size_t>(*type)] = true;
      }
    }
    const YAML::Node spike = child(n, "spike");
    const YAML::Node alpha = child(spike, "alpha");
    if (read_double(alpha, "kpi.spike.alpha", k.spike.alpha) &&
        !(k.spike.alpha > 0 && k.spike.alpha <= 1)) {
      return fail(alpha, "kpi.spike.alpha: must be in (0, 1], got " + format_number(k.spike.alpha));
    }
    const YAML::Node z = child(spike, "z_threshold");
    if (read_double(z, "kpi.spike.z_threshold", k.spike.z_threshold) && k.spike.z_threshold <= 0) {
      return fail(z, "kpi.spike.z_threshold: must be greater than 0, got " +
                         format_number(k.spike.z_threshold));
    }
    const YAML::Node min_events = child(spike, "min_events");
    if (read_int(min_events, "kpi.spike.min_events", k.spike.min_events) &&
        k.spike.min_events < 0) {
      return fail(min_events, "kpi.spike.min_events: must not be negative, got " +
                                  std::to_string(k.spike.min_events));
    }
    const YAML::Node warmup = child(spike, "warmup");
    if (read_int(warmup, "kpi.spike.warmup", k.spike.warmup) && k.spike.warmup < 0) {
      return fail(warmup,
                  "kpi.spike.warmup: must not be negative, got " + std::to_string(k.spike.warmup));
    }
    read_non_negative(child(spike, "stddev_floor"), "kpi.spike.stddev_floor", k.spike.stddev_floor);
    read_non_negative(child(spike, "drop_threshold"), "kpi.spike.drop_threshold",
                      k.spike.drop_threshold);
    read_non_negative(child(spike, "drop_stddev_floor"), "kpi.spike.drop_stddev_floor",
                      k.spike.drop_stddev_floor);
    read_positive(child(spike, "persistence"), "kpi.spike.persistence", k.spike.persistence);
    read_duration(child(spike, "cooldown"), "kpi.spike.cooldown", k.spike.cooldown);
    read_bool(child(spike, "seasonal"), "kpi.spike.seasonal", k.spike.seasonal);
  }

  void read_alerts(const YAML::Node& n) {
    read_positive_duration(child(n, "max_lag"), "alerts.max_lag", config_.kpi.spike.max_lag);
  }

  void read_emv(const YAML::Node& n) {
    EmvSettings& e = config_.emv;
    read_non_negative(child(n, "cpm"), "emv.cpm", e.cpm);
    const YAML::Node values = child(n, "action_value");
    if (!present(values)) return;
    // Only listed types change; the rest keep SPEC 2's defaults from EmvSettings.
    for_each_entry(values, "emv.action_value",
                   [&](const YAML::Node& key_node, const std::string& key, const YAML::Node& v) {
                     const auto type = parse_event_type(key);
                     if (!type) {
                       return fail(key_node, "emv.action_value: unknown event type '" + key + "'" +
                                                 suggestion(key, event_type_names()));
                     }
                     read_non_negative(v, "emv.action_value." + key,
                                       e.action_value[static_cast<size_t>(*type)]);
                   });
  }

  void read_roi(const YAML::Node& n) {
    RoiConfig& r = config_.roi;
    const YAML::Node currency = child(n, "currency");
    read_string(currency, "roi.currency", r.currency);
    // An ISO 4217 code: it is printed in HELP texts and dashboards as is.
    const bool iso =
        r.currency.size() == 3 && std::all_of(r.currency.begin(), r.currency.end(),
                                              [](char c) { return c >= 'A' && c <= 'Z'; });
    if (ok() && !iso) {
      return fail(currency,
                  "roi.currency: expected an ISO 4217 code of three capital letters "
                  "(EUR, USD...), got '" +
                      r.currency + "'");
    }
    const YAML::Node spend = child(n, "daily_spend");
    if (!present(spend)) return;
    // Spend becomes `socialpulse_daily_spend{brand,channel}`, so both must be bounded labels.
    std::vector<std::string_view> brands;
    for (const BrandInfo& b : config_.brands.tracked) brands.push_back(b.name);
    std::vector<std::string_view> channels(config_.channels.begin(), config_.channels.end());
    for_each_entry(
        spend, "roi.daily_spend",
        [&](const YAML::Node& brand_node, const std::string& brand, const YAML::Node& per_channel) {
          if (std::find(brands.begin(), brands.end(), brand) == brands.end()) {
            return fail(brand_node, "roi.daily_spend: '" + brand + "' is not in brands.tracked" +
                                        suggestion(brand, brands));
          }
          const std::string path = "roi.daily_spend." + brand;
          if (!present(per_channel)) return;
          if (!per_channel.IsMap()) {
            return fail(per_channel,
                        path + ": expected a map of channel: spend, got " + kind_of(per_channel));
          }
          auto& out = r.daily_spend[brand];
          for_each_entry(
              per_channel, path,
              [&](const YAML::Node& channel_node, const std::string& channel, const YAML::Node& v) {
                if (std::find(channels.begin(), channels.end(), channel) == channels.end()) {
                  return fail(channel_node, path + ": '" + channel + "' is not in channels" +
                                                suggestion(channel, channels));
                }
                double amount = 0;
                read_non_negative(v, path + "." + channel, amount);
                if (ok() && present(v)) out[channel] = amount;
              });
        });
  }

  void read_limits(const YAML::Node& n) {
    LimitsConfig& l = config_.limits;
    read_positive(child(n, "max_message_bytes"), "limits.max_message_bytes", l.max_message_bytes);
    read_positive(child(n, "max_state_bytes"), "limits.max_state_bytes", l.max_state_bytes);
    read_positive(child(n, "max_pending_records"), "limits.max_pending_records",
                  l.max_pending_records);
  }

  void read_log(const YAML::Node& n) {
    read_choice(child(n, "level"), "log.level", config_.log.level,
                {"trace", "debug", "info", "warn", "error", "critical", "off"});
    read_choice(child(n, "format"), "log.format", config_.log.format, {"logfmt", "json"});
  }

  std::string_view file_name_;
  std::vector<OverrideSource> overrides_;
  std::optional<std::string> error_;
  Config config_;
};

}  // namespace

Result<Config> parse_config(std::string_view yaml_text, std::string_view file_name,
                            const std::vector<std::string>& overrides) {
  ConfigParser parser(file_name, yaml_text.size(), overrides);
  return parser.run(yaml_text);
}

Result<Config> load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error(ErrorKind::invalid_input, path + ": cannot open: " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return make_error(ErrorKind::invalid_input, path + ": read error");
  return parse_config(text.str(), path, overrides);
}

namespace {
void collect_key_paths(const KeySchema& key, const std::string& prefix,
                       std::vector<std::string>& out) {
  const std::string path = prefix + std::string(key.name);
  switch (key.shape) {
    case KeySchema::Shape::value:
    case KeySchema::Shape::free_map:
      out.push_back(path);
      return;
    case KeySchema::Shape::section:
    case KeySchema::Shape::section_list:
      for (const KeySchema& child : key.children) {
        collect_key_paths(
            child,
            path.empty() ? "" : path + (key.shape == KeySchema::Shape::section_list ? "[]." : "."),
            out);
      }
      return;
  }
}
}  // namespace

std::vector<std::string> config_key_paths() {
  std::vector<std::string> out;
  collect_key_paths(config_schema(), "", out);
  return out;
}

Result<std::string> check_environment(const Config& config) {
  std::string password;
  const BasicAuthConfig& auth = config.metrics.basic_auth;
  if (!auth.username.empty()) {
    const char* value = std::getenv(auth.password_env.c_str());
    if (value == nullptr || *value == '\0') {
      return make_error(ErrorKind::invalid_input,
                        "metrics.basic_auth.password_env: environment "
                        "variable " +
                            auth.password_env + " is not set (it holds the password)");
    }
    password = value;
  }
  const TlsConfig& tls = config.metrics.tls;
  for (const auto& [key, file] :
       {std::pair{"cert_file", &tls.cert_file}, std::pair{"key_file", &tls.key_file},
        std::pair{"client_ca_file", &tls.client_ca_file}}) {
    if (file->empty()) continue;
    std::ifstream in(*file);
    if (!in) {
      return make_error(ErrorKind::invalid_input, std::string("metrics.tls.") + key +
                                                      ": cannot read '" + *file +
                                                      "': " + std::strerror(errno));
    }
  }
  return password;
}

SpendValues spend_of(const RoiConfig& roi) {
  SpendValues out;
  out.currency = roi.currency;
  for (const auto& [brand, channels] : roi.daily_spend) {
    for (const auto& [channel, value] : channels) out.entries.push_back({brand, channel, value});
  }
  return out;
}

TopologySpec topology_spec(const Config& config, const Vocabulary& vocabulary) {
  TopologySpec spec;
  spec.vocabulary = vocabulary;
  spec.windows = config.windows;
  spec.kpi = config.kpi;
  spec.emv = config.emv;
  spec.spend = spend_of(config.roi);
  spec.watermark = config.watermark;
  spec.dedup_horizon = config.dedup.horizon;
  return spec;
}

}  // namespace sp
