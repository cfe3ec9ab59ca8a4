#pragma once
// Kafka message value -> validated Event (SPEC 1), or a Rejection naming the DLQ reason and the
// offending field. simdjson stays behind a pimpl so that including this header is cheap.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

#include "operators/event.h"
#include "operators/time.h"
#include "operators/vocabulary.h"
#include "pipeline/config.h"

namespace sp {

struct Rejection {
  RejectReason reason;
  std::string detail;  // "field path: problem", e.g. "actor.followers: must be an integer >= 0"
};

struct HeaderView {
  std::string_view key;
  std::string_view value;
};

struct DecoderOptions {
  size_t max_message_bytes = 65536;
  Millis max_future{300000};
  UnknownBrandPolicy unknown = UnknownBrandPolicy::other;
};

// Decodes and validates one message at a time. Not thread-safe: one per thread. Buffers are
// reused, so an accepted message costs no heap allocation once warmed up.
//
// Contract details (see schemas/README.md for the full list):
// - Duplicate keys: a known field that appears twice in the same object is a `schema` rejection
//   ("brand: duplicate key"), so no two consumers can disagree on which value counts.
// - Unknown fields are ignored but must still be well-formed JSON nested at most 64 levels deep.
// - Lower-casing (brand, channel) is ASCII-only.
// - CloudEvents: binary mode (header `ce_specversion`) wins over structured mode (top-level
//   `specversion`); structured-mode paths are reported as `data.<field>`.
class EventDecoder {
 public:
  EventDecoder(const Vocabulary& vocab, DecoderOptions options);
  ~EventDecoder();
  EventDecoder(EventDecoder&&) noexcept;
  EventDecoder& operator=(EventDecoder&&) noexcept;
  EventDecoder(const EventDecoder&) = delete;
  EventDecoder& operator=(const EventDecoder&) = delete;

  // The returned Event (and its string_views) stays valid until the next decode() call.
  tl::expected<const Event*, Rejection> decode(std::string_view payload,
                                               std::span<const HeaderView> headers,
                                               EventTime wall_now);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sp
