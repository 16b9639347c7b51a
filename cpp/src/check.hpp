// The one error-check macro for native calls: FCN_CHECK(status, what).
//
// ``status`` is a bool (true = success) or a native status code for which a StatusTraits
// specialization exists (the TensorRT backend adds one for cudaError_t). On failure it throws
// fcn::Error("<what>: <expression> <status description> [at file:line]"). User errors that need
// no source location (bad paths, bad images) throw fcn::Error directly.
#pragma once

#include <sstream>
#include <string>

#include "fcn/error.hpp"

namespace fcn::detail {

/// How to tell failure and describe a status: ``static bool failed(S)``, ``static std::string
/// describe(S)``.
template <typename Status>
struct StatusTraits;

template <>
struct StatusTraits<bool> {
  static bool failed(bool ok) { return !ok; }
  static std::string describe(bool) { return "failed"; }
};

template <typename Status>
void check(const Status& status, const char* expr, const std::string& what, const char* file,
           int line) {
  if (!StatusTraits<Status>::failed(status)) return;
  std::ostringstream msg;
  msg << what << ": " << expr << " " << StatusTraits<Status>::describe(status) << " [at " << file
      << ":" << line << "]";
  throw Error(msg.str());
}

}  // namespace fcn::detail

#define FCN_CHECK(status, what) ::fcn::detail::check((status), #status, (what), __FILE__, __LINE__)
