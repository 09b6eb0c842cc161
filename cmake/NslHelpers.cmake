# Helpers for nsl's own targets (tests, examples, benchmarks). Nothing here
# touches the `nsl` interface target, so consumers inherit none of it.
include_guard(GLOBAL)

# nsl_target_defaults(<target> [EMBEDDED]): links nsl::nsl and adds the
# project's warning flags (-Werror under NSL_WERROR), -march=native under
# NSL_NATIVE_ARCH and, under NSL_SANITIZE, ASan + UBSan. EMBEDDED builds the
# way an embedded product does: nsl_embedded (nsl without OpenMP) and
# -fno-exceptions.
function(nsl_target_defaults target)
  cmake_parse_arguments(ARG "EMBEDDED" "" "" ${ARGN})
  if(ARG_EMBEDDED)
    target_link_libraries(${target} PRIVATE nsl_embedded)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fno-exceptions>)
  else()
    target_link_libraries(${target} PRIVATE nsl::nsl)
  endif()
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    # C++ sources only: a target may also hold .cu files (nsl_cuda_target_defaults).
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic>)
    if(NSL_WERROR)
      target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
    endif()
    if(NSL_NATIVE_ARCH)
      target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-march=native>
                                               $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-march=native>)
      # GCC 12's AVX-512 intrinsic headers trip its own -Wmaybe-uninitialized
      # (GCC bug 105593, fixed in 13) whenever Eigen uses them.
      if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
        target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wno-maybe-uninitialized>
                                                 $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wno-maybe-uninitialized>)
      endif()
    endif()
    if(NSL_SANITIZE)
      set(_nsl_san -fsanitize=address,undefined -fno-omit-frame-pointer
                   -fno-sanitize-recover=all)
      target_compile_options(${target} PRIVATE ${_nsl_san})
      target_link_options(${target} PRIVATE ${_nsl_san})
    endif()
  elseif(MSVC)
    target_compile_options(${target} PRIVATE /W4 /permissive-)
    if(NSL_WERROR)
      target_compile_options(${target} PRIVATE /WX)
    endif()
  endif()
endfunction()

# Debian 12's libxsimd-dev (8.1) exports `xsimd` with INTERFACE_LINK_LIBRARIES
# "xtl" but neither depends on nor finds xtl, so linking it adds a bogus -lxtl.
# xsimd's headers only need xtl under XSIMD_ENABLE_XTL_COMPLEX, so when no xtl
# target can be found the dangling item is dropped. nslConfig.cmake repeats
# this for consumers.
macro(nsl_fix_xsimd_target)
  if(TARGET xsimd AND NOT TARGET xtl)
    get_target_property(_nsl_xsimd_libs xsimd INTERFACE_LINK_LIBRARIES)
    if(_nsl_xsimd_libs AND "xtl" IN_LIST _nsl_xsimd_libs)
      find_package(xtl QUIET)
      if(NOT TARGET xtl)
        list(REMOVE_ITEM _nsl_xsimd_libs xtl)
        set_target_properties(xsimd PROPERTIES INTERFACE_LINK_LIBRARIES "${_nsl_xsimd_libs}")
      endif()
    endif()
    unset(_nsl_xsimd_libs)
  endif()
endmacro()

# nsl_cuda_target_defaults(<target>): for a target with .cu sources: links
# nsl::cuda, C++17 for CUDA too, and the project's warnings on the host
# compiler (-Werror under NSL_WERROR; nvcc's own warnings are errors too).
# No -Wpedantic: nvcc's generated host code uses GNU extensions.
function(nsl_cuda_target_defaults target)
  target_link_libraries(${target} PRIVATE nsl::cuda)
  set_target_properties(${target} PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON CUDA_EXTENSIONS OFF)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)
  if(NSL_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Werror>)
  endif()
endfunction()
