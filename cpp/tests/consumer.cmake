# package.consumer: install fcn_runtime to STAGE, build EXAMPLE against it with find_package, run
# it on the fixtures. Fails on any step.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

file(REMOVE_RECURSE ${STAGE})
run(${CMAKE_COMMAND} --install ${BUILD} --prefix ${STAGE})
run(${CMAKE_COMMAND} -S ${EXAMPLE} -B ${STAGE}/example-build -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${STAGE})
run(${CMAKE_COMMAND} --build ${STAGE}/example-build)
run(${STAGE}/example-build/segment_image ${FIXTURES}/tiny.onnx ${FIXTURES}/image.png
    ${STAGE}/mask.png ${STAGE}/overlay.png)
foreach(f mask.png overlay.png)
  if(NOT EXISTS ${STAGE}/${f})
    message(FATAL_ERROR "the example wrote no ${f}")
  endif()
endforeach()
message(STATUS "installed package found, linked and run")
