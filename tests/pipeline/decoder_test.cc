#include "pipeline/decoder.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace sp {
namespace {

namespace fs = std::filesystem;

// Every example and test decodes against this fixed wall clock (see schemas/README.md).
constexpr int64_t kWallNowMs = 1795521600000;  // 2026-11-24T12:00:00Z
constexpr int64_t kTenUtcMs = 1795514400000;   // 2026-11-24T10:00:00Z

Vocabulary test_vocabulary() {
  return Vocabulary({{"acme", true}, {"globex", false}},
                    {"twitter", "facebook", "instagram", "linkedin", "youtube", "tiktok", "blog",
                     "forum", "reviews", "web"});
}

std::string event_json(const std::string& extra = "", const std::string& type = "like") {
  return R"({"id":"e-1","time":"2026-11-24T10:00:00Z","brand":"acme","channel":"twitter","type":")" +
         type + "\"" + (extra.empty() ? "" : "," + extra) + "}";
}

// Replaces the raw JSON value of a top-level string field of event_json().
std::string with_value(std::string json, const std::string& field, const std::string& raw_value) {
  const auto key = json.find("\"" + field + "\":");
  const auto start = key + field.size() + 3;
  const auto end = json.find('"', start + 1) + 1;
  return json.replace(start, end - start, raw_value);
}

class DecoderTest : public ::testing::Test {
 protected:
  tl::expected<const Event*, Rejection> decode(std::string_view payload,
                                               std::vector<HeaderView> headers = {}) {
    return decoder_.decode(payload, headers, from_epoch_ms(kWallNowMs));
  }
  // Decodes and expects acceptance; returns a copy so the next decode cannot invalidate it.
  Event accept(std::string_view payload, std::vector<HeaderView> headers = {}) {
    auto r = decode(payload, std::move(headers));
    EXPECT_TRUE(r.has_value()) << (r ? "" : std::string(to_string(r.error().reason)) + " " + r.error().detail);
    return r ? **r : Event{};
  }
  Rejection reject(std::string_view payload, std::vector<HeaderView> headers = {}) {
    auto r = decode(payload, std::move(headers));
    EXPECT_FALSE(r.has_value()) << "accepted: " << payload.substr(0, 200);
    return r ? Rejection{RejectReason::schema, "<accepted>"} : r.error();
  }
  void expect_schema(const std::string& payload, const std::string& detail_prefix) {
    const Rejection r = reject(payload);
    EXPECT_EQ(r.reason, RejectReason::schema) << r.detail;
    EXPECT_TRUE(r.detail.starts_with(detail_prefix)) << r.detail << " vs " << detail_prefix;
  }
  void expect_malformed(const std::string& payload) {
    const Rejection r = reject(payload);
    EXPECT_EQ(r.reason, RejectReason::malformed_json) << r.detail << " for " << payload.substr(0, 120);
  }

  Vocabulary vocab_ = test_vocabulary();
  EventDecoder decoder_{vocab_, DecoderOptions{}};
};

// ---------------------------------------------------------------------------------------------
// Labelled examples (schemas/examples): the same files the JSON Schema test validates.

