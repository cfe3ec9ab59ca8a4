#pragma once
// Interns the bounded label sets: configured brands and channels, each followed by `other`.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "operators/event.h"

namespace sp {

struct BrandInfo {
  std::string name;
  bool own = false;
};

class Vocabulary {
 public:
  Vocabulary(std::vector<BrandInfo> brands, std::vector<std::string> channels);

  size_t brand_count() const { return brands_.size(); }  // includes `other`
  size_t channel_count() const { return channels_.size(); }
  BrandIndex other_brand() const { return static_cast<BrandIndex>(brands_.size() - 1); }
  ChannelIndex other_channel() const { return static_cast<ChannelIndex>(channels_.size() - 1); }
  // Lookups take already lower-cased names; unknown names map to `other`.
  BrandIndex brand(std::string_view lower_name, bool* known = nullptr) const;
  ChannelIndex channel(std::string_view lower_name) const;
  // Exact lookups for restoring state by name: nullopt for a name that is neither configured nor
  // `other` (a brand or channel removed from the configuration).
  std::optional<BrandIndex> find_brand(std::string_view name) const;
  std::optional<ChannelIndex> find_channel(std::string_view name) const;
  const std::string& brand_name(BrandIndex b) const { return brands_[b].name; }
  bool brand_is_own(BrandIndex b) const { return brands_[b].own; }
  // Configured (tracked) brands, excluding `other`: the share-of-voice denominator.
  bool brand_is_tracked(BrandIndex b) const { return b < other_brand(); }
  const std::string& channel_name(ChannelIndex c) const { return channels_[c]; }

 private:
  std::vector<BrandInfo> brands_;
  std::vector<std::string> channels_;
};

}  // namespace sp
