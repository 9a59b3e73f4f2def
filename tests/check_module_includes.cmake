# Module dependencies are one-way (README, "layout"): prune/ and pipeline/ see shape inference,
# cloning and serialization through ir interfaces (ir/shape_inference.h, Model::clone(),
# CompressSetup::serialized_size, ir/model_format.h for the write gate), never through onnx_io
# headers. Fails naming every file that includes one; no exceptions.
#   cmake -DSOURCE_DIR=<repo> -P check_module_includes.cmake
cmake_minimum_required(VERSION 3.20)
set(offenders "")
foreach(dir src/prune include/nncompress/prune src/pipeline include/nncompress/pipeline)
  file(GLOB files RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/${dir}/*.cc" "${SOURCE_DIR}/${dir}/*.h")
  foreach(f ${files})
    file(STRINGS "${SOURCE_DIR}/${f}" hits REGEX "#include [\"<](nncompress/)?onnx_io/|#include [\"<]onnx/|#include [\"<]google/protobuf")
    if(hits)
      list(APPEND offenders "${f}: ${hits}")
    endif()
  endforeach()
endforeach()
if(offenders)
  list(JOIN offenders "\n  " text)
  message(FATAL_ERROR "onnx_io/protobuf headers included outside onnx_io:\n  ${text}")
endif()
message(STATUS "prune/ and pipeline/ include no onnx_io headers")
