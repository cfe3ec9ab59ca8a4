#pragma once
// Why a reputation alert fired (issue #16 item 2): the top contributors to a brand's negative
// score in the alert's bucket against the brand's baseline, by channel, event type, author (by
// reach) and tag, computed in-stream with bounded memory. Never metric labels: authors and tags
// are unbounded sets, so they only ever appear in the alert record.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "operators/byte_codec.h"
#include "operators/event.h"
#include "operators/vocabulary.h"

namespace sp {

// Space-saving frequent-items sketch (Metwally, Agrawal, El Abbadi 2005): at most `capacity`
// keys; a new key beyond that replaces the lightest one and inherits its weight, so every key
// whose true weight exceeds total/capacity is kept and no weight is under-estimated.
// Deterministic: ties are broken by key.
class SpaceSaving {
 public:
  struct Entry {
    std::string key;
    double weight = 0.0;
    int64_t reach = 0;  // the largest reach seen with the key (authors)
  };
  explicit SpaceSaving(size_t capacity = 8) : capacity_(capacity) {}
  void add(std::string_view key, double weight, int64_t reach = 0);
  void merge(const SpaceSaving& other);
  void scale(double factor);  // exponential decay of a baseline
  const std::vector<Entry>& entries() const { return entries_; }
  double weight_of(std::string_view key) const;
  // Sorted by key: byte-identical for identical content. `packed`: counts, lengths and reach as
  // varints (issue #20: a partition's explanation sketches are rewritten every checkpoint);
  // otherwise 8 bytes each (the baseline, and partition state written before).
  void serialize(std::string& out, bool packed = false) const;
  bool deserialize(byte_codec::Reader& in, bool packed = false);

 private:
  size_t capacity_;
  std::vector<Entry> entries_;
};

// One brand's negative score in one minute, split by contributor. Bounded: one double per
// channel and type, two sketches of 8 keys.
struct ContributionSketch {
  std::vector<double> channels;  // by ChannelIndex
  std::array<double, kEventTypeCount> types{};
  SpaceSaving authors{8};
  SpaceSaving tags{8};

  explicit ContributionSketch(size_t channel_count = 0) : channels(channel_count, 0.0) {}
  void add(const Event& e, double negative);
  void merge(const ContributionSketch& other);
  bool empty() const;
  // Channels and types by name (configuration changes keep the meaning); `packed` as for
  // SpaceSaving.
  void serialize(std::string& out, const Vocabulary& vocabulary, bool packed = false) const;
  bool deserialize(byte_codec::Reader& in, const Vocabulary& vocabulary, bool packed = false);
};

// A brand's usual negative score per minute by channel, type and tag (EWMA over the minutes that
// were not anomalous).
class ExplainBaseline {
 public:
  explicit ExplainBaseline(size_t channel_count = 0) : mean_(channel_count) {}
  void update(const ContributionSketch& minute, double alpha);
  // {"channels":[...],"types":[...],"authors":[...],"tags":[...]}: the top 3 of each with their
  // excess over the baseline (authors: the 3 with the largest reach among the minute's
  // negative authors).
  void append_explanation(std::string& out, const ContributionSketch& minute,
                          const Vocabulary& vocabulary) const;
  void serialize(std::string& out, const Vocabulary& vocabulary) const;
  bool deserialize(byte_codec::Reader& in, const Vocabulary& vocabulary);

 private:
  ContributionSketch mean_;  // authors unused
  SpaceSaving tag_mean_{32};
};

}  // namespace sp
