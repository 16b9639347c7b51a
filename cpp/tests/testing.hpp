// A tiny test runner: TEST(group, name) registers a case, CHECK* macros throw on failure.
// `fcn_unit_tests [group ...]` runs the cases of those groups (all without arguments).
#pragma once

#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "fcn/error.hpp"

namespace fcn_test {

struct Case {
  std::string group, name;
  std::function<void()> fn;
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

struct Registrar {
  Registrar(const char* group, const char* name, std::function<void()> fn) {
    registry().push_back({group, name, std::move(fn)});
  }
};

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline std::string where(const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line) + ": ";
}

/// A scratch folder for one test run, removed afterwards.
std::string temp_dir();

}  // namespace fcn_test

#define TEST(group, name)                                                              \
  static void test_##group##_##name();                                                 \
  static fcn_test::Registrar registrar_##group##_##name(#group, #name, test_##group##_##name); \
  static void test_##group##_##name()

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (!(cond)) throw fcn_test::Failure(fcn_test::where(__FILE__, __LINE__) + "CHECK(" #cond ")"); \
  } while (0)

#define CHECK_EQ(a, b)                                                                 \
  do {                                                                                 \
    const auto& va_ = (a);                                                             \
    const auto& vb_ = (b);                                                             \
    if (!(va_ == vb_)) {                                                               \
      std::ostringstream m_;                                                           \
      m_ << fcn_test::where(__FILE__, __LINE__) << #a " == " #b " failed: " << va_ << " vs " << vb_; \
      throw fcn_test::Failure(m_.str());                                               \
    }                                                                                  \
  } while (0)

// The statement must throw fcn::Error whose message contains `text`.
#define CHECK_THROWS(statement, text)                                                  \
  do {                                                                                 \
    bool thrown_ = false;                                                              \
    try {                                                                              \
      statement;                                                                       \
    } catch (const fcn::Error& e_) {                                                   \
      thrown_ = true;                                                                  \
      if (std::string(e_.what()).find(text) == std::string::npos)                      \
        throw fcn_test::Failure(fcn_test::where(__FILE__, __LINE__) + "message '" +    \
                                e_.what() + "' lacks '" + (text) + "'");               \
    }                                                                                  \
    if (!thrown_)                                                                      \
      throw fcn_test::Failure(fcn_test::where(__FILE__, __LINE__) + #statement " did not throw fcn::Error"); \
  } while (0)
