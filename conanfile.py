"""Conan 2 recipe for procpool.

    conan create . -o "procpool/*:shared=True" -o "procpool/*:azure=True"

Builds with procpool's own CMake (CMakeToolchain + CMakeDeps), tests with test_package/. The core
needs only Boost (header-only) and fmt; the `azure` option also builds and packages the Azure
transcription example programs (procpool-transcribe-server, procpool-azure-worker), which need
libcurl, nlohmann_json and cpp-httplib.

Tested by hand: the CMake configure and install this recipe drives (the same cache variables,
static, azure on), and test_package/ built and run with plain CMake against that install; CTest
does the latter on every run against an install of the build tree (packaging.test_package). Not
tested: Conan itself, which could not be installed where procpool is developed.
"""

import os

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, rmdir

required_conan_version = ">=2.0.0"


class ProcpoolConan(ConanFile):
    name = "procpool"
    version = "0.1.0"
    description = (
        "Recyclable worker-process pool for C++20: jobs run in worker processes that are "
        "replaced by policy, so what their native code leaks dies with them."
    )
    license = "MIT"
    topics = ("process-pool", "worker", "memory-leak", "shared-memory", "linux")
    package_type = "library"
    settings = "os", "arch", "compiler", "build_type"
    options = {
        "shared": [True, False],
        "fPIC": [True, False],
        "azure": [True, False],
    }
    default_options = {
        "shared": False,
        "fPIC": True,
        "azure": False,
        # procpool uses Boost.Process v2, Interprocess and Asio as headers only.
        "boost/*:header_only": True,
    }
    exports_sources = (
        "CMakeLists.txt",
        "LICENSE",
        "cmake/*",
        "include/*",
        "src/*",
        "examples/*",
    )

    def configure(self):
        if self.options.shared:
            self.options.rm_safe("fPIC")

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # The versions procpool is built and tested with on Debian 12 (Boost.Process v2's API
        # still moves between Boost releases). Public headers include no Boost or fmt header; a
        # static procpool still needs fmt's library at link time, so both stay visible.
        self.requires("boost/1.81.0")
        self.requires("fmt/9.1.0")
        if self.options.azure:
            # Only the example programs use these; consumers of the library do not see them.
            self.requires("libcurl/[>=7.88 <9]", visible=False)
            self.requires("nlohmann_json/[>=3.11 <4]", visible=False)
            self.requires("cpp-httplib/[>=0.11 <1]", visible=False)

    def validate(self):
        if self.settings.os != "Linux":
            raise ConanInvalidConfiguration(
                f"procpool supports Linux only (pidfd, /proc, PR_SET_PDEATHSIG), not {self.settings.os}"
            )
        check_min_cppstd(self, 20)

    def generate(self):
        tc = CMakeToolchain(self)
        # BUILD_SHARED_LIBS and CMAKE_POSITION_INDEPENDENT_CODE come from shared/fPIC.
        tc.cache_variables["PROCPOOL_INSTALL"] = True
        tc.cache_variables["PROCPOOL_BUILD_TESTS"] = False
        tc.cache_variables["PROCPOOL_BUILD_EXAMPLES"] = False
        tc.cache_variables["PROCPOOL_BUILD_BENCHMARKS"] = False
        tc.cache_variables["PROCPOOL_BUILD_AZURE_EXAMPLE"] = bool(self.options.azure)
        tc.cache_variables["PROCPOOL_INSTALL_AZURE_EXAMPLE"] = bool(self.options.azure)
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.install()
        # Consumers get the CMake config and the .pc that CMakeDeps/PkgConfigDeps generate from
        # package_info(), not procpool's own.
        rmdir(self, os.path.join(self.package_folder, "lib", "cmake"))
        rmdir(self, os.path.join(self.package_folder, "lib", "pkgconfig"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "procpool")
        self.cpp_info.set_property("cmake_target_name", "procpool::procpool")
        self.cpp_info.set_property("pkg_config_name", "procpool")
        self.cpp_info.libs = ["procpool"]
        self.cpp_info.system_libs = ["pthread"]
        if self.options.shared:
            self.cpp_info.defines = ["PROCPOOL_SHARED"]
        if self.options.azure:
            self.buildenv_info.prepend_path("PATH", os.path.join(self.package_folder, "bin"))
            self.runenv_info.prepend_path("PATH", os.path.join(self.package_folder, "bin"))
