# Finds ONNX Runtime's C/C++ headers and shared library.
#
# Looks in ONNXRUNTIME_ROOT (CMake variable or environment) first: an official release
# (include/, lib/), a Debian 13 install (/usr with include/onnxruntime/), or the folder that
# scripts/cpp_deps.sh assembles (third_party/onnxruntime). ONNXRUNTIME_INCLUDE_DIR and
# ONNXRUNTIME_LIBRARY override the search.
#
# Defines OnnxRuntime_FOUND, OnnxRuntime_VERSION (of the headers' C API) and the imported target
# OnnxRuntime::onnxruntime.
set(_ort_hints)
if(ONNXRUNTIME_ROOT)
  list(APPEND _ort_hints "${ONNXRUNTIME_ROOT}")
endif()
if(DEFINED ENV{ONNXRUNTIME_ROOT})
  list(APPEND _ort_hints "$ENV{ONNXRUNTIME_ROOT}")
endif()

find_path(ONNXRUNTIME_INCLUDE_DIR onnxruntime_cxx_api.h
  HINTS ${_ort_hints}
  PATH_SUFFIXES include include/onnxruntime include/onnxruntime/core/session)
find_library(ONNXRUNTIME_LIBRARY onnxruntime
  HINTS ${_ort_hints}
  PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu lib/aarch64-linux-gnu)

if(ONNXRUNTIME_INCLUDE_DIR AND EXISTS "${ONNXRUNTIME_INCLUDE_DIR}/onnxruntime_c_api.h")
  file(STRINGS "${ONNXRUNTIME_INCLUDE_DIR}/onnxruntime_c_api.h" _ort_api
       REGEX "^#define ORT_API_VERSION [0-9]+")
  string(REGEX REPLACE "^#define ORT_API_VERSION ([0-9]+).*" "1.\\1" OnnxRuntime_VERSION "${_ort_api}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OnnxRuntime
  REQUIRED_VARS ONNXRUNTIME_LIBRARY ONNXRUNTIME_INCLUDE_DIR
  VERSION_VAR OnnxRuntime_VERSION)

if(OnnxRuntime_FOUND AND NOT TARGET OnnxRuntime::onnxruntime)
  add_library(OnnxRuntime::onnxruntime SHARED IMPORTED)
  set_target_properties(OnnxRuntime::onnxruntime PROPERTIES
    IMPORTED_LOCATION "${ONNXRUNTIME_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${ONNXRUNTIME_INCLUDE_DIR}")
endif()
mark_as_advanced(ONNXRUNTIME_INCLUDE_DIR ONNXRUNTIME_LIBRARY)
