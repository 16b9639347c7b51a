// The one exception type for user errors in fcn_runtime.
#pragma once

#include <stdexcept>
#include <string>

#include "fcn/export.hpp"

namespace fcn {

/// A user error: a missing or corrupt model file, an image in the wrong format, a shape outside
/// an engine's profile. The message names the thing and says what was expected (the C++ twin of
/// Python's FCNError). Failures of native calls (CUDA, TensorRT) are reported the same way with
/// the source file and line appended. Library code never calls exit().
class FCN_EXPORT Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace fcn
