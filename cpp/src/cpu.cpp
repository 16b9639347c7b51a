// The CPU features that change results (the same rules as fcn_deploy/cpu.py): on x86 without an
// int8 dot-product instruction (avx512_vnni, avx_vnni, amx_int8) ONNX Runtime's fast U8S8 kernels
// add pairs of products in 16 bits with saturation, so INT8 graphs get exact U8U8 kernels there.
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "backend.hpp"

namespace fcn::detail {
namespace {

const char* const kDotFlags[] = {"avx512_vnni", "avx_vnni", "amx_int8"};

std::vector<std::string> split_flags(std::string text) {
  for (char& c : text) {
    if (c == ',') c = ' ';
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  std::istringstream in(text);
  std::vector<std::string> flags;
  for (std::string f; in >> f;) flags.push_back(f);
  return flags;
}

// The "flags" (x86) line of the first processor in /proc/cpuinfo; empty when unreadable.
std::vector<std::string> cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(key.find_last_not_of(" \t") + 1);
    if (key == "flags" || key == "Features") return split_flags(line.substr(colon + 1));
  }
  return {};
}

}  // namespace

CpuInt8 detect_cpu_int8() {
  CpuInt8 cpu;
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
  cpu.x86 = true;
#else
  cpu.x86 = false;
#endif
  const char* override_flags = std::getenv("FCN_CPU_FLAGS");
  const std::vector<std::string> flags =
      override_flags ? split_flags(override_flags) : cpuinfo_flags();
  for (const char* f : kDotFlags)
    for (const auto& have : flags)
      if (have == f) cpu.dot_flags.emplace_back(f);
  return cpu;
}

const CpuInt8& cpu_int8() {
  static const CpuInt8 cpu = detect_cpu_int8();
  return cpu;
}

Int8Choice resolve_int8_kernels(const std::string& requested, const CpuInt8& cpu) {
  std::string text = requested.empty() ? "auto" : requested;
  if (text != "auto" && text != "fast" && text != "exact")
    throw Error("int8 kernels '" + requested + "' is not one of auto, fast, exact");
  const bool saturates = cpu.x86 && cpu.dot_flags.empty();
  Int8Choice choice;
  choice.exact = text == "exact" || (text == "auto" && saturates);
  std::string why;
  if (!cpu.x86) {
    choice.description = "int8: ONNX Runtime's kernels (not x86: int8 products do not saturate)";
    return choice;
  }
  if (saturates) {
    why = "no VNNI";
  } else {
    why = "VNNI:";
    for (size_t i = 0; i < cpu.dot_flags.size(); ++i) why += (i ? ", " : " ") + cpu.dot_flags[i];
  }
  if (choice.exact)
    choice.description = saturates ? "int8: exact U8U8 kernels (" + why + ")"
                                   : "int8: exact U8U8 kernels, as requested (" + why +
                                         "; the fast kernels are exact too, and faster)";
  else
    choice.description = saturates ? "int8: fast U8S8 kernels, may saturate (" + why +
                                         "; --int8-kernels fast): results can differ from the "
                                         "INT8 graph's"
                                   : "int8: fast kernels (" + why + ")";
  return choice;
}

}  // namespace fcn::detail