struct Example {
  fs::path path;
  bool valid = false;
  std::map<std::string, std::string> expect;
  std::vector<std::pair<std::string, std::string>> headers;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<Example> load_examples() {
  std::vector<Example> out;
  for (const char* dir : {"valid", "invalid"}) {
    const fs::path base = fs::path(SP_EXAMPLES_DIR) / dir;
    if (!fs::exists(base)) continue;
    for (const auto& entry : fs::directory_iterator(base)) {
      if (entry.path().extension() != ".json") continue;
      Example ex;
      ex.path = entry.path();
      ex.valid = std::string(dir) == "valid";
      fs::path sidecar = entry.path();
      sidecar.replace_extension(".expect");
      std::istringstream lines(fs::exists(sidecar) ? read_file(sidecar) : "");
      for (std::string line; std::getline(lines, line);) {
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string key = line.substr(0, colon);
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        if (key == "header") {
          const auto eq = value.find('=');
          ex.headers.emplace_back(value.substr(0, eq), value.substr(eq + 1));
        } else {
          ex.expect[key] = value;
        }
      }
      out.push_back(std::move(ex));
    }
  }
  std::sort(out.begin(), out.end(), [](const Example& a, const Example& b) { return a.path < b.path; });
  return out;
}

// Keeps gtest from hex-dumping the struct when a case fails.
void PrintTo(const Example& ex, std::ostream* os) { *os << ex.path.filename().string(); }

class ExampleTest : public ::testing::TestWithParam<Example> {};

TEST(Examples, EnoughOfThem) {
  const auto all = load_examples();
  const auto valid = std::count_if(all.begin(), all.end(), [](const Example& e) { return e.valid; });
  EXPECT_GE(valid, 12);
  EXPECT_GE(static_cast<long>(all.size()) - valid, 15);
}

TEST_P(ExampleTest, DecodesAsLabelled) {
  const Example& ex = GetParam();
  const Vocabulary vocab = test_vocabulary();
  DecoderOptions options;
  if (auto it = ex.expect.find("max_message_bytes"); it != ex.expect.end()) {
    options.max_message_bytes = std::stoul(it->second);
  }
  if (auto it = ex.expect.find("unknown_brand"); it != ex.expect.end() && it->second == "reject") {
    options.unknown = UnknownBrandPolicy::reject;
  }
  EventDecoder decoder(vocab, options);
  std::vector<HeaderView> headers;
  for (const auto& [k, v] : ex.headers) headers.push_back({k, v});
  const std::string payload = read_file(ex.path);
  auto r = decoder.decode(payload, headers, from_epoch_ms(kWallNowMs));

  if (!ex.valid) {
    ASSERT_FALSE(r.has_value()) << "accepted an invalid example";
    ASSERT_TRUE(ex.expect.contains("reason")) << "invalid example needs a .expect sidecar";
    EXPECT_EQ(to_string(r.error().reason), ex.expect.at("reason")) << r.error().detail;
    EXPECT_TRUE(r.error().detail.starts_with(ex.expect.at("detail")))
        << "detail '" << r.error().detail << "' does not start with '" << ex.expect.at("detail") << "'";
    return;
  }
  ASSERT_TRUE(r.has_value()) << to_string(r.error().reason) << ": " << r.error().detail;
  const Event& e = **r;
  for (const auto& [key, want] : ex.expect) {
    if (!key.starts_with("expect.")) continue;
    const std::string field = key.substr(7);
    SCOPED_TRACE(field);
    if (field == "type") EXPECT_EQ(to_string(e.type), want);
    else if (field == "count") EXPECT_EQ(e.count, std::stoll(want));
    else if (field == "reach") EXPECT_EQ(e.reach, std::stoll(want));
    else if (field == "followers") EXPECT_EQ(e.followers, std::stoll(want));
    else if (field == "time_ms") EXPECT_EQ(to_epoch_ms(e.time), std::stoll(want));
    else if (field == "id") EXPECT_EQ(e.id, want);
    else if (field == "actor_id") EXPECT_EQ(e.actor_id, want);
    else if (field == "role") EXPECT_EQ(to_string(e.role), want);
    else if (field == "brand_name") EXPECT_EQ(e.brand_name, want);
    else if (field == "brand_index") EXPECT_EQ(vocab.brand_name(e.brand), want == "other" ? "other" : vocab.brand_name(static_cast<BrandIndex>(std::stoi(want))));
    else if (field == "channel") EXPECT_EQ(vocab.channel_name(e.channel), want);
    else if (field == "sentiment") EXPECT_DOUBLE_EQ(e.sentiment, std::stod(want));
    else if (field == "has_sentiment") EXPECT_EQ(e.has_sentiment, want == "true");
    else if (field == "has_value") EXPECT_EQ(e.has_value, want == "true");
    else if (field == "value") EXPECT_DOUBLE_EQ(e.value, std::stod(want));
    else if (field == "has_response_time") EXPECT_EQ(e.has_response_time, want == "true");
    else if (field == "response_time_s") EXPECT_DOUBLE_EQ(e.response_time_s, std::stod(want));
    else if (field == "tags") {
      std::string got;
      for (size_t i = 0; i < e.tag_count; ++i) got += (i ? "," : "") + std::string(e.tags[i]);
      EXPECT_EQ(got, want);
    }
    else ADD_FAILURE() << "unknown expectation " << key;
  }
}

INSTANTIATE_TEST_SUITE_P(Schemas, ExampleTest, ::testing::ValuesIn(load_examples()),
                         [](const ::testing::TestParamInfo<Example>& info) {
                           std::string name = (info.param.valid ? "valid_" : "invalid_") +
                                              info.param.path.stem().string();
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

// ---------------------------------------------------------------------------------------------
// Fields

TEST_F(DecoderTest, MinimalEventGetsDefaults) {
  const Event e = accept(event_json());
  EXPECT_EQ(e.id, "e-1");
  EXPECT_EQ(to_epoch_ms(e.time), kTenUtcMs);
  EXPECT_EQ(e.brand, 0);
  EXPECT_EQ(e.brand_name, "acme");
  EXPECT_EQ(vocab_.channel_name(e.channel), "twitter");
  EXPECT_EQ(e.type, EventType::like);
  EXPECT_EQ(e.count, 1);
  EXPECT_EQ(e.reach, 0);
  EXPECT_FALSE(e.has_actor);
  EXPECT_EQ(e.role, Role::anonymous);
  EXPECT_FALSE(e.has_sentiment);
  EXPECT_FALSE(e.has_value);
  EXPECT_FALSE(e.has_response_time);
}

TEST_F(DecoderTest, EachRequiredFieldIsRequired) {
  for (const std::string field : {"id", "time", "brand", "channel", "type"}) {
    std::string json = event_json();
    const auto start = json.find("\"" + field + "\"");
    const auto end = json.find_first_of(",}", json.find(':', start) + 1);
    json.erase(start, end - start + (json[end] == ',' ? 1 : 0));
    if (json[json.size() - 2] == ',') json.erase(json.size() - 2, 1);
    SCOPED_TRACE(json);
    expect_schema(json, field + ": required");
  }
}

TEST_F(DecoderTest, IdLengthCountsCharactersNotBytes) {
  accept(with_value(event_json(), "id", "\"" + std::string(128, 'x') + "\""));
  // 128 two-byte characters are 256 bytes but 128 characters: accepted, as JSON Schema would.
  std::string two_byte;
  for (int i = 0; i < 128; ++i) two_byte += "\xc3\xa9";
  accept(with_value(event_json(), "id", "\"" + two_byte + "\""));
  expect_schema(with_value(event_json(), "id", "\"" + std::string(129, 'x') + "\""), "id: must be a string of 1-128");
  expect_schema(with_value(event_json(), "id", "\"" + two_byte + "\xc3\xa9\""), "id: must be a string of 1-128");
  expect_schema(with_value(event_json(), "id", "42"), "id: must be a string");
}

TEST_F(DecoderTest, BrandIsLowerCasedThenPatternChecked) {
  const std::string base = R"({"id":"e","time":"2026-11-24T10:00:00Z","channel":"web","type":"like","brand":)";
  EXPECT_EQ(accept(base + "\"GloBex\"}").brand_name, "globex");
  EXPECT_EQ(accept(base + "\"GloBex\"}").brand, 1);
  EXPECT_EQ(accept(base + "\"a.b_c-9\"}").brand_name, "a.b_c-9");
  EXPECT_EQ(accept(base + "\"" + std::string(64, 'Z') + "\"}").brand_name, std::string(64, 'z'));
  for (const char* bad : {"\"\"", "\"-acme\"", "\"_acme\"", "\"ac me\"", "\"acm\\u00e9\"", "\"a/b\"", "42"}) {
    SCOPED_TRACE(bad);
    expect_schema(base + bad + "}", "brand: must match ^[a-z0-9][a-z0-9_.-]{0,63}$");
  }
  expect_schema(base + "\"" + std::string(65, 'a') + "\"}", "brand: must match");
}

TEST_F(DecoderTest, ChannelIsLowerCasedAndUnknownFoldsToOther) {
  const std::string base = R"({"id":"e","time":"2026-11-24T10:00:00Z","brand":"acme","type":"like","channel":)";
  EXPECT_EQ(vocab_.channel_name(accept(base + "\"LinkedIn\"}").channel), "linkedin");
  EXPECT_EQ(accept(base + "\"mastodon\"}").channel, vocab_.other_channel());
  EXPECT_EQ(accept(base + "\"\"}").channel, vocab_.other_channel());
  EXPECT_EQ(accept(base + "\"" + std::string(5000, 'w') + "\"}").channel, vocab_.other_channel());
  expect_schema(base + "null}", "channel: must be a string");
}

TEST_F(DecoderTest, TypeIsAnExactEnum) {
  for (size_t i = 0; i < kEventTypeCount; ++i) {
    const auto t = static_cast<EventType>(i);
    EXPECT_EQ(accept(event_json("", std::string(to_string(t)))).type, t);
  }
  for (const char* bad : {"Like", "likes", "", "lik", "idea ", "impressions"}) {
    SCOPED_TRACE(bad);
    expect_schema(event_json("", bad), "type: must be one of");
  }
}

TEST_F(DecoderTest, CountRange) {
  EXPECT_EQ(accept(event_json("\"count\":1")).count, 1);
  EXPECT_EQ(accept(event_json("\"count\":1000000000")).count, 1000000000);
  EXPECT_EQ(accept(event_json("\"count\":2.0")).count, 2);
  EXPECT_EQ(accept(event_json("\"count\":15e2")).count, 1500);
  for (const char* bad : {"0", "-1", "-0", "1000000001", "1.5", "\"5\"", "true", "null", "[1]",
                          "18446744073709551616", "1e400"}) {
    SCOPED_TRACE(bad);
    expect_schema(event_json(std::string("\"count\":") + bad), "count: must be an integer between 1 and 1000000000");
  }
}

TEST_F(DecoderTest, ReachAndFollowersAreNonNegativeInt64) {
  EXPECT_EQ(accept(event_json("\"reach\":9223372036854775807")).reach, INT64_MAX);
  EXPECT_EQ(accept(event_json("\"reach\":-0")).reach, 0);
  expect_schema(event_json("\"reach\":9223372036854775808"), "reach: must be an integer >= 0");
  expect_schema(event_json("\"reach\":-1"), "reach: must be an integer >= 0");
  expect_schema(event_json("\"reach\":9.3e18"), "reach: must be an integer >= 0");
  const Event e = accept(event_json(R"("actor":{"id":"a","followers":77})"));
  EXPECT_EQ(e.followers, 77);
  expect_schema(event_json(R"("actor":{"id":"a","followers":-3})"), "actor.followers: must be an integer >= 0");
  expect_schema(event_json(R"("actor":{"id":"a","followers":"3"})"), "actor.followers: must be an integer >= 0");
}

TEST_F(DecoderTest, ActorFields) {
  const Event e = accept(event_json(R"("actor":{"role":"manager","id":"u-1","extra":[1,{"x":null}]})"));
  EXPECT_TRUE(e.has_actor);
  EXPECT_EQ(e.actor_id, "u-1");
  EXPECT_EQ(e.actor_hash, XXH3_64bits("u-1", 3));
  EXPECT_EQ(e.role, Role::manager);
  EXPECT_EQ(e.followers, 0);
  EXPECT_EQ(accept(event_json(R"("actor":{"id":"u-1"})")).role, Role::anonymous);
  expect_schema(event_json(R"("actor":{})"), "actor.id: required");
  expect_schema(event_json(R"("actor":{"id":""})"), "actor.id: must be a string of 1-128");
  expect_schema(event_json(R"("actor":{"id":"u","role":"CEO"})"), "actor.role: must be one of");
  expect_schema(event_json(R"("actor":{"id":"u","role":"customer","role":"partner"})"), "actor.role: duplicate key");
  expect_schema(event_json(R"("actor":[])"), "actor: must be an object");
  expect_schema(event_json(R"("actor":null)"), "actor: must be an object");
}

TEST_F(DecoderTest, SentimentRange) {
  EXPECT_DOUBLE_EQ(accept(event_json("\"sentiment\":-1")).sentiment, -1.0);
  EXPECT_DOUBLE_EQ(accept(event_json("\"sentiment\":1")).sentiment, 1.0);
  EXPECT_TRUE(accept(event_json("\"sentiment\":-0.0")).has_sentiment);
  EXPECT_DOUBLE_EQ(accept(event_json("\"sentiment\":1e-400")).sentiment, 0.0);
  for (const char* bad : {"1.0000001", "-1.5", "\"0.5\"", "null", "1e400"}) {
    SCOPED_TRACE(bad);
    expect_schema(event_json(std::string("\"sentiment\":") + bad), "sentiment: must be a number between -1 and 1");
  }
}

TEST_F(DecoderTest, RatingDerivesSentimentWhenAbsent) {
  const double want[] = {-1.0, -0.5, 0.0, 0.5, 1.0};
  for (int rating = 1; rating <= 5; ++rating) {
    const Event e = accept(event_json("\"rating\":" + std::to_string(rating), "review"));
    EXPECT_TRUE(e.has_sentiment);
    EXPECT_DOUBLE_EQ(e.sentiment, want[rating - 1]);
  }
  // Explicit sentiment wins regardless of field order.
  EXPECT_DOUBLE_EQ(accept(event_json("\"rating\":1,\"sentiment\":0.3", "review")).sentiment, 0.3);
  EXPECT_DOUBLE_EQ(accept(event_json("\"sentiment\":0.3,\"rating\":1", "review")).sentiment, 0.3);
  for (const char* bad : {"0", "6", "4.5", "\"5\""}) {
    SCOPED_TRACE(bad);
    expect_schema(event_json(std::string("\"rating\":") + bad, "review"), "rating: must be an integer between 1 and 5");
  }
}

TEST_F(DecoderTest, ValueAndResponseTime) {
  const Event e = accept(event_json("\"value\":12.5,\"response_time_s\":0", "lead"));
  EXPECT_TRUE(e.has_value);
  EXPECT_DOUBLE_EQ(e.value, 12.5);
  EXPECT_TRUE(e.has_response_time);
  EXPECT_DOUBLE_EQ(e.response_time_s, 0.0);
  expect_schema(event_json("\"value\":-0.01"), "value: must be a number >= 0");
  expect_schema(event_json("\"value\":1e400"), "value: must be a number >= 0");
  expect_schema(event_json("\"response_time_s\":-1"), "response_time_s: must be a number >= 0");
  expect_schema(event_json("\"response_time_s\":\"fast\""), "response_time_s: must be a number >= 0");
}

TEST_F(DecoderTest, OptionalStringsAreTypeChecked) {
  accept(event_json(R"("campaign":"c","url":"https://x","text":"\u00e9\n\"q\"")"));
  // Ignored strings are validated without unescaping; the rules must match simdjson's.
  accept(event_json(R"("text":"a\"b\\c\/d\b\f\n\r\t\u00e9\uD83D\uDE00 end","url":"\\")"));
  accept(event_json(R"("x":"\"","y":["\\\""])"));
  for (const char* bad : {R"("\q")", R"("\u12")", R"("\u12g4")", R"("\udc00")", R"("\ud800")",
                          R"("\ud800\u0041")", R"("\ud800x")", R"("\ud800\udbff")", R"("\ud800\")"}) {
    SCOPED_TRACE(bad);
    expect_malformed(event_json(std::string("\"text\":") + bad));
    expect_malformed(event_json(std::string("\"unknown\":[") + bad + "]"));
  }
  expect_schema(event_json(R"("campaign":1)"), "campaign: must be a string");
  expect_schema(event_json(R"("url":{})"), "url: must be a string");
  expect_schema(event_json(R"("text":null)"), "text: must be a string");
}

TEST_F(DecoderTest, UnknownFieldsAreIgnoredButMustBeWellFormed) {
  accept(event_json(R"("x":{"a":[1,-2.5e3,true,false,null,"s",{}],"b":[]},"y":"\ud83d\ude00")"));
  accept(event_json("\"x\":true   \r\n,\"y\":null \t ,\"z\":[false  ,  null  ]  "));
  expect_malformed(event_json(R"("x":[1 2])"));
  expect_malformed(event_json(R"("x":{"a" 1})"));
  expect_malformed(event_json(R"("x":tru)"));
  expect_malformed(event_json(R"("x":nul)"));
  expect_malformed(event_json(R"("x":01)"));
  expect_malformed(event_json(R"("x":"\q")"));
  expect_malformed(event_json(R"("x":[1,])"));
}

TEST_F(DecoderTest, DuplicateKnownKeysAreRejected) {
  expect_schema(event_json(R"("id":"e-2")"), "id: duplicate key");
  expect_schema(event_json(R"("count":2,"count":3)"), "count: duplicate key");
  // Escaped spelling of the same key is the same key.
  expect_schema(event_json(R"("\u0069d":"e-2")"), "id: duplicate key");
  // Unknown keys may repeat: they are ignored anyway.
  accept(event_json(R"("x":1,"x":2)"));
}

TEST_F(DecoderTest, WrongTypeIsSchemaButGarbageInsideIsMalformed) {
  expect_schema(event_json(R"("count":{"a":[1,2]})"), "count:");
  expect_malformed(event_json(R"("count":{"a":[1 2]})"));
  expect_malformed(event_json(R"("actor":[1 2])"));
}

// ---------------------------------------------------------------------------------------------
// Time

struct TimeCase {
  const char* text;
  int64_t offset_from_ten_utc_ms;
};

TEST_F(DecoderTest, TimeFormatsAccepted) {
  const TimeCase cases[] = {
      {"\"2026-11-24T10:00:00Z\"", 0},
      {"\"2026-11-24t10:00:00z\"", 0},
      {"\"2026-11-24T10:00:00.1Z\"", 100},
      {"\"2026-11-24T10:00:00.12Z\"", 120},
      {"\"2026-11-24T10:00:00.123Z\"", 123},
      {"\"2026-11-24T10:00:00.123999999999Z\"", 123},  // truncated, never rounded
      {"\"2026-11-24T11:00:00+01:00\"", 0},
      {"\"2026-11-24T04:30:00-05:30\"", 0},
      {"\"2026-11-24T10:00:00.5+00:00\"", 500},
      {"\"2026-11-24T10:00:00-00:00\"", 0},
      {"\"2026-11-25T09:59:00+23:59\"", 0},
      {"1795514400000", 0},
      {"1795514400001.0", 1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    const Event e = accept(R"({"id":"e","brand":"acme","channel":"web","type":"like","time":)" +
                           std::string(c.text) + "}");
    EXPECT_EQ(to_epoch_ms(e.time), kTenUtcMs + c.offset_from_ten_utc_ms);
  }
}

TEST_F(DecoderTest, TimeCalendarEdges) {
  const std::pair<const char*, int64_t> cases[] = {
      {"\"1970-01-01T00:00:00Z\"", 0},
      {"\"1969-12-31T23:59:59.999Z\"", -1},
      {"\"2024-02-29T00:00:00Z\"", 1709164800000},
      {"\"2000-02-29T00:00:00Z\"", 951782400000},
      {"\"0001-01-01T00:00:00Z\"", -62135596800000},
      {"-62135596800000", -62135596800000},
  };
  for (const auto& [text, ms] : cases) {
    SCOPED_TRACE(text);
    EXPECT_EQ(to_epoch_ms(accept(R"({"id":"e","brand":"acme","channel":"web","type":"like","time":)" +
                                 std::string(text) + "}")
                              .time),
              ms);
  }
}

TEST_F(DecoderTest, TimeFormatsRejected) {
  for (const char* bad : {"\"2026-11-24T10:00:00\"", "\"2026-11-24 10:00:00Z\"", "\"2026-11-24\"",
                          "\"2026-11-24T10:00Z\"", "\"2026-11-24T10:00:00.Z\"", "\"2026-11-24T10:00:00+0100\"",
                          "\"2026-11-24T10:00:00+01\"", "\"2026-11-24T24:00:00Z\"", "\"2026-11-24T10:60:00Z\"",
                          "\"2026-11-24T10:00:60Z\"", "\"2026-13-01T10:00:00Z\"", "\"2026-00-01T10:00:00Z\"",
                          "\"2025-02-29T10:00:00Z\"", "\"1900-02-29T10:00:00Z\"", "\"0000-01-01T00:00:00Z\"",
                          "\"2026-11-24T10:00:00+24:00\"", "\"2026-11-24T10:00:00Z \"", "\"+2026-11-24T10:00:00Z\"",
                          "\"2026-11-24T10:00:00.12a Z\"", "\"\"", "null", "true", "{}", "1.5", "-62135596800001",
                          "253402300800000", "1e400"}) {
    SCOPED_TRACE(bad);
    expect_schema(R"({"id":"e","brand":"acme","channel":"web","type":"like","time":)" + std::string(bad) + "}",
                  "time: must be an RFC 3339 date-time or integer epoch milliseconds");
  }
}

// An independent reading of the same grammar (regex + <chrono> calendar) for the test below.
std::optional<int64_t> rfc3339_oracle(const std::string& text) {
  static const std::regex kGrammar(
      R"(^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$)");
  std::smatch m;
  if (!std::regex_match(text, m, kGrammar)) return std::nullopt;
  auto num = [&](int group) { return std::stoi(m[group].str()); };
  const std::chrono::year_month_day day{std::chrono::year(num(1)), std::chrono::month(static_cast<unsigned>(num(2))),
                                        std::chrono::day(static_cast<unsigned>(num(3)))};
  if (num(1) < 1 || !day.ok() || num(4) > 23 || num(5) > 59 || num(6) > 59) return std::nullopt;
  int64_t offset_min = 0;
  if (m[9].matched) {
    if (num(10) > 23 || num(11) > 59) return std::nullopt;
    offset_min = (m[9].str() == "+" ? 1 : -1) * (num(10) * 60 + num(11));
  }
  const int64_t ms = m[7].matched ? std::stoi((m[7].str() + "00").substr(0, 3)) : 0;
  const int64_t days = std::chrono::sys_days(day).time_since_epoch().count();
  return ((days * 24 + num(4)) * 60 + num(5) - offset_min) * 60'000 + int64_t{num(6)} * 1000 + ms;
}

// Every printable byte at every position of the usual time shapes (the decoder reads the fixed
// parts eight bytes at a time): accepted exactly when the oracle accepts, at the oracle's time.
TEST(DecoderTimeGrammar, EverySingleByteChangeAgreesWithAnIndependentParser) {
  const Vocabulary vocab = test_vocabulary();
  EventDecoder decoder(vocab, DecoderOptions{});
  // Far enough ahead that no year up to 9999 is rejected as a future time.
  const EventTime wall_now = from_epoch_ms(253402300799999);
  size_t accepted = 0, rejected = 0;
  for (const std::string base : {"2024-02-29T23:59:59.999Z", "2026-11-24T10:00:00Z", "2026-11-24t10:00:00.5+01:30",
                                 "1999-12-31T00:00:00.12345-00:00"}) {
    for (size_t pos = 0; pos < base.size(); ++pos) {
      for (int c = 0x20; c < 0x7F; ++c) {
        if (c == '"' || c == '\\') continue;  // would change the JSON around the string
        std::string text = base;
        text[pos] = static_cast<char>(c);
        const std::optional<int64_t> want = rfc3339_oracle(text);
        const std::string payload = R"({"id":"e","brand":"acme","channel":"web","type":"like","time":")" + text + "\"}";
        const auto got = decoder.decode(payload, {}, wall_now);
        SCOPED_TRACE(text);
        ASSERT_EQ(got.has_value(), want.has_value()) << (got ? "" : got.error().detail);
        if (want) {
          EXPECT_EQ(to_epoch_ms((*got)->time), *want);
          ++accepted;
        } else {
          EXPECT_TRUE(got.error().detail.starts_with("time: ")) << got.error().detail;
          ++rejected;
        }
      }
    }
  }
  // Both outcomes were exercised (a digit for a digit keeps most times valid).
  EXPECT_GT(accepted, 500u);
  EXPECT_GT(rejected, 5000u);
}

TEST_F(DecoderTest, FutureTimeIsRejectedAfterMaxFuture) {
  // wall clock 12:00:00Z, max_future 5 min: 12:05:00.000 is fine, one ms later is not.
  accept(with_value(event_json(), "time", "\"2026-11-24T12:05:00Z\""));
  const Rejection r = reject(with_value(event_json(), "time", "\"2026-11-24T12:05:01Z\""));
  EXPECT_EQ(r.reason, RejectReason::future_time);
  EXPECT_TRUE(r.detail.starts_with("time: ")) << r.detail;
  EXPECT_EQ(reject(R"({"id":"e","brand":"acme","channel":"web","type":"like","time":1795521900001})").reason,
            RejectReason::future_time);
  // Far past is not our business: watermarks deal with lateness.
  accept(R"({"id":"e","brand":"acme","channel":"web","type":"like","time":0})");
}

// ---------------------------------------------------------------------------------------------
// Brand policy, CloudEvents, limits

TEST_F(DecoderTest, UnknownBrandPolicy) {
  const std::string json = with_value(event_json(), "brand", "\"Initech\"");
  const Event e = accept(json);
  EXPECT_EQ(e.brand, vocab_.other_brand());
  EXPECT_EQ(e.brand_name, "initech");

  EventDecoder strict(vocab_, DecoderOptions{.unknown = UnknownBrandPolicy::reject});
  auto r = strict.decode(json, {}, from_epoch_ms(kWallNowMs));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().reason, RejectReason::unknown_brand);
  EXPECT_EQ(r.error().detail, "brand: 'initech' is not a configured brand");
  EXPECT_TRUE(strict.decode(event_json(), {}, from_epoch_ms(kWallNowMs)).has_value());
  // A brand literally named "other" is not configured either.
  EXPECT_FALSE(strict.decode(with_value(event_json(), "brand", "\"other\""), {}, from_epoch_ms(kWallNowMs)).has_value());
}

TEST_F(DecoderTest, CloudEventsStructuredTakesDataAndEnvelopeDefaults) {
  const Event e = accept(R"({"specversion":"1.0","type":"com.acme.x","source":"/s","id":"env-1",
      "time":"2026-11-24T10:00:00Z","data":{"brand":"acme","channel":"web","type":"share","count":2}})");
  EXPECT_EQ(e.id, "env-1");
  EXPECT_EQ(to_epoch_ms(e.time), kTenUtcMs);
  EXPECT_EQ(e.type, EventType::share);
  EXPECT_EQ(e.count, 2);
  // data before specversion, and data's own id/time win over the envelope.
  const Event inner = accept(R"({"data":{"id":"in","time":5,"brand":"acme","channel":"web","type":"like"},
      "id":"env","time":"2026-11-24T10:00:00Z","specversion":"1.0"})");
  EXPECT_EQ(inner.id, "in");
  EXPECT_EQ(to_epoch_ms(inner.time), 5);
}

TEST_F(DecoderTest, CloudEventsStructuredErrors) {
  expect_schema(R"({"specversion":"1.0","id":"e","time":"2026-11-24T10:00:00Z"})", "data: required");
  expect_schema(R"({"specversion":"1.0","id":"e","time":"2026-11-24T10:00:00Z","data":"x"})", "data: must be an object");
  expect_schema(R"({"specversion":"1.0","id":"e","time":"2026-11-24T10:00:00Z","data":{"brand":"acme","channel":"web","type":"lik"}})",
                "data.type: must be one of");
  expect_schema(R"({"specversion":"1.0","time":"2026-11-24T10:00:00Z","data":{"brand":"acme","channel":"web","type":"like"}})",
                "data.id: required");
  expect_schema(R"({"specversion":"1.0","id":"e","time":"yesterday","data":{"brand":"acme","channel":"web","type":"like"}})",
                "time: must be an RFC 3339");
  expect_schema(R"({"specversion":1,"id":"e","time":"2026-11-24T10:00:00Z","data":{"brand":"acme","channel":"web","type":"like"}})",
                "specversion: must be \"1.0\"");
  expect_schema(R"({"specversion":"1.0","id":"e","time":"2026-11-24T10:00:00Z","data":{},"data":{}})", "data: duplicate key");
}

TEST_F(DecoderTest, PlainEventMayCarryADataFieldWithoutSpecversion) {
  const Event e = accept(event_json(R"("data":{"anything":"goes","type":"nonsense"})"));
  EXPECT_EQ(e.type, EventType::like);
}

TEST_F(DecoderTest, CloudEventsBinaryModeUsesHeaders) {
  const std::string body = R"({"brand":"acme","channel":"web","type":"click"})";
  std::string id_storage = "hdr-1";
  const std::vector<HeaderView> headers = {{"ce_specversion", "1.0"},
                                           {"ce_id", id_storage},
                                           {"ce_time", "2026-11-24T10:00:00.250Z"},
                                           {"ce_type", "com.acme.click"}};
  auto r = decoder_.decode(body, headers, from_epoch_ms(kWallNowMs));
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  id_storage.assign("XXXXX");  // the event must not alias header memory
  EXPECT_EQ((*r)->id, "hdr-1");
  EXPECT_EQ(to_epoch_ms((*r)->time), kTenUtcMs + 250);
  EXPECT_EQ((*r)->type, EventType::click);

  // The body's own id/time win; a top-level specversion in the body is just an unknown field.
  const Event own = accept(event_json(R"("specversion":"9")"), headers);
  EXPECT_EQ(own.id, "e-1");
  EXPECT_EQ(to_epoch_ms(own.time), kTenUtcMs);

  auto missing_id = reject(body, {{"ce_specversion", "1.0"}, {"ce_time", "2026-11-24T10:00:00Z"}});
  EXPECT_EQ(missing_id.detail, "id: required");
  auto bad_time = reject(body, {{"ce_specversion", "1.0"}, {"ce_id", "x"}, {"ce_time", "noon"}});
  EXPECT_TRUE(bad_time.detail.starts_with("ce_time: ")) << bad_time.detail;
  auto bad_id = reject(body, {{"ce_specversion", "1.0"}, {"ce_id", "\xff"}, {"ce_time", "2026-11-24T10:00:00Z"}});
  EXPECT_TRUE(bad_id.detail.starts_with("ce_id: ")) << bad_id.detail;
  auto bad_version = reject(body, {{"ce_specversion", "0.3"}, {"ce_id", "x"}, {"ce_time", "2026-11-24T10:00:00Z"}});
  EXPECT_EQ(bad_version.detail, "ce_specversion: must be \"1.0\"");
}

TEST_F(DecoderTest, SizeLimitIsCheckedBeforeParsing) {
  EventDecoder small(vocab_, DecoderOptions{.max_message_bytes = 100});
  const std::string ok = event_json();
  ASSERT_LE(ok.size(), 100u);
  EXPECT_TRUE(small.decode(ok, {}, from_epoch_ms(kWallNowMs)).has_value());
  // Exactly at the limit is fine; one byte over is too_large even though it is garbage.
  std::string at_limit = ok + std::string(100 - ok.size(), ' ');
  EXPECT_TRUE(small.decode(at_limit, {}, from_epoch_ms(kWallNowMs)).has_value());
  auto r = small.decode(std::string(101, '{'), {}, from_epoch_ms(kWallNowMs));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().reason, RejectReason::too_large);
  EXPECT_EQ(r.error().detail, "$: 101 bytes exceeds max_message_bytes 100");
}

// ---------------------------------------------------------------------------------------------
// Hostile input: clean rejection, never a crash or a hang.

TEST_F(DecoderTest, EmptyAndWhitespace) {
  EXPECT_EQ(reject("").detail, "$: empty message");
  expect_malformed("   \n\t ");
}

TEST_F(DecoderTest, NotAnObject) {
  for (const char* doc : {"[]", "42", "\"str\"", "null", "true", "[{\"id\":1}]", "null\n", " null ", "true\n",
                          "\"s\"\n", "42\n", "1e400", "[]\n", "false\r\r\r\r", "true    ", "null \n\t "}) {
    SCOPED_TRACE(doc);
    expect_schema(doc, "$: must be a JSON object");
  }
  for (const char* doc : {"[1 2]", "4 2", "nul", "[", "}", "{", "{\"a\"}", "{\"a\":}", "{,}", "null x", "null null",
                          "nullx", "true x", "\"s\" x", "[] []", "{}}"}) {
    SCOPED_TRACE(doc);
    expect_malformed(doc);
  }
}

TEST_F(DecoderTest, DeepNestingIsRejectedNotRecursed) {
  EventDecoder big(vocab_, DecoderOptions{.max_message_bytes = 1 << 20});
  const std::string deep_array = std::string(100000, '[') + std::string(100000, ']');
  auto r1 = big.decode(deep_array, {}, from_epoch_ms(kWallNowMs));
  ASSERT_FALSE(r1.has_value());
  EXPECT_EQ(r1.error().reason, RejectReason::malformed_json);
  const std::string deep_field = event_json("\"x\":" + std::string(100000, '[') + std::string(100000, ']'));
  auto r2 = big.decode(deep_field, {}, from_epoch_ms(kWallNowMs));
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().reason, RejectReason::malformed_json);
  EXPECT_EQ(r2.error().detail, "$: nesting deeper than 64 levels");
  std::string deep_objects;
  for (int i = 0; i < 50000; ++i) deep_objects += "{\"a\":";
  deep_objects += "1" + std::string(50000, '}');
  auto r3 = big.decode(deep_objects, {}, from_epoch_ms(kWallNowMs));
  ASSERT_FALSE(r3.has_value());
  EXPECT_EQ(r3.error().reason, RejectReason::malformed_json);
  // Unbalanced deep nesting.
  auto r4 = big.decode(std::string(100000, '['), {}, from_epoch_ms(kWallNowMs));
  ASSERT_FALSE(r4.has_value());
  EXPECT_EQ(r4.error().reason, RejectReason::malformed_json);
  // Moderate nesting in unknown fields is fine.
  accept(event_json("\"x\":" + std::string(60, '[') + std::string(60, ']')));
}

TEST_F(DecoderTest, HugeNumbers) {
  accept(event_json("\"x\":1e400,\"y\":-1e400,\"z\":123456789012345678901234567890"));
  expect_schema(event_json("\"count\":1e400"), "count:");
  expect_schema(event_json("\"reach\":123456789012345678901234567890"), "reach:");
  expect_schema(event_json("\"sentiment\":-1e400"), "sentiment:");
  expect_malformed(event_json("\"count\":1e"));
  expect_malformed(event_json("\"count\":-"));
  expect_malformed(event_json("\"count\":1.e5"));
  expect_malformed(event_json("\"count\":+1"));
  expect_malformed(event_json("\"count\":0x10"));
  expect_malformed(event_json("\"x\":Infinity"));
}

TEST_F(DecoderTest, NegativeZero) {
  EXPECT_EQ(accept(event_json("\"reach\":-0")).reach, 0);
  expect_schema(event_json("\"count\":-0"), "count:");
  const Event e = accept(event_json("\"sentiment\":-0"));
  EXPECT_TRUE(e.has_sentiment);
  EXPECT_EQ(e.sentiment, 0.0);
}

TEST_F(DecoderTest, NulBytes) {
  // Escaped NUL is a legal character in a string.
  const Event e = accept(with_value(event_json(), "id", "\"a\\u0000b\""));
  EXPECT_EQ(e.id, std::string_view("a\0b", 3));
  // Raw NUL inside a string is an unescaped control character; outside, it is not JSON.
  expect_malformed(event_json().replace(8, 1, std::string(1, '\0')));
  expect_malformed(event_json() + std::string(1, '\0'));
  expect_malformed(std::string(1, '\0') + event_json());
  expect_malformed(std::string(64, '\0'));
}

TEST_F(DecoderTest, InvalidUtf8) {
  for (const char* bad : {"\xff", "\xc3", "\xc3\x28", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf"}) {
    SCOPED_TRACE(::testing::PrintToString(std::string(bad)));
    const Rejection in_id = reject(with_value(event_json(), "id", std::string("\"") + bad + "\""));
    EXPECT_EQ(in_id.reason, RejectReason::malformed_json);
    EXPECT_EQ(in_id.detail, "$: invalid UTF-8");
    EXPECT_EQ(reject(event_json(std::string("\"x\":\"") + bad + "\"")).reason, RejectReason::malformed_json);
  }
  expect_malformed(event_json(R"("x":"\ud800")"));  // lone surrogate escape
}

TEST_F(DecoderTest, TenMegabytes) {
  const std::string big = event_json("\"text\":\"" + std::string(10 << 20, 'a') + "\"");
  const Rejection r = reject(big);
  EXPECT_EQ(r.reason, RejectReason::too_large);
  // With a limit that admits it, it decodes (and the parser grows to fit).
  EventDecoder roomy(vocab_, DecoderOptions{.max_message_bytes = 11 << 20});
  EXPECT_TRUE(roomy.decode(big, {}, from_epoch_ms(kWallNowMs)).has_value());
  auto junk = roomy.decode(std::string(10 << 20, '['), {}, from_epoch_ms(kWallNowMs));
  ASSERT_FALSE(junk.has_value());
  EXPECT_EQ(junk.error().reason, RejectReason::malformed_json);
}

TEST_F(DecoderTest, ReusedDecoderDoesNotLeakStateBetweenMessages) {
  const Event first = accept(event_json(R"("actor":{"id":"u","role":"employee","followers":9},"sentiment":0.5,"count":7,"value":3)"));
  EXPECT_EQ(first.count, 7);
  const Event second = accept(event_json());
  EXPECT_FALSE(second.has_actor);
  EXPECT_EQ(second.role, Role::anonymous);
  EXPECT_EQ(second.followers, 0);
  EXPECT_EQ(second.count, 1);
  EXPECT_FALSE(second.has_sentiment);
  EXPECT_FALSE(second.has_value);
  // A rejection in between does not poison the next message either.
  reject("{\"id\":");
  EXPECT_EQ(accept(event_json()).id, "e-1");
}

TEST(RejectReason, Names) {
  EXPECT_EQ(to_string(RejectReason::malformed_json), "malformed_json");
  EXPECT_EQ(to_string(RejectReason::schema), "schema");
  EXPECT_EQ(to_string(RejectReason::too_large), "too_large");
  EXPECT_EQ(to_string(RejectReason::future_time), "future_time");
  EXPECT_EQ(to_string(RejectReason::unknown_brand), "unknown_brand");
}

}  // namespace
}  // namespace sp
