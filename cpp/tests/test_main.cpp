// Runs the registered cases; `--write-fixtures DIR` writes a tiny model and image for the
// package-consumer test instead.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>

#include <opencv2/core.hpp>

#include "fcn/image.hpp"
#include "onnx_writer.hpp"
#include "testing.hpp"

namespace fcn_test {

std::string temp_dir() {
  static std::string dir = [] {
    std::string templ = (std::filesystem::temp_directory_path() / "fcn_cpp_tests_XXXXXX").string();
    if (!mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
    return templ;
  }();
  return dir;
}

}  // namespace fcn_test

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--write-fixtures") {
    const std::filesystem::path dir = argv[2];
    std::filesystem::create_directories(dir);
    fcn_test::ModelSpec spec = fcn_test::ModelSpec::identity();
    fcn_test::write_file((dir / "tiny.onnx").string(), fcn_test::make_onnx(spec));
    cv::Mat image(24, 32, CV_8UC3);
    cv::randu(image, 0, 256);
    fcn::write_image((dir / "image.png").string(), image);
    return 0;
  }
  const std::set<std::string> groups(argv + 1, argv + argc);
  int passed = 0, failed = 0;
  for (const auto& c : fcn_test::registry()) {
    if (!groups.empty() && !groups.count(c.group)) continue;
    try {
      c.fn();
      ++passed;
      std::cout << "[ OK ] " << c.group << "." << c.name << "\n";
    } catch (const std::exception& e) {
      ++failed;
      std::cout << "[FAIL] " << c.group << "." << c.name << ": " << e.what() << "\n";
    }
  }
  std::error_code ec;
  if (!fcn_test::registry().empty()) std::filesystem::remove_all(fcn_test::temp_dir(), ec);
  std::cout << passed << " passed, " << failed << " failed\n";
  return (failed == 0 && passed > 0) ? 0 : 1;
}
