# Packaging tests: does procpool work for a project that consumes it the three supported ways?
# include() this from tests/CMakeLists.txt. Each test configures and builds a small consumer
# project (tests/packaging/consumer or subdir_consumer) with the same compiler and generator and
# runs it; see run_consumer.cmake. They need the procpool library built first (`cmake --build`).
#
#   packaging.find_package_installed  cmake --install into a prefix, find_package(procpool CONFIG)
#   packaging.add_subdirectory        add_subdirectory(<procpool source>) from a parent project
#   packaging.fetchcontent            FetchContent_MakeAvailable(procpool), source dir overridden
#   packaging.pkg_config              cmake --install into a prefix, pkg-config --cflags --libs
#   packaging.test_package            cmake --install into a prefix, build test_package/ (the
#                                     Conan/vcpkg smoke test) against it with plain CMake
include_guard(GLOBAL)

set(_procpool_packaging_dir "${CMAKE_CURRENT_LIST_DIR}")

if(PROCPOOL_SANITIZE)
  # procpool's objects would carry sanitizer calls that a plain consumer does not link against.
  message(STATUS "procpool: packaging tests skipped in a PROCPOOL_SANITIZE=${PROCPOOL_SANITIZE} build")
  return()
endif()

set(_procpool_packaging_common
    "-DPROCPOOL_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
    "-DPROCPOOL_BINARY_DIR=${PROJECT_BINARY_DIR}"
    "-DCONSUMER_DIR=${_procpool_packaging_dir}"
    "-DCXX_COMPILER=${CMAKE_CXX_COMPILER}"
    "-DGENERATOR=${CMAKE_GENERATOR}"
    "-DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}"
    "-DCONFIG=$<CONFIG>"
    "-DLIBDIR=${CMAKE_INSTALL_LIBDIR}"
    "-DWERROR=${PROCPOOL_WARNINGS_AS_ERRORS}"
    "-DSHARED=$<BOOL:${BUILD_SHARED_LIBS}>")

set(_procpool_packaging_tests add_subdirectory fetchcontent)
if(PROCPOOL_INSTALL)
  list(APPEND _procpool_packaging_tests find_package_installed test_package)
  find_program(PROCPOOL_PKG_CONFIG_EXECUTABLE NAMES pkg-config pkgconf)
  if(PROCPOOL_PKG_CONFIG_EXECUTABLE)
    list(APPEND _procpool_packaging_tests pkg_config)
  else()
    message(WARNING "procpool: pkg-config not found; packaging.pkg_config is not added")
  endif()
else()
  message(STATUS "procpool: PROCPOOL_INSTALL is OFF; only packaging.add_subdirectory is added")
endif()

foreach(_test IN LISTS _procpool_packaging_tests)
  set(_mode ${_test})
  if(_test STREQUAL "find_package_installed")
    set(_mode find_package)
  endif()
  add_test(NAME packaging.${_test}
           COMMAND "${CMAKE_COMMAND}" ${_procpool_packaging_common} "-DMODE=${_mode}"
                   "-DWORK_DIR=${PROJECT_BINARY_DIR}/packaging/${_test}"
                   "-DPKG_CONFIG=${PROCPOOL_PKG_CONFIG_EXECUTABLE}"
                   -P "${_procpool_packaging_dir}/run_consumer.cmake")
  set_tests_properties(packaging.${_test} PROPERTIES LABELS packaging TIMEOUT 600)
endforeach()

unset(_test)
unset(_mode)
unset(_procpool_packaging_tests)
unset(_procpool_packaging_common)
