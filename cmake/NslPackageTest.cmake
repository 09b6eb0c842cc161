# Script mode (cmake -P) driver of the package_deb test; see tests/CMakeLists.txt
# and cmake/NslPackaging.cmake. In WORK_DIR (inside the build tree; wiped first):
#   1. `cpack -G DEB` of NSL_BUILD_DIR into WORK_DIR/packages;
#   2. the two .deb files by name, their control fields (dpkg-deb -f) and
#      contents (dpkg-deb -c): libnsl-dev has every header of HEADERS_DIR and
#      the CMake files and no programs, nsl-tools the programs and no headers;
#   3. both unpacked (dpkg-deb -x, what `dpkg -x` runs) into WORK_DIR/root,
#      each unpacked program run with --help;
#   4. tests/consumer built against WORK_DIR/root/usr with
#      cmake/NslRunConsumer.cmake (MODE=consumer), and run.
# About 10 s: cpack 3 s (plus the build tool's check that `all`, its preinstall
# target, is up to date), the consumer's configure and build 5 s.
#
# Arguments (-D): NSL_BUILD_DIR, WORK_DIR, HEADERS_DIR, VERSION, CPACK, DPKG_DEB,
# CONFIG, WITH_TOOLS / WITH_FEWSHOT / WITH_XSIMD / WITH_ZLIB (booleans: what this
# build packages), RUNNER (NslRunConsumer.cmake) and the arguments it takes in
# MODE=consumer: GENERATOR, GENERATOR_PLATFORM, GENERATOR_TOOLSET, MAKE_PROGRAM,
# CXX_COMPILER, SOURCE_DIR, EIGEN3_DIR, XSIMD_DIR.
cmake_minimum_required(VERSION 3.25)

function(nsl_run)
  cmake_parse_arguments(ARG "" "OUTPUT;DIR" "" ${ARGN})
  string(REPLACE ";" " " _shown "${ARG_UNPARSED_ARGUMENTS}")
  message(STATUS "+ ${_shown}")
  set(_dir "${WORK_DIR}")
  if(ARG_DIR)
    set(_dir "${ARG_DIR}")
  endif()
  if(ARG_OUTPUT)
    execute_process(COMMAND ${ARG_UNPARSED_ARGUMENTS} WORKING_DIRECTORY "${_dir}"
                    RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
    set(${ARG_OUTPUT} "${_out}" PARENT_SCOPE)
  else()
    execute_process(COMMAND ${ARG_UNPARSED_ARGUMENTS} WORKING_DIRECTORY "${_dir}" RESULT_VARIABLE _rc)
  endif()
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "command failed (${_rc}): ${_shown}\n${_out}")
  endif()
endfunction()

# nsl_expect(<what> <text> <regex> [ABSENT]): <regex> occurs in <text> (or not).
function(nsl_expect what text regex)
  if(ARGN STREQUAL "ABSENT")
    if(text MATCHES "${regex}")
      message(FATAL_ERROR "${what}: '${regex}' should not be there; found:\n${text}")
    endif()
  elseif(NOT text MATCHES "${regex}")
    message(FATAL_ERROR "${what}: expected '${regex}'; found:\n${text}")
  endif()
endfunction()

foreach(_var NSL_BUILD_DIR WORK_DIR HEADERS_DIR VERSION CPACK DPKG_DEB RUNNER)
  if(NOT ${_var})
    message(FATAL_ERROR "NslPackageTest.cmake: -D${_var}=... is missing")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}/packages")

# ---- 1. the packages -----------------------------------------------------------
set(_cpack_args -G DEB -B "${WORK_DIR}/packages" --config "${NSL_BUILD_DIR}/CPackConfig.cmake")
if(CONFIG)
  list(APPEND _cpack_args -C "${CONFIG}")
endif()
nsl_run("${CPACK}" ${_cpack_args} DIR "${NSL_BUILD_DIR}")

nsl_run(dpkg --print-architecture OUTPUT _arch)
string(STRIP "${_arch}" _arch)
set(_dev_deb "${WORK_DIR}/packages/libnsl-dev_${VERSION}_all.deb")
set(_tools_deb "${WORK_DIR}/packages/nsl-tools_${VERSION}_${_arch}.deb")
set(_debs "${_dev_deb}")
if(WITH_TOOLS)
  list(APPEND _debs "${_tools_deb}")
endif()
file(GLOB _made "${WORK_DIR}/packages/*.deb")
list(SORT _made)
list(SORT _debs)
if(NOT _made STREQUAL _debs)
  message(FATAL_ERROR "cpack made:\n  ${_made}\nexpected:\n  ${_debs}")
endif()

# ---- 2. control fields and contents ------------------------------------------
function(nsl_deb_field deb field out)
  nsl_run("${DPKG_DEB}" --field "${deb}" "${field}" OUTPUT _value)
  string(STRIP "${_value}" _value)
  set(${out} "${_value}" PARENT_SCOPE)
endfunction()

foreach(_deb IN LISTS _debs)
  nsl_run("${DPKG_DEB}" --info "${_deb}" OUTPUT _info)
  message(STATUS "${_info}")
endforeach()

