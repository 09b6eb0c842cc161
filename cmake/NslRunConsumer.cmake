# Script mode (cmake -P) driver for nsl's consumer tests; see tests/CMakeLists.txt.
#
# MODE=install:  wipes PREFIX, then `cmake --install BUILD_DIR --prefix PREFIX`,
#                and checks the headers and PROGRAMS (paths under PREFIX) are there.
# MODE=consumer: wipes BUILD_DIR, configures SOURCE_DIR (tests/consumer) there
#                with GENERATOR / CXX_COMPILER / CONFIG [/ CXX_FLAGS], either
#                against the installed PREFIX (find_package) or, when
#                NSL_SOURCE_DIR is given, through add_subdirectory; builds it
#                and runs the resulting nsl_consumer.
cmake_minimum_required(VERSION 3.25)

function(nsl_run)
  string(REPLACE ";" " " _shown "${ARGN}")
  message(STATUS "+ ${_shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "command failed (${_rc}): ${_shown}")
  endif()
endfunction()

if(MODE STREQUAL "install")
  file(REMOVE_RECURSE "${PREFIX}")
  set(_config_args)
  if(CONFIG)
    set(_config_args --config "${CONFIG}")
  endif()
  nsl_run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${_config_args})
  foreach(_file include/nsl/core/tensor.hpp include/nsl/nsl.hpp ${PROGRAMS})
    if(NOT EXISTS "${PREFIX}/${_file}")
      message(FATAL_ERROR "install did not produce ${PREFIX}/${_file}")
    endif()
  endforeach()
  return()
endif()

if(NOT MODE STREQUAL "consumer")
  message(FATAL_ERROR "NslRunConsumer.cmake: unknown MODE '${MODE}'")
endif()

file(REMOVE_RECURSE "${BUILD_DIR}")
file(MAKE_DIRECTORY "${BUILD_DIR}")

set(_args -S "${SOURCE_DIR}" -B "${BUILD_DIR}" -G "${GENERATOR}"
          "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
if(GENERATOR_PLATFORM)
  list(APPEND _args -A "${GENERATOR_PLATFORM}")
endif()
if(GENERATOR_TOOLSET)
  list(APPEND _args -T "${GENERATOR_TOOLSET}")
endif()
if(MAKE_PROGRAM)
  list(APPEND _args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CONFIG)
  list(APPEND _args "-DCMAKE_BUILD_TYPE=${CONFIG}")
endif()
if(CXX_FLAGS)
  list(APPEND _args "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}")
endif()
if(EIGEN3_DIR)
  list(APPEND _args "-DEigen3_DIR=${EIGEN3_DIR}")
endif()
if(XSIMD_DIR)
  list(APPEND _args "-Dxsimd_DIR=${XSIMD_DIR}")
endif()
if(NSL_SOURCE_DIR)
  list(APPEND _args -DNSL_CONSUMER_USE_SUBDIRECTORY=ON "-DNSL_SOURCE_DIR=${NSL_SOURCE_DIR}")
else()
  list(APPEND _args "-DCMAKE_PREFIX_PATH=${PREFIX}")
endif()

nsl_run("${CMAKE_COMMAND}" ${_args})
set(_build_args --build "${BUILD_DIR}")
if(CONFIG)
  list(APPEND _build_args --config "${CONFIG}")
endif()
nsl_run("${CMAKE_COMMAND}" ${_build_args})

set(_exe "")
foreach(_candidate "${BUILD_DIR}/nsl_consumer" "${BUILD_DIR}/nsl_consumer.exe"
                   "${BUILD_DIR}/${CONFIG}/nsl_consumer" "${BUILD_DIR}/${CONFIG}/nsl_consumer.exe")
  if(EXISTS "${_candidate}" AND NOT IS_DIRECTORY "${_candidate}")
    set(_exe "${_candidate}")
    break()
  endif()
endforeach()
if(NOT _exe)
  message(FATAL_ERROR "nsl_consumer was not built in ${BUILD_DIR}")
endif()
nsl_run("${_exe}")
