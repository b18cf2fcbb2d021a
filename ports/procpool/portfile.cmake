# procpool as a vcpkg overlay port. It builds the procpool checkout it sits in (ports/procpool/ is
# two levels below the source root), so that a host service can use a procpool tree it vendors or
# pins as a submodule:
#
#   vcpkg install procpool --overlay-ports=<procpool>/ports            (classic mode)
#   "dependencies": ["procpool"] + "overlay-ports": ["<procpool>/ports"] in vcpkg-configuration.json
#
# A copy of this port in a registry fetches a release instead; replace the SOURCE_PATH block with
#   vcpkg_from_git(OUT_SOURCE_PATH SOURCE_PATH URL <procpool's git URL> REF <commit sha>
#                  HEAD_REF main)
#
# Tested by hand: the CMake configure and install below (the same options; static, azure on) and
# test_package/ built and run against that install with plain CMake; CTest does the latter on every
# run against an install of the build tree (packaging.test_package). Not tested: vcpkg itself,
# which could not be installed where procpool is developed.
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
if(NOT EXISTS "${SOURCE_PATH}/CMakeLists.txt" OR NOT EXISTS "${SOURCE_PATH}/include/procpool/pool.hpp")
  message(FATAL_ERROR "procpool port: ${SOURCE_PATH} is not a procpool source tree; use the port "
                      "from ports/procpool of a procpool checkout, or switch it to vcpkg_from_git")
endif()

# The core needs only Boost (headers) and fmt; `azure` adds the example programs and their
# dependencies (libcurl, nlohmann-json, cpp-httplib).
vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    azure PROCPOOL_BUILD_AZURE_EXAMPLE
    azure PROCPOOL_INSTALL_AZURE_EXAMPLE
)

# BUILD_SHARED_LIBS comes from the triplet (x64-linux: static; x64-linux-dynamic: shared).
vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${FEATURE_OPTIONS}
    -DPROCPOOL_INSTALL=ON
    -DPROCPOOL_BUILD_TESTS=OFF
    -DPROCPOOL_BUILD_EXAMPLES=OFF
    -DPROCPOOL_BUILD_BENCHMARKS=OFF
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME procpool CONFIG_PATH lib/cmake/procpool)
vcpkg_fixup_pkgconfig()

if("azure" IN_LIST FEATURES)
  vcpkg_copy_tools(TOOL_NAMES procpool-transcribe-server procpool-azure-worker AUTO_CLEAN)
endif()

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug/include" "${CURRENT_PACKAGES_DIR}/debug/share")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
