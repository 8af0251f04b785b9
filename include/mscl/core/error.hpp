/// \file error.hpp
/// \brief Typed exceptions and the always-on boundary check `MSCL_CHECK`.
///
/// Public functions check their inputs and throw a subclass of `mscl::error` whose message names
/// the function, what it expected and what arrived (shapes, files, lines). Internal invariants use
/// `MSCL_ASSERT`, compiled out unless `MSCL_ENABLE_ASSERTS` is defined.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace mscl {

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// Wrong rank, shape, dtype or an empty tensor.
class shape_error : public error { public: using error::error; };
/// A value out of its allowed range (a negative stride, a probability above 1, ...).
class value_error : public error { public: using error::error; };
/// A missing, unreadable, truncated or malformed file.
class io_error : public error { public: using error::error; };
/// A configuration key that is unknown or has the wrong type.
class config_error : public error { public: using error::error; };
/// A numerical failure (non-finite loss, ...).
class numeric_error : public error { public: using error::error; };

namespace detail {
template <class Error>
[[noreturn]] inline void throw_error(const std::string& message) { throw Error(message); }
}  // namespace detail

}  // namespace mscl

/// Always-on check at API boundaries: `MSCL_CHECK(cond, mscl::shape_error, "conv3d: ..." << x);`
#define MSCL_CHECK(cond, ErrorType, stream_expr)                                   \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::ostringstream mscl_check_os_;                                           \
      mscl_check_os_ << stream_expr;                                               \
      ::mscl::detail::throw_error<ErrorType>(mscl_check_os_.str());                \
    }                                                                              \
  } while (0)

#ifdef MSCL_ENABLE_ASSERTS
#define MSCL_ASSERT(cond)                                                                       \
  do {                                                                                          \
    if (!(cond))                                                                                \
      ::mscl::detail::throw_error<::mscl::error>(std::string("internal assertion failed: ") + \
                                                 #cond + " at " + __FILE__ + ":" +             \
                                                 std::to_string(__LINE__));                    \
  } while (0)
#else
#define MSCL_ASSERT(cond) ((void)0)
#endif
