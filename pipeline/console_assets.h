#pragma once
// The web console's files (web/), compiled into the binary by cmake/EmbedAssets.cmake: `/` is the
// page, the rest its script and style. Nothing is fetched from the internet at run time.
#include <string_view>

namespace sp {

struct ConsoleAsset {
  std::string_view path;  // URL path, e.g. "/" or "/console.js"
  std::string_view content_type;
  std::string_view body;
};

// nullptr when `path` is not a console file.
const ConsoleAsset* find_console_asset(std::string_view path);

}  // namespace sp
