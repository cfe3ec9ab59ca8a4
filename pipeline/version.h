#pragma once
#include <string_view>

namespace sp {
// Set by CMake from project(VERSION ...).
inline constexpr std::string_view kSocialpulseVersion = SOCIALPULSE_VERSION;
}  // namespace sp
