// libFuzzer target for EventDecoder (STYLE 11): any bytes must end in a clean accept or reject,
// and an accepted event must satisfy every SPEC 1 rule. Accepted events also go through the
// Deduplicator so its hashing and expiry see hostile ids and times.
// Built and run by scripts/fuzz-decoder.sh.
#include <simdjson.h>

#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string_view>
#include <vector>

#include "operators/deduplicator.h"
#include "pipeline/decoder.h"

namespace {

constexpr int64_t kWallNowMs = 1795521600000;  // 2026-11-24T12:00:00Z, as the examples

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

void check_event(const sp::Event& e, const sp::Vocabulary& vocab, const sp::DecoderOptions& options) {
  if (e.id.empty() || e.id.size() > 512 || !simdjson::validate_utf8(e.id.data(), e.id.size())) violated("id");
  if (e.brand_name.empty() || e.brand_name.size() > 64) violated("brand length");
  for (size_t i = 0; i < e.brand_name.size(); ++i) {
    const char c = e.brand_name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    (i > 0 && (c == '_' || c == '.' || c == '-'));
    if (!ok) violated("brand pattern");
  }
  if (e.brand >= vocab.brand_count() || e.channel >= vocab.channel_count()) violated("vocabulary index");
  if (e.count < 1 || e.count > 1'000'000'000) violated("count");
  if (e.reach < 0 || e.followers < 0) violated("reach/followers");
  if (e.has_sentiment && !(e.sentiment >= -1.0 && e.sentiment <= 1.0)) violated("sentiment");
  if (e.has_value && !(e.value >= 0.0)) violated("value");
  if (e.has_response_time && !(e.response_time_s >= 0.0)) violated("response_time_s");
  if (e.has_actor && (e.actor_id.empty() || !simdjson::validate_utf8(e.actor_id.data(), e.actor_id.size()))) {
    violated("actor id");
  }
  if (sp::to_epoch_ms(e.time) > kWallNowMs + options.max_future.count()) violated("future time");
  if (sp::to_epoch_ms(e.time) < -62135596800000 - 24 * 3600 * 1000LL) violated("time too old");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sp::Vocabulary vocab({{"acme", true}, {"globex", false}},
                                    {"twitter", "facebook", "web", "reviews"});
  static const sp::DecoderOptions lenient{};
  static const sp::DecoderOptions strict{.max_message_bytes = 4096, .max_future = sp::Millis{0},
                                         .unknown = sp::UnknownBrandPolicy::reject};
  static sp::EventDecoder plain(vocab, lenient);
  static sp::EventDecoder strict_decoder(vocab, strict);
  static sp::Deduplicator dedup(sp::Millis{60'000});

  const std::string_view payload(reinterpret_cast<const char*>(data), size);
  const auto now = sp::from_epoch_ms(kWallNowMs);
  static const std::vector<sp::HeaderView> binary = {
      {"ce_specversion", "1.0"}, {"ce_id", "fuzz-1"}, {"ce_time", "2026-11-24T10:00:00Z"}};

  auto first = plain.decode(payload, {}, now);
  if (first) {
    check_event(**first, vocab, lenient);
    dedup.is_duplicate(**first);
  } else if (first.error().detail.empty()) {
    violated("empty detail");
  }
  // Same bytes, same answer: no state may leak from one decode into the next.
  const bool accepted = first.has_value();
  const std::string detail = accepted ? std::string() : first.error().detail;
  auto again = plain.decode(payload, {}, now);
  if (again.has_value() != accepted || (!accepted && again.error().detail != detail)) violated("determinism");

  // Differential oracle: simdjson's DOM parser validates the whole document eagerly. What we
  // accept must be JSON to it (numbers a double cannot hold aside), and what we call malformed
  // must not be JSON it accepts at a depth below our 64-level limit.
  static simdjson::dom::parser dom(70000 + 64);
  static const bool dom_ready = dom.allocate(70000 + 64, 60) == simdjson::SUCCESS;
  if (dom_ready && size <= 70000) {
    simdjson::dom::element root;
    const simdjson::error_code e = dom.parse(reinterpret_cast<const char*>(data), size).get(root);
    if (accepted && e && e != simdjson::NUMBER_ERROR && e != simdjson::DEPTH_ERROR) {
      violated("accepted what simdjson DOM rejects");
    }
    if (!accepted && first.error().reason == sp::RejectReason::malformed_json && !e) {
      violated("malformed_json for a document simdjson DOM accepts");
    }
  }

  if (auto r = plain.decode(payload, binary, now)) check_event(**r, vocab, lenient);
  if (auto r = strict_decoder.decode(payload, {}, now)) check_event(**r, vocab, strict);
  return 0;
}
