#pragma once
// The refusal of a stored value whose format version this build does not read (a newer build
// wrote it, or the bytes are not what the key says): what the value is, the version found and the
// versions read, in one wording for every owner of state. Fatal: a reader never guesses at a
// format (README "State formats").
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace sp {

// `what` names the value, e.g. "kpi_counters: state key 'cells'"; this build reads versions
// `oldest` to `newest`.
inline tl::unexpected<Error> unreadable_format(std::string_view what, uint64_t version,
                                               uint64_t oldest, uint64_t newest) {
  const std::string reads =
      oldest == newest ? "version " + std::to_string(newest)
                       : "versions " + std::to_string(oldest) + " to " + std::to_string(newest);
  return make_error(ErrorKind::fatal, std::string(what) + " has format version " +
                                          std::to_string(version) + ", this build reads " + reads);
}

}  // namespace sp
