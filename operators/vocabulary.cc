#include "operators/vocabulary.h"

#include <algorithm>

namespace sp {

Vocabulary::Vocabulary(std::vector<BrandInfo> brands, std::vector<std::string> channels)
    : brands_(std::move(brands)), channels_(std::move(channels)) {
  std::erase_if(brands_, [](const BrandInfo& b) { return b.name == "other"; });
  std::erase(channels_, "other");
  brands_.push_back({"other", false});
  channels_.push_back("other");
}

BrandIndex Vocabulary::brand(std::string_view lower_name, bool* known) const {
  // Linear scan: the configured list is short and this beats hashing for < ~16 entries.
  for (size_t i = 0; i + 1 < brands_.size(); ++i) {
    if (brands_[i].name == lower_name) {
      if (known) *known = true;
      return static_cast<BrandIndex>(i);
    }
  }
  if (known) *known = false;
  return other_brand();
}

ChannelIndex Vocabulary::channel(std::string_view lower_name) const {
  for (size_t i = 0; i + 1 < channels_.size(); ++i) {
    if (channels_[i] == lower_name) return static_cast<ChannelIndex>(i);
  }
  return other_channel();
}

std::optional<BrandIndex> Vocabulary::find_brand(std::string_view name) const {
  for (size_t i = 0; i < brands_.size(); ++i) {
    if (brands_[i].name == name) return static_cast<BrandIndex>(i);
  }
  return std::nullopt;
}

std::optional<ChannelIndex> Vocabulary::find_channel(std::string_view name) const {
  for (size_t i = 0; i < channels_.size(); ++i) {
    if (channels_[i] == name) return static_cast<ChannelIndex>(i);
  }
  return std::nullopt;
}

}  // namespace sp
