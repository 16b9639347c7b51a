// segment_image MODEL IMAGE MASK.png OVERLAY.png: the smallest complete fcn_runtime program.
#include <fcn/fcn.hpp>
#include <iostream>

int main(int argc, char** argv) try {
  if (argc != 5) return std::cerr << "usage: segment_image MODEL IMAGE MASK.png OVERLAY.png\n", 2;
  fcn::Segmenter seg(argv[1]);              // .onnx or .plan; preprocessing from its metadata
  cv::Mat image = fcn::read_image(argv[2]); // CV_8UC3 BGR
  cv::Mat labels = seg.predict(image);      // CV_8UC1 class index per pixel, the image's size
  fcn::write_label_png(argv[3], labels, seg.meta());
  fcn::write_image(argv[4], fcn::overlay(image, labels, seg.meta()));
} catch (const fcn::Error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
