// The one error-check macro for native calls: FCN_CHECK(status, what).
//
// ``status`` is a bool (true = success) or, in files that add an overload of fcn::detail::failed
// and fcn::detail::describe (the CUDA backend does), a native status code. On failure it throws
// fcn::Error("<what>: <status description> [at file:line]"). User errors that need no source
// location (bad paths, bad images) throw fcn::Error directly.
#pragma once

#include <sstream>
#include <string>

#include "fcn/error.hpp"

namespace fcn::detail {

inline bool failed(bool ok) { return !ok; }
inline std::string describe(bool) { return "failed"; }

template <typename Status>
void check(const Status& status, const char* expr, const std::string& what, const char* file,
           int line) {
  if (!failed(status)) return;
  std::ostringstream msg;
  msg << what << ": " << expr << " " << describe(status) << " [at " << file << ":" << line << "]";
  throw Error(msg.str());
}

}  // namespace fcn::detail

#define FCN_CHECK(status, what) ::fcn::detail::check((status), #status, (what), __FILE__, __LINE__)
