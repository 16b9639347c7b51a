"""Scale-out: Triton Inference Server model repositories, a local tritonserver for tests and
benchmarks, and Ray Data batch segmentation. tritonclient and ray are imported only when used."""
