# Finds TensorRT's C++ runtime: the headers (NvInferRuntime.h, NvInferVersion.h) and libnvinfer,
# which may come from different places:
#
#   - an NVIDIA tarball or container: TENSORRT_ROOT (CMake variable or environment) with include/
#     and lib/ (libnvinfer.so -> libnvinfer.so.<major> -> libnvinfer.so.<major>.<minor>...);
#   - NVIDIA's apt packages: /usr/include/x86_64-linux-gnu and /usr/lib/x86_64-linux-gnu;
#   - the pip wheel (tensorrt-cuXX-libs): tensorrt_libs/libnvinfer.so.<major> only, with no
#     unversioned .so and no headers. Its folder is asked from Python (TensorRT_PYTHON, else
#     Python3_EXECUTABLE, else python3 on PATH). Headers then come from elsewhere: the tarball of
#     the same version, or include/ of the NVIDIA/TensorRT GitHub release tag of the same version.
#
# Hints (CMake variables or environment variables): TENSORRT_ROOT, TensorRT_INCLUDE_DIR (folder
# holding NvInferRuntime.h), TensorRT_LIBRARY_DIR (folder holding libnvinfer). Windows names
# nvinfer_<major>.lib are searched too.
#
# The header's major version must equal the library's (a 10.x header with an 11.x library would
# crash at run time, not at link time).
#
# Defines TensorRT_FOUND, TensorRT_VERSION, TensorRT_VERSION_MAJOR, TensorRT_LIBRARY_MAJOR,
# TensorRT_INCLUDE_DIR_FOUND / TENSORRT_INCLUDE_DIR, TENSORRT_LIBRARY, the imported target
# TensorRT::nvinfer, and TensorRT_NOT_FOUND_REASON: one sentence saying why it was not found.
include(${CMAKE_CURRENT_LIST_DIR}/TensorRTVersion.cmake)

set(TensorRT_NOT_FOUND_REASON "")
set(_trt_roots)
foreach(_v TENSORRT_ROOT)
  if(${_v})
    list(APPEND _trt_roots "${${_v}}")
  endif()
  if(DEFINED ENV{${_v}})
    list(APPEND _trt_roots "$ENV{${_v}}")
  endif()
endforeach()
set(_trt_include_hints)
set(_trt_library_hints)
foreach(_v TensorRT_INCLUDE_DIR TensorRT_LIBRARY_DIR)
  set(_hint "")
  if(${_v})
    set(_hint "${${_v}}")
  elseif(DEFINED ENV{${_v}})
    set(_hint "$ENV{${_v}}")
  endif()
  if(_hint AND _v STREQUAL "TensorRT_INCLUDE_DIR")
    list(APPEND _trt_include_hints "${_hint}")
  elseif(_hint)
    list(APPEND _trt_library_hints "${_hint}")
  endif()
endforeach()

# The pip wheel's library folder, asked from Python without importing (importing loads the libs).
set(_trt_python "${TensorRT_PYTHON}")
if(NOT _trt_python AND Python3_EXECUTABLE)
  set(_trt_python "${Python3_EXECUTABLE}")
endif()
if(NOT _trt_python)
  find_program(_trt_python_exe NAMES python3 python)
  set(_trt_python "${_trt_python_exe}")
endif()
set(TensorRT_WHEEL_DIR "")
if(_trt_python)
  execute_process(
    COMMAND "${_trt_python}" -c
      "import importlib.util as u; s = u.find_spec('tensorrt_libs'); print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')"
    OUTPUT_VARIABLE TensorRT_WHEEL_DIR OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _trt_rc)
  if(NOT _trt_rc EQUAL 0)
    set(TensorRT_WHEEL_DIR "")
  endif()
  if(TensorRT_WHEEL_DIR)
    list(APPEND _trt_library_hints "${TensorRT_WHEEL_DIR}")
  endif()
endif()

# -- headers ---------------------------------------------------------------------------------
find_path(TENSORRT_INCLUDE_DIR NvInferRuntime.h
  HINTS ${_trt_include_hints} ${_trt_roots}
  PATH_SUFFIXES include include/x86_64-linux-gnu include/aarch64-linux-gnu)
