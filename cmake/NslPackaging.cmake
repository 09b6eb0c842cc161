# Debian packages from the same build (CPack's DEB generator), included by the
# top-level CMakeLists.txt when nsl is the top-level project. In a build tree:
#
#   cpack -G DEB            (or `cmake --build . --target package`)
#
# makes two packages from the install components:
#   libnsl-dev  (component dev, Architecture all): the headers under
#               /usr/include/nsl and the CMake package files of
#               find_package(nsl) under /usr/share/cmake/nsl;
#   nsl-tools   (component tools, the build's architecture): nsl-train,
#               nsl-eval, nsl-curves and nsl-fewshot in /usr/bin, with Depends computed
#               by dpkg-shlibdeps (dpkg-dev).
# tests/CMakeLists.txt's package_deb test (cmake/NslPackageTest.cmake) builds,
# inspects and unpacks both and builds tests/consumer against them.

set(CPACK_PACKAGE_NAME "nsl")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "the nsl authors")
# A packager sets their own: cmake -DCPACK_PACKAGE_CONTACT="Name <address>".
if(NOT DEFINED CPACK_PACKAGE_CONTACT)
  set(CPACK_PACKAGE_CONTACT "the nsl authors <nsl-authors@example.org>")
endif()
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPackDeb would put it in front of
# both packages' descriptions; each has its own first line (the synopsis).
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE")
if(NOT DEFINED CPACK_GENERATOR)
  set(CPACK_GENERATOR DEB)
endif()

# One package per install component; the tools only where apps/ built them.
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL dev)
if(TARGET nsl-train)
  list(APPEND CPACK_COMPONENTS_ALL tools)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # <package>_<version>_<architecture>.deb
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_STRIP_FILES ON)

# Debian wants the license in /usr/share/doc/<package>/copyright.
# EXCLUDE_FROM_ALL: only component installs (CPack's) put it there, a plain
# `cmake --install` does not.
install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" RENAME copyright
        DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/libnsl-dev" COMPONENT dev EXCLUDE_FROM_ALL)

# ---- libnsl-dev --------------------------------------------------------------
# Depends = what nslConfig.cmake find_dependency()s for this build: Eigen 3.4
# always; xsimd (>= 8: batch<T> on the default architecture) and zlib when
# nsl::nsl links them. OpenMP comes with the compiler: g++ ships libgomp
# (libgcc-N-dev, part of build-essential, which a -dev package assumes);
# clang needs libomp-dev, hence the Suggests.
set(_nsl_dev_depends "libeigen3-dev (>= 3.4)")
if(NSL_LINKED_XSIMD)
  string(APPEND _nsl_dev_depends ", libxsimd-dev (>= 8)")
endif()
if(NSL_LINKED_ZLIB)
  string(APPEND _nsl_dev_depends ", zlib1g-dev")
endif()
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libnsl-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${_nsl_dev_depends}")
if(NSL_LINKED_OPENMP)
  set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "libomp-dev")
endif()
set(CPACK_DEBIAN_DEV_DESCRIPTION
  "Neural Similarity Learning, a header-only C++17 library on Eigen
Neural Similarity Learning makes a convolution's comparison of filter and
patch, the inner product w^T x, a learned bilinear form w^T M x: M is a
parameter of the layer (static NSL) or predicted for every pixel by a small
meta-network (dynamic NSL). This package holds the headers and the CMake
package files: find_package(nsl) gives the target nsl::nsl.
License: MIT.")
unset(_nsl_dev_depends)

# ---- nsl-tools ---------------------------------------------------------------
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME nsl-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION science)
set(_nsl_tools_recommends "dataset-fashion-mnist")
if(TARGET nsl-fewshot)  # draws its glyphs from these fonts (nsl/data/glyph_render.hpp)
  string(APPEND _nsl_tools_recommends ", fonts-noto-core, fonts-dejavu-core, fonts-freefont-ttf")
endif()
set(CPACK_DEBIAN_TOOLS_PACKAGE_RECOMMENDS "${_nsl_tools_recommends}")
unset(_nsl_tools_recommends)
find_program(NSL_PATH_DPKG_SHLIBDEPS dpkg-shlibdeps)
mark_as_advanced(NSL_PATH_DPKG_SHLIBDEPS)
if(NSL_PATH_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # the tools' Depends (libnsl-dev has no ELF files)
else()
  message(STATUS "nsl: dpkg-shlibdeps not found (dpkg-dev): nsl-tools would be packaged without Depends")
endif()
set(CPACK_DEBIAN_TOOLS_DESCRIPTION
  "Neural Similarity Learning programs: train, evaluate, few-shot
nsl-train trains CNN-9 with plain, static or dynamic neural similarity
convolutions on Fashion-MNIST or CIFAR and writes metrics, curves and a model
file; nsl-eval evaluates a model file on the test split; nsl-curves draws
several runs in one picture; nsl-fewshot does
few-shot learning on glyphs rendered from the installed fonts.
License: MIT.")
if(TARGET nsl-train)
  install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" RENAME copyright
          DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/nsl-tools" COMPONENT tools EXCLUDE_FROM_ALL)
endif()

include(CPack)
