# cmake -P script behind the package.install fixture: builds what gets installed, installs
# it into a fresh prefix, then configures and builds examples/custom_runtime against that
# prefix only (CMAKE_PREFIX_PATH), exactly as a user outside this tree would.
# Inputs: BUILD_DIR, SOURCE_DIR, WORK_DIR, GENERATOR.
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_and_build.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${ARGN}\n${out}")
  endif()
  message(STATUS "${what}: ok")
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})

# ctest does not build; make sure the installed files are the current ones.
run_step("build libmla.so and the mla tool" ${CMAKE_COMMAND} --build ${BUILD_DIR} --target mla_shared mla_cli)
run_step("install to ${prefix}" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

foreach(expected include/mla/mla.h include/mla/mla.hpp share/mla/configs/cpu.json bin/mla)
  if(NOT EXISTS ${prefix}/${expected})
    message(FATAL_ERROR "the install lacks ${expected}")
  endif()
endforeach()

run_step("configure the example against the install"
  ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/custom_runtime -B ${WORK_DIR}/example -G ${GENERATOR}
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_PACKAGE_PREFER_CONFIG=ON)
run_step("build the example" ${CMAKE_COMMAND} --build ${WORK_DIR}/example)

# The example must have found the package in the prefix, not some other installed copy.
file(STRINGS ${WORK_DIR}/example/CMakeCache.txt found_dir REGEX "^mla_DIR:")
if(NOT found_dir MATCHES "${prefix}/")
  message(FATAL_ERROR "the example found mla elsewhere: ${found_dir}")
endif()
