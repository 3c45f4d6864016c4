// Errors raised by the native core. Python maps them to TensorzipError subclasses
// and adds the file, tensor and offset it knows about.
#pragma once

#include <stdexcept>
#include <string>

namespace tensorzip {

// The bytes handed to a decoder are not a stream this core wrote: truncated,
// flipped, or crafted. Always raised instead of reading out of bounds.
class CorruptStreamError : public std::runtime_error {
 public:
  explicit CorruptStreamError(const std::string& what) : std::runtime_error(what) {}
};

// The caller passed arguments that cannot be right (wrong buffer sizes, a width
// the core does not know). Checked in release builds too.
class InvalidArgumentError : public std::invalid_argument {
 public:
  explicit InvalidArgumentError(const std::string& what) : std::invalid_argument(what) {}
};

inline void require(bool condition, const char* message) {
  if (!condition) throw InvalidArgumentError(message);
}

// A literal message: taking it as std::string would allocate on every call, failing
// or not (measured: 10% of a chunk's decode).
inline void require_stream(bool condition, const char* message) {
  if (!condition) throw CorruptStreamError(message);
}

inline void require_stream(bool condition, const std::string& message) {
  if (!condition) throw CorruptStreamError(message);
}

// As require_stream, with the message built only on failure (a message with numbers in it).
template <typename MakeMessage>
inline void require_stream_or(bool condition, MakeMessage make_message) {
  if (!condition) throw CorruptStreamError(make_message());
}

}  // namespace tensorzip
