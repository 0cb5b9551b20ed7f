# `cpack -G DEB` in the build directory: one Debian package, liblbkit-dev,
# with what a program or a policy is built against: the library (shared with
# BUILD_SHARED_LIBS=ON, else static), the headers, lbkit.pc, the CMake
# package files, the docs and the examples' sources. The example and tool
# binaries (component Unspecified) are left out: they are demos, not a
# library's business.
set(CPACK_PACKAGE_NAME liblbkit-dev)
set(CPACK_PACKAGE_VENDOR "lbkit")
set(CPACK_PACKAGE_CONTACT "lbkit maintainers <lbkit@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "custom client-side load balancing for gRPC C++")
set(CPACK_PACKAGE_DESCRIPTION
    "lbkit lets C++ programs choose the backend of each gRPC call with their own\n"
    "load-balancing policy (resolver -> policy -> subchannel -> picker), on top\n"
    "of the distribution's gRPC C++. This package holds the library, its\n"
    "headers, a pkg-config file, CMake package files, documentation and the\n"
    "examples' sources.")
string(REPLACE ";" "" CPACK_PACKAGE_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
# Debian ships debug info apart (-dbgsym packages); a RelWithDebInfo
# liblbkit.so is ten times its stripped size.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL lbkit_dev lbkit_doc)
set(CPACK_DEBIAN_PACKAGE_NAME liblbkit-dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
# What the headers, lbkit.pc and lbkitConfig.cmake need to compile and link a
# program: gRPC C++ and protobuf (find_package(lbkit) finds both), and the
# header-only nlohmann-json that balancer.h includes.
set(LBKIT_DEB_DEPENDS "libgrpc++-dev, libprotobuf-dev, nlohmann-json3-dev")
if(BUILD_SHARED_LIBS)
  # The shared library's own run-time dependencies (libgrpc++1.51, libc-ares2,
  # libprotobuf, libstdc++...) are read from its DT_NEEDED by dpkg-shlibdeps.
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  # A static liblbkit.a: the program links c-ares itself.
  string(APPEND LBKIT_DEB_DEPENDS ", libc-ares-dev")
endif()
set(CPACK_DEBIAN_PACKAGE_DEPENDS "${LBKIT_DEB_DEPENDS}")
include(CPack)
