# Version helpers shared by FindTensorRT.cmake and TensorRTCompileCheck.cmake.

# fcn_tensorrt_header_version(<include dir> <out var>): "10.16.0" from NvInferVersion.h (the
# TRT_*_ENTERPRISE defines of 10.x/11.x, or NV_TENSORRT_* numbers of older releases); "" if none.
function(fcn_tensorrt_header_version dir out)
  set(_file "${dir}/NvInferVersion.h")
  set(_version "")
  if(EXISTS "${_file}")
    set(_parts)
    foreach(_part MAJOR MINOR PATCH)
      file(STRINGS "${_file}" _line
           REGEX "^#define (NV_TENSORRT_|TRT_)${_part}(_ENTERPRISE)? +[0-9]+")
      string(REGEX MATCH "[0-9]+$" _num "${_line}")
      list(APPEND _parts "${_num}")
    endforeach()
    list(GET _parts 0 _major)
    if(_major)
      list(JOIN _parts "." _version)
    endif()
  endif()
  set(${out} "${_version}" PARENT_SCOPE)
endfunction()

# fcn_tensorrt_library_major(<library path> <out var>): the major version in libnvinfer's file
# name after resolving symlinks (libnvinfer.so -> libnvinfer.so.10 -> libnvinfer.so.10.16.0 gives
# 10; Windows nvinfer_10.lib gives 10); "" when the name carries none.
function(fcn_tensorrt_library_major path out)
  get_filename_component(_real "${path}" REALPATH)
  set(_major "")
  foreach(_candidate "${_real}" "${path}")
    get_filename_component(_name "${_candidate}" NAME)
    # one MATCHES per if(): a failed second MATCHES would clear CMAKE_MATCH_1
    if(_name MATCHES "\\.so\\.([0-9]+)")
      set(_major "${CMAKE_MATCH_1}")
      break()
    endif()
    if(_name MATCHES "nvinfer_([0-9]+)")
      set(_major "${CMAKE_MATCH_1}")
      break()
    endif()
  endforeach()
  set(${out} "${_major}" PARENT_SCOPE)
endfunction()
