#pragma once
// The decoded, validated social interaction event (SPEC 1) as every operator sees it.
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "operators/time.h"

namespace sp {

// Persisted by position (window panes, packed counters: Measures' dense and packed layouts): a
// new type is appended, never inserted or reordered.
enum class EventType : uint8_t {
  impression,
  like,
  comment,
  share,
  mention,
  reply,
  follow,
  unfollow,
  click,
  lead,
  review,
  idea,
};
inline constexpr size_t kEventTypeCount = 12;

enum class Role : uint8_t { customer, employee, partner, manager, prospect, anonymous };
inline constexpr size_t kRoleCount = 6;

std::string_view to_string(EventType t);
std::string_view to_string(Role r);
std::optional<EventType> parse_event_type(std::string_view s);
std::optional<Role> parse_role(std::string_view s);

// Brands and channels are interned to small indexes by a Vocabulary: configured names first, the
// last index is `other`.
using BrandIndex = uint16_t;
using ChannelIndex = uint16_t;

// Why a consumed message was not an event (SPEC 1): the DLQ `sp_error_reason` header and a metric
// label, so the set stays closed.
enum class RejectReason : uint8_t { malformed_json, schema, too_large, future_time, unknown_brand };
inline constexpr size_t kRejectReasonCount = 5;
std::string_view to_string(RejectReason);

struct Event {
  EventTime time{};
  BrandIndex brand = 0;
  ChannelIndex channel = 0;
  EventType type = EventType::impression;
  Role role = Role::anonymous;
  bool has_actor = false;
  bool has_sentiment = false;  // true when `sentiment` was given or derived from `rating`
  bool has_value = false;
  bool has_response_time = false;
  int64_t count = 1;
  int64_t reach = 0;
  int64_t followers = 0;
  double sentiment = 0.0;
  double value = 0.0;
  double response_time_s = 0.0;
  uint64_t actor_hash = 0;  // XXH3-64 of actor.id, valid when has_actor
  // Views into the message being processed; valid only during process(). Copy to keep.
  std::string_view id;
  std::string_view actor_id;
  std::string_view brand_name;  // lower-cased brand as sent (before folding to `other`)
  // `tags` (SPEC 1, optional): the first kMaxTags topics, as sent; never metric labels.
  static constexpr size_t kMaxTags = 4;
  std::array<std::string_view, kMaxTags> tags{};
  uint8_t tag_count = 0;
};

}  // namespace sp
