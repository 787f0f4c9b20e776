# Tests of the installed package (included by cmake/MlaPackage.cmake at the end of the
# top-level CMakeLists.txt, where enable_testing() has run). A fixture installs into a
# temporary prefix and builds examples/custom_runtime against it; the tests run that program
# on each backend it can.
# Exit code 77 means "skipped": the config is not there yet, or its backend is unavailable.
set(MLA_PACKAGE_WORK ${CMAKE_BINARY_DIR}/tests/package)
set(MLA_PACKAGE_PREFIX ${MLA_PACKAGE_WORK}/prefix)
set(MLA_EXAMPLE ${MLA_PACKAGE_WORK}/example/custom_runtime)

add_test(NAME package.install_and_build_example
  COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${CMAKE_BINARY_DIR} -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
          -DWORK_DIR=${MLA_PACKAGE_WORK} -DGENERATOR=${CMAKE_GENERATOR}
          -P ${CMAKE_CURRENT_LIST_DIR}/install_and_build.cmake)
set_tests_properties(package.install_and_build_example PROPERTIES
  FIXTURES_SETUP mla_installed TIMEOUT 600 RUN_SERIAL ON)

# The example opens the installed cpu config when given none.
add_test(NAME package.example_cpu COMMAND ${MLA_EXAMPLE})
set_tests_properties(package.example_cpu PROPERTIES FIXTURES_REQUIRED mla_installed TIMEOUT 300)

# configs/sc11_fp300.json is picked up as soon as it exists in the source tree (the install
# copies every configs/*.json); until then, or while sim_tpu is unavailable, the test skips.
add_test(NAME package.example_sim_tpu
  COMMAND sh -c "test -f \"$1\" || { echo \"no $1 yet\"; exit 77; }; exec \"$0\" \"$1\""
          ${MLA_EXAMPLE} ${MLA_PACKAGE_PREFIX}/${CMAKE_INSTALL_DATADIR}/mla/configs/sc11_fp300.json)
set_tests_properties(package.example_sim_tpu PROPERTIES FIXTURES_REQUIRED mla_installed TIMEOUT 300
  SKIP_RETURN_CODE 77)

# Python users: the package cmake --install put under the prefix loads the library beside it,
# with no MLA_LIBRARY (python/CMakeLists.txt sets MLA_PYTHON, MLA_INSTALL_PYTHONDIR and the
# global property MLA_PYTHON_TESTS when it registers the Python tests).
get_property(mla_python_tests GLOBAL PROPERTY MLA_PYTHON_TESTS)
if(mla_python_tests)
  add_test(NAME python.installed
    COMMAND ${MLA_PYTHON} -c [=[
import os, sys
import mla
prefix = os.path.realpath(sys.argv[1])
assert os.path.realpath(mla.__file__).startswith(prefix), mla.__file__
assert mla.library_path().startswith(prefix), mla.library_path()
assert mla.library_source() == "beside the package", mla.library_source()
names = [b.name for b in mla.backends()]
assert "cpu" in names, names
print("installed package", mla.__file__, "loads", mla.library_path(), names)
]=] ${MLA_PACKAGE_PREFIX})
  set_tests_properties(python.installed PROPERTIES
    ENVIRONMENT "PYTHONPATH=${MLA_PACKAGE_PREFIX}/${MLA_INSTALL_PYTHONDIR};PYTHONDONTWRITEBYTECODE=1"
    ENVIRONMENT_MODIFICATION "MLA_LIBRARY=unset:"
    FIXTURES_REQUIRED mla_installed TIMEOUT 60)
endif()

# pkg-config users: compile the example with nothing but `pkg-config --cflags --libs mla`.
find_program(MLA_PKG_CONFIG pkg-config)
find_program(MLA_C_COMPILER NAMES cc gcc clang)
if(MLA_PKG_CONFIG AND MLA_C_COMPILER)
  add_test(NAME package.pkg_config_build
    COMMAND sh -c [=[
      set -e
      export PKG_CONFIG_PATH="$2"
      test "$("$1" --modversion mla)" = "$5"
      configs=$("$1" --variable=configsdir mla)
      "$3" -std=c99 -Wall -Wextra -Werror -pedantic -o "$4/custom_runtime_pc" "$6" \
        $("$1" --cflags mla) $("$1" --libs mla) -Wl,-rpath,"$("$1" --variable=libdir mla)"
      exec "$4/custom_runtime_pc" "$configs/cpu.json" 1 64
    ]=] pkg_config_build
      ${MLA_PKG_CONFIG} ${MLA_PACKAGE_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig ${MLA_C_COMPILER}
      ${MLA_PACKAGE_WORK} ${PROJECT_VERSION} ${PROJECT_SOURCE_DIR}/examples/custom_runtime/main.c)
  set_tests_properties(package.pkg_config_build PROPERTIES FIXTURES_REQUIRED mla_installed TIMEOUT 300)
endif()

# mla.h is C99: self-contained, no warnings, pedantic. Compiled straight from the source tree.
if(MLA_C_COMPILER)
  add_test(NAME c_api.header_c99
    COMMAND ${MLA_C_COMPILER} -std=c99 -Wall -Wextra -Werror -pedantic -Wstrict-prototypes -fsyntax-only
            -I${PROJECT_SOURCE_DIR}/core/include ${CMAKE_CURRENT_LIST_DIR}/header_c99.c)
  set_tests_properties(c_api.header_c99 PROPERTIES TIMEOUT 60)
endif()
