#pragma once
// Error model shared by every layer: fallible calls return Result<T> with an error kind that tells
// the caller what to do (retry, divert the record, or stop).
#include <string>
#include <tl/expected.hpp>
#include <utility>

namespace sp {

// retryable: try again later (I/O, broker); invalid_input: the input (a config value, a record) is
// wrong and retrying cannot help; fatal: stop.
enum class ErrorKind { retryable, invalid_input, fatal };

struct Error {
  ErrorKind kind = ErrorKind::fatal;
  std::string message;
};

template <typename T>
using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> make_error(ErrorKind kind, std::string message) {
  return tl::unexpected<Error>(Error{kind, std::move(message)});
}

}  // namespace sp
