#include "pipeline/checkpoint_state.h"

#include <spdlog/spdlog.h>

namespace sp {

Status check_state_format(CheckpointStore& store, const std::string& path) {
  auto format = store.get(Column::meta, "state_format");
  if (!format) return tl::unexpected(format.error());
  if (*format) {
    if (**format == std::to_string(kStateFormat)) return {};
    return make_error(ErrorKind::fatal,
                      "state in " + path + " has format version " + **format +
                          "; this build reads version " + std::to_string(kStateFormat) +
                          " (move the directory away to rebuild state from the input topics)");
  }
  // Format 1 wrote no version, its instance watermark in meta and positional snapshots.
  auto legacy = store.get(Column::meta, "watermark");
  if (!legacy) return tl::unexpected(legacy.error());
  auto any_state = store.scan(Column::state, "");
  if (!any_state) return tl::unexpected(any_state.error());
  if (*legacy || !any_state->empty()) {
    return make_error(ErrorKind::fatal,
                      "state in " + path +
                          " has format version 1 (positional snapshots, before named keys); this "
                          "build reads version " +
                          std::to_string(kStateFormat) +
                          " and cannot map it: move the directory away to rebuild state from the "
                          "input topics");
  }
  return {};
}

void mark_state_format(CheckpointStore::Batch& batch) {
  batch.put(Column::meta, "state_format", std::to_string(kStateFormat));
}

Result<std::optional<std::string>> StoreStateReader::get(std::string_view key) {
  return store_.get(Column::state, key);
}

Status StoreStateReader::scan(std::string_view prefix, const Visitor& visit) {
  auto rows = store_.scan(Column::state, prefix);
  if (!rows) return tl::unexpected(rows.error());
  for (const auto& [key, value] : *rows) {
    if (auto s = visit(key, value); !s) return s;
  }
  return {};
}

void StoreStateReader::drop(std::string_view key, DroppedKind kind, std::string_view name) {
  dropped_keys_.emplace_back(key);
  log_once(kind, name);
}

void StoreStateReader::note_dropped(DroppedKind kind, std::string_view name) {
  log_once(kind, name);
}

void StoreStateReader::log_once(DroppedKind kind, std::string_view name) {
  if (!logged_.emplace(kind, std::string(name)).second) return;
  spdlog::warn("msg=\"state of a {} no longer configured is dropped\" {}={}", to_string(kind),
               to_string(kind), name);
}

void StoreStateReader::write_drops(CheckpointStore::Batch& batch) {
  for (const auto& key : dropped_keys_) batch.remove(Column::state, key);
  dropped_keys_.clear();
}

}  // namespace sp
