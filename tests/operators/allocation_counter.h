#pragma once
// Counts global operator new calls in the test binary, so tests can prove a hot path is
// allocation-free. Defined in its own translation unit so the replacement is never inlined.
#include <cstdint>

namespace sp::testing {
uint64_t allocation_count();
}
