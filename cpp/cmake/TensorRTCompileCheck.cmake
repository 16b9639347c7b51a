# Compile (never link) the TensorRT sources of fcn_runtime against a set of TensorRT headers.
#
# TensorRT's libraries exist only on GPU machines, but its public headers (NVIDIA/TensorRT's
# include/ at a release tag) and the CUDA toolkit's headers compile anywhere, so every build that
# has them type-checks the TensorRT backend against each TensorRT version it supports. Nothing is
# linked and no library is stubbed: the objects are only compiled, as part of the default target.
#
#   fcn_tensorrt_compile_check(<include dir>)   one OBJECT library per header set, named
#                                               fcn_trt_check_<major>_<minor>_<patch>
include(${CMAKE_CURRENT_LIST_DIR}/TensorRTVersion.cmake)

#: the sources that use TensorRT or change with FCN_HAVE_TENSORRT
set(FCN_TENSORRT_SOURCES src/tensorrt_backend.cpp src/segmenter.cpp)

function(fcn_tensorrt_compile_check include_dir)
  if(NOT EXISTS "${include_dir}/NvInferRuntime.h")
    message(FATAL_ERROR "TensorRT compile check: no NvInferRuntime.h in ${include_dir}")
  endif()
  fcn_tensorrt_header_version("${include_dir}" _version)
  if(NOT _version)
    message(FATAL_ERROR "TensorRT compile check: no version in ${include_dir}/NvInferVersion.h")
  endif()
  string(REPLACE "." "_" _tag "${_version}")
  set(_target fcn_trt_check_${_tag})
  # A config.hpp that says the TensorRT backend is present, seen before the build's own.
  set(_gen "${CMAKE_CURRENT_BINARY_DIR}/${_target}/include")
  set(FCN_HAVE_TENSORRT 1)
  configure_file("${PROJECT_SOURCE_DIR}/src/config.hpp.in" "${_gen}/fcn/config.hpp" @ONLY)
  list(TRANSFORM FCN_TENSORRT_SOURCES PREPEND "${PROJECT_SOURCE_DIR}/" OUTPUT_VARIABLE _sources)
  add_library(${_target} OBJECT ${_sources})
  target_include_directories(${_target} BEFORE PRIVATE "${_gen}")
  target_include_directories(${_target} PRIVATE
    "${PROJECT_SOURCE_DIR}/include" "${PROJECT_BINARY_DIR}/include" "${PROJECT_SOURCE_DIR}/src")
  target_include_directories(${_target} SYSTEM PRIVATE "${include_dir}" ${CUDAToolkit_INCLUDE_DIRS})
  # Usage requirements only (include folders): an OBJECT library links nothing.
  target_link_libraries(${_target} PRIVATE opencv_core nlohmann_json::nlohmann_json)
  target_compile_definitions(${_target} PRIVATE fcn_runtime_EXPORTS)
  # -Werror here only: this check stands in for the GPU build, so a warning in the TensorRT
  # backend fails it (TensorRT's and CUDA's own headers are SYSTEM includes, not checked).
  target_compile_options(${_target} PRIVATE $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Werror>)
  message(STATUS "fcn_runtime: TensorRT sources compiled (not linked) against TensorRT "
                 "${_version} headers in ${include_dir} (target ${_target})")
endfunction()
