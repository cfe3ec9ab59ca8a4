#include "operators/keyed_state.h"

#include <cstdio>

namespace sp {

std::string_view to_string(DroppedKind kind) {
  switch (kind) {
    case DroppedKind::brand:
      return "brand";
    case DroppedKind::channel:
      return "channel";
    case DroppedKind::window:
      return "window";
    case DroppedKind::type:
      return "type";
  }
  return "unknown";
}

std::string state_scope(std::string_view owner, PartitionId partition) {
  std::string out(owner);
  if (partition == kGlobalPartition) return out.append("/global/");
  char buf[16];
  std::snprintf(buf, sizeof buf, "/%08x/", static_cast<uint32_t>(partition.value));
  return out.append(buf);
}

void ScopedStateWriter::put(std::string_view key, std::string_view value) {
  key_.assign(prefix_).append(key);
  inner_.put(key_, value);
}

void ScopedStateWriter::remove(std::string_view key) {
  key_.assign(prefix_).append(key);
  inner_.remove(key_);
}

Result<std::optional<std::string>> ScopedStateReader::get(std::string_view key) {
  return inner_.get(prefix_ + std::string(key));
}

Status ScopedStateReader::scan(std::string_view prefix, const Visitor& visit) {
  const size_t strip = prefix_.size();
  return inner_.scan(prefix_ + std::string(prefix),
                     [&](std::string_view key, std::string_view value) {
                       return visit(key.substr(strip), value);
                     });
}

void ScopedStateReader::drop(std::string_view key, DroppedKind kind, std::string_view name) {
  inner_.drop(prefix_ + std::string(key), kind, name);
}

void MemoryState::put(std::string_view key, std::string_view value) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    entries_.emplace(std::string(key), std::string(value));
  } else {
    it->second.assign(value);
  }
}

void MemoryState::remove(std::string_view key) {
  if (auto it = entries_.find(key); it != entries_.end()) entries_.erase(it);
}

Result<std::optional<std::string>> MemoryState::get(std::string_view key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::optional<std::string>{};
  return std::optional<std::string>{it->second};
}

Status MemoryState::scan(std::string_view prefix, const Visitor& visit) {
  // A copy: the visitor may drop() (remove) the key it is given.
  std::vector<std::pair<std::string, std::string>> rows;
  for (auto it = entries_.lower_bound(prefix); it != entries_.end(); ++it) {
    if (std::string_view(it->first).substr(0, prefix.size()) != prefix) break;
    rows.emplace_back(it->first, it->second);
  }
  for (const auto& [key, value] : rows) {
    if (auto s = visit(key, value); !s) return s;
  }
  return {};
}

void MemoryState::drop(std::string_view key, DroppedKind kind, std::string_view name) {
  dropped_.push_back(Dropped{std::string(key), kind, std::string(name)});
  remove(key);
}

void MemoryState::note_dropped(DroppedKind kind, std::string_view name) {
  dropped_.push_back(Dropped{std::string(), kind, std::string(name)});
}

}  // namespace sp
