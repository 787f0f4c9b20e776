# The C ABI, the installed package (library, headers, tool, configs, CMake and pkg-config
# files) and the tests that prove a program outside this tree can use it. Included from the
# top-level CMakeLists.txt after mla_finalize_backends(), so the umbrella target `mla` exists.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# ---- The C ABI: compiled into the umbrella library, so C and C++ share one implementation.
set(MLA_C_API_SOURCES
  ${PROJECT_SOURCE_DIR}/core/src/c_api.cpp
  ${PROJECT_SOURCE_DIR}/core/src/c_api_convert.cpp
  ${PROJECT_SOURCE_DIR}/core/src/c_api_status.cpp)
target_sources(mla PRIVATE ${MLA_C_API_SOURCES})
# c_api.cpp checks that mla.h's MLA_VERSION_* match project(VERSION ...).
set_property(SOURCE ${PROJECT_SOURCE_DIR}/core/src/c_api.cpp APPEND PROPERTY COMPILE_DEFINITIONS
  MLA_PROJECT_VERSION_MAJOR=${PROJECT_VERSION_MAJOR}
  MLA_PROJECT_VERSION_MINOR=${PROJECT_VERSION_MINOR}
  MLA_PROJECT_VERSION_PATCH=${PROJECT_VERSION_PATCH})

# ---- The installed library: one shared libmla.so.
# In the build tree `mla` stays a static archive (the tests, the tool and other engineers'
# targets link it as before). What gets installed is a shared library built from the very
# same object files (the umbrella with the registry and the C ABI, the core, every backend),
# so a C program links one file and never sees the C++ dependencies. It is exported as
# mla::mla, the name the build tree uses.
set(MLA_SHARED_MEMBERS mla mla_core)
foreach(name IN LISTS MLA_BACKENDS)
  list(APPEND MLA_SHARED_MEMBERS mla_backend_${name})
endforeach()
set(MLA_SHARED_OBJECTS "")
foreach(member IN LISTS MLA_SHARED_MEMBERS)
  list(APPEND MLA_SHARED_OBJECTS $<TARGET_OBJECTS:${member}>)
endforeach()
add_library(mla_shared SHARED ${MLA_SHARED_OBJECTS})
# The objects above define every symbol of the archives, so linking `mla` adds no archive
# member; it brings what the members need from outside (TBB, spdlog, CUDA runtime, objects
# a backend adds from its own object libraries).
target_link_libraries(mla_shared PRIVATE mla)
target_include_directories(mla_shared INTERFACE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/core/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
# The C++ headers (registry.hpp, config.hpp) include <nlohmann/json.hpp>; mla.h needs nothing.
target_link_libraries(mla_shared INTERFACE nlohmann_json::nlohmann_json)
target_compile_features(mla_shared INTERFACE cxx_std_20)
# Which libstdc++ libmla.so carries (cmake/MlaCxxRuntime.cmake says why it matters).
include(${PROJECT_SOURCE_DIR}/cmake/MlaCxxRuntime.cmake)
mla_link_cxx_runtime(mla_shared)
set_target_properties(mla_shared PROPERTIES
  OUTPUT_NAME mla
  EXPORT_NAME mla
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR})

# ---- Install rules.
set(MLA_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/mla)
set(MLA_INSTALL_CONFIGSDIR ${CMAKE_INSTALL_DATADIR}/mla/configs)

install(TARGETS mla_shared EXPORT mlaTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# mla/simd/ holds Highway "-inl" headers for the host backends' kernels: not part of the API.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/core/include/mla DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp" PATTERN "simd" EXCLUDE)
# Globbed at configure time: a config added later needs a re-configure to be installed
# (CONFIGURE_DEPENDS makes ninja do that on its own).
file(GLOB MLA_SHIPPED_CONFIGS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/configs/*.json)
install(FILES ${MLA_SHIPPED_CONFIGS} DESTINATION ${MLA_INSTALL_CONFIGSDIR})
install(FILES ${PROJECT_SOURCE_DIR}/docs/embedding.md DESTINATION ${CMAKE_INSTALL_DOCDIR} OPTIONAL)

install(EXPORT mlaTargets NAMESPACE mla:: DESTINATION ${MLA_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mlaConfig.cmake.in
  ${CMAKE_BINARY_DIR}/package/mlaConfig.cmake
  INSTALL_DESTINATION ${MLA_INSTALL_CMAKEDIR}
  PATH_VARS MLA_INSTALL_CONFIGSDIR CMAKE_INSTALL_BINDIR)
# The ABI only grows within a major version, so any 0.x >= the requested one will do.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/package/mlaConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/package/mlaConfig.cmake ${CMAKE_BINARY_DIR}/package/mlaConfigVersion.cmake
  DESTINATION ${MLA_INSTALL_CMAKEDIR})

# pkg-config: relocatable, so `cmake --install --prefix <anywhere>` gives a working file.
file(RELATIVE_PATH MLA_PC_PREFIX_FROM_PCDIR /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" MLA_PC_PREFIX_FROM_PCDIR "${MLA_PC_PREFIX_FROM_PCDIR}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/mla.pc.in ${CMAKE_BINARY_DIR}/package/mla.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/package/mla.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The `mla` tool and the package tests: their targets and test setup come later in the
# top-level CMakeLists.txt (cli/, enable_testing()), so these run at the end of it.
function(mla_package_finish)
  if(TARGET mla_cli)
    install(TARGETS mla_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
  if(MLA_BUILD_TESTS)
    include(${PROJECT_SOURCE_DIR}/tests/package/PackageTests.cmake)
  endif()
endfunction()
cmake_language(DEFER DIRECTORY ${PROJECT_SOURCE_DIR} CALL mla_package_finish)
