# Driver for the packaging tests: cmake -P run_consumer.cmake with
#   -DMODE=find_package|add_subdirectory|fetchcontent|pkg_config|test_package
#   -DPROCPOOL_SOURCE_DIR=<procpool's source tree>  -DPROCPOOL_BINARY_DIR=<its build tree>
#   -DWORK_DIR=<scratch dir, wiped first>           -DCONSUMER_DIR=<tests/packaging>
#   -DCXX_COMPILER=<path>  -DGENERATOR=<name>  [-DMAKE_PROGRAM=<path>]  [-DCONFIG=<build type>]
#   [-DLIBDIR=<CMAKE_INSTALL_LIBDIR>]  [-DPKG_CONFIG=<pkg-config>]  [-DWERROR=ON|OFF]
#   [-DSHARED=1|0]  (BUILD_SHARED_LIBS of procpool's build; the source-tree consumers use it too)
#
#  find_package:     cmake --install the build tree into WORK_DIR/prefix, then configure, build and
#                    run tests/packaging/consumer against it with CMAKE_PREFIX_PATH.
#  add_subdirectory: configure, build and run tests/packaging/subdir_consumer, which vendors the
#                    source tree with add_subdirectory().
#  fetchcontent:     the same with tests/packaging/fetchcontent_consumer, which uses FetchContent;
#                    FETCHCONTENT_SOURCE_DIR_PROCPOOL points it at the source tree (no clone).
#  test_package:     cmake --install into WORK_DIR/prefix, then build and run the package managers'
#                    smoke test (<source>/test_package, Conan's test_package) against it.
#  pkg_config:       cmake --install into WORK_DIR/prefix, then compile and link consumer/main.cpp
#                    with nothing but `pkg-config --cflags --libs procpool`, and run it.
cmake_minimum_required(VERSION 3.25)

foreach(var IN ITEMS MODE PROCPOOL_SOURCE_DIR PROCPOOL_BINARY_DIR WORK_DIR CONSUMER_DIR
                     CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()
# The build type of procpool's build tree ($<CONFIG>); empty when it was configured without one.
# It must match, or `cmake --install` skips the per-configuration export file.
set(config_args)
set(build_type_args)
if(DEFINED CONFIG AND NOT CONFIG STREQUAL "")
  set(config_args --config "${CONFIG}")
  set(build_type_args "-DCMAKE_BUILD_TYPE=${CONFIG}")
endif()
if(NOT DEFINED WERROR)
  set(WERROR OFF)
endif()
if(NOT DEFINED SHARED OR SHARED STREQUAL "")
  set(SHARED 0)
endif()

# The environment of the caller must not redirect the install or the consumer's build.
unset(ENV{DESTDIR})
unset(ENV{MAKEFLAGS})
unset(ENV{CMAKE_PREFIX_PATH})

# Runs one step; stops the test with a clear message when it fails or hangs.
function(step what)
  message(STATUS "packaging[${MODE}]: ${what}")
  execute_process(COMMAND ${ARGN} COMMAND_ECHO STDOUT RESULT_VARIABLE rc TIMEOUT 540)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "packaging[${MODE}]: ${what} failed (${rc})")
  endif()
endfunction()

