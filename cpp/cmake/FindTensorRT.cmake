# Finds TensorRT's C++ runtime (NvInferRuntime.h, libnvinfer) under TENSORRT_ROOT (CMake variable
# or environment), an NVIDIA tarball or the system (NVIDIA's apt packages install to /usr).
#
# Defines TensorRT_FOUND, TensorRT_VERSION and the imported target TensorRT::nvinfer.
set(_trt_hints)
if(TENSORRT_ROOT)
  list(APPEND _trt_hints "${TENSORRT_ROOT}")
endif()
if(DEFINED ENV{TENSORRT_ROOT})
  list(APPEND _trt_hints "$ENV{TENSORRT_ROOT}")
endif()

find_path(TENSORRT_INCLUDE_DIR NvInferRuntime.h
  HINTS ${_trt_hints}
  PATH_SUFFIXES include include/x86_64-linux-gnu include/aarch64-linux-gnu)
find_library(TENSORRT_LIBRARY nvinfer
  HINTS ${_trt_hints}
  PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu lib/aarch64-linux-gnu)

if(TENSORRT_INCLUDE_DIR AND EXISTS "${TENSORRT_INCLUDE_DIR}/NvInferVersion.h")
  foreach(_part MAJOR MINOR PATCH)
    file(STRINGS "${TENSORRT_INCLUDE_DIR}/NvInferVersion.h" _line
         REGEX "^#define (NV_TENSORRT_|TRT_)${_part}_?(ENTERPRISE)? [0-9]+")
    string(REGEX MATCH "[0-9]+$" _trt_${_part} "${_line}")
  endforeach()
  set(TensorRT_VERSION "${_trt_MAJOR}.${_trt_MINOR}.${_trt_PATCH}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TensorRT
  REQUIRED_VARS TENSORRT_LIBRARY TENSORRT_INCLUDE_DIR
  VERSION_VAR TensorRT_VERSION)

if(TensorRT_FOUND AND NOT TARGET TensorRT::nvinfer)
  add_library(TensorRT::nvinfer SHARED IMPORTED)
  set_target_properties(TensorRT::nvinfer PROPERTIES
    IMPORTED_LOCATION "${TENSORRT_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${TENSORRT_INCLUDE_DIR}")
endif()
mark_as_advanced(TENSORRT_INCLUDE_DIR TENSORRT_LIBRARY)