set(TensorRT_VERSION "")
set(TensorRT_VERSION_MAJOR "")
if(TENSORRT_INCLUDE_DIR)
  fcn_tensorrt_header_version("${TENSORRT_INCLUDE_DIR}" TensorRT_VERSION)
  if(TensorRT_VERSION)
    string(REGEX MATCH "^[0-9]+" TensorRT_VERSION_MAJOR "${TensorRT_VERSION}")
  endif()
endif()

# -- library: unversioned, then versioned names (the header's major first) --------------------
set(_trt_majors ${TensorRT_VERSION_MAJOR} 11 10)
list(REMOVE_DUPLICATES _trt_majors)
set(_trt_names nvinfer)
foreach(_m IN LISTS _trt_majors)
  list(APPEND _trt_names libnvinfer.so.${_m} nvinfer_${_m})
endforeach()
find_library(TENSORRT_LIBRARY NAMES ${_trt_names}
  HINTS ${_trt_library_hints} ${_trt_roots}
  PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu lib/aarch64-linux-gnu)
set(TensorRT_LIBRARY_MAJOR "")
if(TENSORRT_LIBRARY)
  fcn_tensorrt_library_major("${TENSORRT_LIBRARY}" TensorRT_LIBRARY_MAJOR)
endif()

# -- verdict, with the reason when it is not found --------------------------------------------
if(NOT TENSORRT_INCLUDE_DIR)
  string(CONCAT TensorRT_NOT_FOUND_REASON
      "no NvInferRuntime.h under TensorRT_INCLUDE_DIR/TENSORRT_ROOT or the system (the pip wheels "
      "ship no headers: use the tarball's include/ or the NVIDIA/TensorRT release tag's include/)")
elseif(NOT TensorRT_VERSION)
  string(CONCAT TensorRT_NOT_FOUND_REASON "no version in ${TENSORRT_INCLUDE_DIR}/NvInferVersion.h")
elseif(NOT TENSORRT_LIBRARY)
  list(JOIN _trt_names ", " _trt_names_text)
  string(CONCAT TensorRT_NOT_FOUND_REASON
      "headers ${TensorRT_VERSION} in ${TENSORRT_INCLUDE_DIR}, but no libnvinfer (looked for "
      "${_trt_names_text} under TensorRT_LIBRARY_DIR, TENSORRT_ROOT, the pip wheel folder "
      "'${TensorRT_WHEEL_DIR}' and the system)")
elseif(TensorRT_LIBRARY_MAJOR AND NOT TensorRT_LIBRARY_MAJOR STREQUAL TensorRT_VERSION_MAJOR)
  string(CONCAT TensorRT_NOT_FOUND_REASON
      "header major ${TensorRT_VERSION_MAJOR} (${TENSORRT_INCLUDE_DIR}) differs from library "
      "major ${TensorRT_LIBRARY_MAJOR} (${TENSORRT_LIBRARY}). Use headers of the library's version")
endif()

include(FindPackageHandleStandardArgs)
string(REPLACE ";" "," _trt_message "${TensorRT_NOT_FOUND_REASON}")  # FPHSA splits on ';'
if(TensorRT_NOT_FOUND_REASON)
  set(_trt_ok "")  # fails REQUIRED_VARS below, with the reason as the message
else()
  set(_trt_ok TRUE)
endif()
find_package_handle_standard_args(TensorRT
  REQUIRED_VARS TENSORRT_LIBRARY TENSORRT_INCLUDE_DIR _trt_ok
  VERSION_VAR TensorRT_VERSION
  REASON_FAILURE_MESSAGE "${_trt_message}")

if(TensorRT_FOUND AND NOT TARGET TensorRT::nvinfer)
  add_library(TensorRT::nvinfer SHARED IMPORTED)
  set_target_properties(TensorRT::nvinfer PROPERTIES
    IMPORTED_LOCATION "${TENSORRT_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${TENSORRT_INCLUDE_DIR}")
endif()
mark_as_advanced(TENSORRT_INCLUDE_DIR TENSORRT_LIBRARY)