set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/consumer-build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(generator_args -G "${GENERATOR}")
if(MAKE_PROGRAM)
  list(APPEND generator_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
set(common_args ${generator_args} "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
                ${build_type_args} "-DCONSUMER_WARNINGS_AS_ERRORS=${WERROR}"
                "-DBUILD_SHARED_LIBS=${SHARED}"
                -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)

if(MODE STREQUAL "find_package" OR MODE STREQUAL "pkg_config" OR MODE STREQUAL "test_package")
  step("install the build tree into ${prefix}"
       "${CMAKE_COMMAND}" --install "${PROCPOOL_BINARY_DIR}" --prefix "${prefix}" ${config_args})
endif()

if(MODE STREQUAL "find_package")
  step("configure the consumer against ${prefix}"
       "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}/consumer" -B "${build}" ${common_args}
       "-DCMAKE_PREFIX_PATH=${prefix}" "-DCONSUMER_EXPECTED_PREFIX=${prefix}")
  step("build the consumer" "${CMAKE_COMMAND}" --build "${build}" ${config_args} --parallel 2)
  set(exe "${build}/procpool_consumer")

elseif(MODE STREQUAL "test_package")
  step("configure test_package against ${prefix}"
       "${CMAKE_COMMAND}" -S "${PROCPOOL_SOURCE_DIR}/test_package" -B "${build}" ${common_args}
       "-DCMAKE_PREFIX_PATH=${prefix}")
  step("build test_package" "${CMAKE_COMMAND}" --build "${build}" ${config_args} --parallel 2)
  set(exe "${build}/procpool_test_package")

elseif(MODE STREQUAL "fetchcontent")
  step("configure the FetchContent consumer"
       "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}/fetchcontent_consumer" -B "${build}" ${common_args}
       "-DFETCHCONTENT_SOURCE_DIR_PROCPOOL=${PROCPOOL_SOURCE_DIR}"
       "-DPROCPOOL_GIT_URL=file://${PROCPOOL_SOURCE_DIR}")
  step("build the consumer and procpool" "${CMAKE_COMMAND}" --build "${build}" ${config_args}
       --parallel 2)
  set(exe "${build}/procpool_consumer")

elseif(MODE STREQUAL "add_subdirectory")
  step("configure the add_subdirectory consumer"
       "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}/subdir_consumer" -B "${build}" ${common_args}
       "-DPROCPOOL_SOURCE_DIR=${PROCPOOL_SOURCE_DIR}")
  step("build the consumer and procpool" "${CMAKE_COMMAND}" --build "${build}" ${config_args}
       --parallel 2)
  set(exe "${build}/procpool_consumer")

elseif(MODE STREQUAL "pkg_config")
  if(NOT PKG_CONFIG)
    set(PKG_CONFIG pkg-config)
  endif()
  if(NOT DEFINED LIBDIR OR LIBDIR STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -DLIBDIR=... is required for MODE=pkg_config")
  endif()
  set(pc_dir "${prefix}/${LIBDIR}/pkgconfig")
  if(NOT EXISTS "${pc_dir}/procpool.pc")
    message(FATAL_ERROR "packaging[pkg_config]: the install did not create ${pc_dir}/procpool.pc")
  endif()
  if(DEFINED ENV{PKG_CONFIG_PATH} AND NOT "$ENV{PKG_CONFIG_PATH}" STREQUAL "")
    set(ENV{PKG_CONFIG_PATH} "${pc_dir}:$ENV{PKG_CONFIG_PATH}")
  else()
    set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
  endif()
  message(STATUS "packaging[pkg_config]: PKG_CONFIG_PATH=$ENV{PKG_CONFIG_PATH}")
  file(READ "${pc_dir}/procpool.pc" pc_text)

  execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs procpool RESULT_VARIABLE rc
                  OUTPUT_VARIABLE flags ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "packaging[pkg_config]: pkg-config --cflags --libs procpool failed (${rc}):\n${err}")
  endif()
  message(STATUS "packaging[pkg_config]: pkg-config --cflags --libs procpool -> ${flags}")
  separate_arguments(flag_list UNIX_COMMAND "${flags}")

  # The flags must point into the install prefix: -I at its headers, -L at its library.
  file(REAL_PATH "${prefix}" real_prefix)
  set(include_ok OFF)
  set(libdir_ok OFF)
  foreach(flag IN LISTS flag_list)
    # (${CMAKE_MATCH_1} is only set once MATCHES has run, so the checks are nested.)
    if(flag MATCHES "^-([IL])(.+)$")
      set(kind "${CMAKE_MATCH_1}")
      set(dir "${CMAKE_MATCH_2}")
      if(EXISTS "${dir}")
        file(REAL_PATH "${dir}" dir)
        if(kind STREQUAL "I" AND dir STREQUAL "${real_prefix}/include"
           AND EXISTS "${dir}/procpool/procpool.hpp")
          set(include_ok ON)
        elseif(kind STREQUAL "L" AND dir STREQUAL "${real_prefix}/${LIBDIR}")
          set(libdir_ok ON)
        endif()
      endif()
    endif()
  endforeach()
  if(NOT include_ok OR NOT libdir_ok)
    message("procpool.pc as installed:\n${pc_text}")
    message(FATAL_ERROR "packaging[pkg_config]: the flags do not point into the install prefix "
                        "${prefix} (-I to its include dir: ${include_ok}, -L to its ${LIBDIR}: "
                        "${libdir_ok}). Is procpool.pc's prefix fixed at configure time?")
  endif()

  set(werror_flag)
  if(WERROR)
    set(werror_flag -Werror)
  endif()
  file(MAKE_DIRECTORY "${build}")
  set(exe "${build}/procpool_consumer")
  # Libraries after the source, as a linker with --as-needed requires.
  step("compile and link the consumer with the pkg-config flags only"
       "${CXX_COMPILER}" -Wall -Wextra -Wpedantic ${werror_flag} -o "${exe}"
       "${CONSUMER_DIR}/consumer/main.cpp" ${flag_list})
  # pkg-config gives no rpath: a shared libprocpool in a private prefix is found the usual way.
  set(ENV{LD_LIBRARY_PATH} "${prefix}/${LIBDIR}")

else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

if(NOT EXISTS "${exe}")
  message(FATAL_ERROR "packaging[${MODE}]: ${exe} was not built")
endif()
step("run the consumer" "${exe}")
message(STATUS "packaging[${MODE}]: passed")