nsl_deb_field("${_dev_deb}" Package _value)
nsl_expect("libnsl-dev Package" "${_value}" "^libnsl-dev$")
nsl_deb_field("${_dev_deb}" Version _value)
nsl_expect("libnsl-dev Version" "${_value}" "^${VERSION}$")
nsl_deb_field("${_dev_deb}" Architecture _value)
nsl_expect("libnsl-dev Architecture" "${_value}" "^all$")
nsl_deb_field("${_dev_deb}" Depends _value)
nsl_expect("libnsl-dev Depends" "${_value}" "(^|, )libeigen3-dev \\(>= 3\\.4\\)(,|$)")
if(WITH_XSIMD)
  nsl_expect("libnsl-dev Depends" "${_value}" "(^|, )libxsimd-dev( \\(|,|$)")
endif()
if(WITH_ZLIB)
  nsl_expect("libnsl-dev Depends" "${_value}" "(^|, )zlib1g-dev(,|$)")
endif()

# Every header of the source tree is packaged, under usr/include/nsl.
nsl_run("${DPKG_DEB}" --contents "${_dev_deb}" OUTPUT _dev_contents)
file(GLOB_RECURSE _headers RELATIVE "${HEADERS_DIR}" "${HEADERS_DIR}/nsl/*.hpp"
     "${HEADERS_DIR}/nsl/*.h" "${HEADERS_DIR}/nsl/*.cuh")
list(LENGTH _headers _count)
if(_count LESS 10)
  message(FATAL_ERROR "found only ${_count} headers in ${HEADERS_DIR}")
endif()
foreach(_header IN LISTS _headers)
  string(FIND "${_dev_contents}" " ./usr/include/${_header}\n" _at)
  if(_at EQUAL -1)
    message(FATAL_ERROR "libnsl-dev lacks usr/include/${_header}")
  endif()
endforeach()
foreach(_file nslConfig.cmake nslConfigVersion.cmake nslTargets.cmake)
  nsl_expect("libnsl-dev contents" "${_dev_contents}" " \\./usr/[^ \n]*/cmake/nsl/${_file}\n")
endforeach()
nsl_expect("libnsl-dev contents" "${_dev_contents}" " \\./usr/share/doc/libnsl-dev/copyright\n")
nsl_expect("libnsl-dev contents" "${_dev_contents}" " \\./usr/bin/" ABSENT)
message(STATUS "libnsl-dev: ${_count} headers, the CMake package files, no programs")

set(_programs "")
if(WITH_TOOLS)
  set(_programs nsl-train nsl-eval nsl-curves)
  if(WITH_FEWSHOT)
    list(APPEND _programs nsl-fewshot)
  endif()
  nsl_deb_field("${_tools_deb}" Package _value)
  nsl_expect("nsl-tools Package" "${_value}" "^nsl-tools$")
  nsl_deb_field("${_tools_deb}" Version _value)
  nsl_expect("nsl-tools Version" "${_value}" "^${VERSION}$")
  nsl_deb_field("${_tools_deb}" Architecture _value)
  nsl_expect("nsl-tools Architecture" "${_value}" "^${_arch}$")
  # dpkg-shlibdeps' work: the C library and Cairo (nsl-train's pictures).
  nsl_deb_field("${_tools_deb}" Depends _value)
  nsl_expect("nsl-tools Depends" "${_value}" "(^|, )libc6 \\(>= [^)]+\\)")
  nsl_expect("nsl-tools Depends" "${_value}" "(^|, )libcairo2( |,|$)")
  nsl_deb_field("${_tools_deb}" Recommends _value)
  nsl_expect("nsl-tools Recommends" "${_value}" "(^|, )dataset-fashion-mnist(,|$)")

  nsl_run("${DPKG_DEB}" --contents "${_tools_deb}" OUTPUT _tools_contents)
  foreach(_program IN LISTS _programs)
    nsl_expect("nsl-tools contents" "${_tools_contents}" "(^|\n)-rwxr-xr-x [^\n]* \\./usr/bin/${_program}\n")
  endforeach()
  nsl_expect("nsl-tools contents" "${_tools_contents}" " \\./usr/include/" ABSENT)
  message(STATUS "nsl-tools: ${_programs}")
endif()

# ---- 3. unpacked: the programs run ---------------------------------------------
set(_root "${WORK_DIR}/root")
foreach(_deb IN LISTS _debs)
  nsl_run("${DPKG_DEB}" --extract "${_deb}" "${_root}")
endforeach()
foreach(_program IN LISTS _programs)
  nsl_run("${_root}/usr/bin/${_program}" --help OUTPUT _help)
  nsl_expect("${_program} --help" "${_help}" "Usage: ")
  message(STATUS "${_program} --help: ok")
endforeach()

# ---- 4. a consumer builds against the unpacked libnsl-dev ---------------------
set(_consumer_dir "${WORK_DIR}/consumer")
set(_consumer_args -DMODE=consumer "-DBUILD_DIR=${_consumer_dir}" "-DPREFIX=${_root}/usr")
foreach(_var GENERATOR GENERATOR_PLATFORM GENERATOR_TOOLSET MAKE_PROGRAM CXX_COMPILER CONFIG
             SOURCE_DIR EIGEN3_DIR XSIMD_DIR)
  list(APPEND _consumer_args "-D${_var}=${${_var}}")
endforeach()
nsl_run("${CMAKE_COMMAND}" ${_consumer_args} -P "${RUNNER}")
# ... and found nsl there, not in an nsl installed on the machine.
file(STRINGS "${_consumer_dir}/CMakeCache.txt" _nsl_dir REGEX "^nsl_DIR:")
string(FIND "${_nsl_dir}" "nsl_DIR:PATH=${_root}/usr/" _at)
if(NOT _at EQUAL 0)
  message(FATAL_ERROR "the consumer found nsl elsewhere: ${_nsl_dir}")
endif()
message(STATUS "the packages are good")
