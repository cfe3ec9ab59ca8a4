#include "operators/event.h"

namespace sp {
namespace {
constexpr std::array<std::string_view, kEventTypeCount> kTypeNames = {
    "impression", "like",     "comment", "share", "mention", "reply",
    "follow",     "unfollow", "click",   "lead",  "review",  "idea"};
constexpr std::array<std::string_view, kRoleCount> kRoleNames = {
    "customer", "employee", "partner", "manager", "prospect", "anonymous"};
}  // namespace

std::string_view to_string(EventType t) { return kTypeNames[static_cast<size_t>(t)]; }
std::string_view to_string(Role r) { return kRoleNames[static_cast<size_t>(r)]; }

std::optional<EventType> parse_event_type(std::string_view s) {
  for (size_t i = 0; i < kTypeNames.size(); ++i) {
    if (kTypeNames[i] == s) return static_cast<EventType>(i);
  }
  return std::nullopt;
}

std::optional<Role> parse_role(std::string_view s) {
  for (size_t i = 0; i < kRoleNames.size(); ++i) {
    if (kRoleNames[i] == s) return static_cast<Role>(i);
  }
  return std::nullopt;
}

std::string_view to_string(RejectReason r) {
  switch (r) {
    case RejectReason::malformed_json:
      return "malformed_json";
    case RejectReason::schema:
      return "schema";
    case RejectReason::too_large:
      return "too_large";
    case RejectReason::future_time:
      return "future_time";
    case RejectReason::unknown_brand:
      return "unknown_brand";
  }
  return "unknown";
}

}  // namespace sp
