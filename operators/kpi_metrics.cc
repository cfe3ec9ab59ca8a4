#include "operators/kpi_metrics.h"

#include <charconv>
#include <chrono>
#include <cstdio>

namespace sp {

void append_double(std::string& out, double v) {
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, res.ptr);
}

}  // namespace sp
