# Packaging test driver, run by ctest (see tests/CMakeLists.txt):
#
#   MODE=install : `cmake --install` the main build into a scratch prefix, then configure, build
#                  and run tests/consumer (find_package(executor_exporter CONFIG REQUIRED)),
#                  and build and run the same program with flags from the installed
#                  pkg-config file.
#   MODE=subdir  : configure, build and run tests/subdir_consumer, which pulls the library in
#                  with add_subdirectory(SOURCE_DIR).
#
# Every step is bounded by STEP_TIMEOUT seconds. The consumer uses the same compiler, generator,
# build type and (sanitizer) flags as the main build.

cmake_minimum_required(VERSION 3.25)

foreach(var MODE SOURCE_DIR BINARY_DIR CONSUMER_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "RunConsumerTest.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT MODE MATCHES "^(install|subdir)$")
  message(FATAL_ERROR "RunConsumerTest.cmake: MODE must be 'install' or 'subdir'")
endif()
if(NOT DEFINED STEP_TIMEOUT)
  set(STEP_TIMEOUT 600)
endif()
if(NOT DEFINED BUILD_TYPE OR BUILD_TYPE STREQUAL "")
  set(BUILD_TYPE "${CONFIG}")
endif()
if(BUILD_TYPE STREQUAL "")
  set(BUILD_TYPE Release)
endif()
set(jobs "$ENV{EE_CONSUMER_JOBS}")
if(jobs STREQUAL "")
  set(jobs 2)
endif()

function(run_step name)
  message(STATUS "[${MODE}] ${name}: ${ARGN}")
  execute_process(
    COMMAND ${ARGN}
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE out
    TIMEOUT ${STEP_TIMEOUT})
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[${MODE}] ${name} failed (${rc}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/build")

set(configure_args
    -S "${CONSUMER_DIR}" -B "${consumer_build}" -G "${GENERATOR}"
    "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${LINKER_FLAGS}"
    "-DCMAKE_SHARED_LINKER_FLAGS=${LINKER_FLAGS}")
if(DEFINED MAKE_PROGRAM AND NOT MAKE_PROGRAM STREQUAL "")
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

if(MODE STREQUAL "install")
  set(install_args --install "${BINARY_DIR}" --prefix "${prefix}")
  if(NOT CONFIG STREQUAL "")
    list(APPEND install_args --config "${CONFIG}")
  endif()
  run_step("install" "${CMAKE_COMMAND}" ${install_args})
  if(NOT EXISTS "${prefix}/include/executor_exporter/executor_exporter.hpp")
    message(FATAL_ERROR "install did not produce include/executor_exporter/executor_exporter.hpp")
  endif()
  list(APPEND configure_args "-DCMAKE_PREFIX_PATH=${prefix}"
       # Only the scratch prefix may provide executor_exporter.
       -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
else()
  list(APPEND configure_args "-DEXECUTOR_EXPORTER_SOURCE_DIR=${SOURCE_DIR}")
  if(DEFINED BUILD_SHARED_LIBS AND NOT BUILD_SHARED_LIBS STREQUAL "")
    list(APPEND configure_args "-DBUILD_SHARED_LIBS=${BUILD_SHARED_LIBS}")
  endif()
endif()

run_step("configure" "${CMAKE_COMMAND}" ${configure_args})
if(MODE STREQUAL "install" AND NOT step_output MATCHES "executor_exporter found in ")
  # The consumer prints where the package came from; make sure it is the scratch prefix.
  message(FATAL_ERROR "[install] the consumer did not report the package location:\n${step_output}")
endif()
if(MODE STREQUAL "install")
  string(FIND "${step_output}" "executor_exporter found in ${prefix}/" where)
  if(where EQUAL -1)
    message(FATAL_ERROR "[install] executor_exporter was not found in ${prefix}:\n${step_output}")
  endif()
endif()

set(build_args --build "${consumer_build}" --parallel ${jobs})
if(NOT CONFIG STREQUAL "")
  list(APPEND build_args --config "${CONFIG}")
endif()
run_step("build" "${CMAKE_COMMAND}" ${build_args})

file(GLOB_RECURSE exes LIST_DIRECTORIES false "${consumer_build}/*consumer_app*")
list(FILTER exes EXCLUDE REGEX "\\.(o|obj|d|pdb|ilk|cmake)$")
list(FILTER exes EXCLUDE REGEX "CMakeFiles")
list(LENGTH exes n_exes)
if(NOT n_exes EQUAL 1)
  message(FATAL_ERROR "[${MODE}] expected exactly one consumer_app executable, found: ${exes}")
endif()
run_step("run" ${exes})
message(STATUS "[${MODE}] consumer output: ${step_output}")

if(MODE STREQUAL "install")
  # The same consumer, built without CMake: the flags come from the installed pkg-config
  # file alone (the library is static or shared, as built).
  file(GLOB_RECURSE pcs "${prefix}/*/executor_exporter.pc")
  list(LENGTH pcs n_pcs)
  if(NOT n_pcs EQUAL 1)
    message(FATAL_ERROR "[install] expected one installed executor_exporter.pc, found: ${pcs}")
  endif()
  get_filename_component(pc_dir "${pcs}" DIRECTORY)
  find_program(PKG_CONFIG pkg-config REQUIRED)
  set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
  run_step("pkg-config" "${PKG_CONFIG}" --cflags --libs --static executor_exporter)
  string(STRIP "${step_output}" pc_flags)
  separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
  separate_arguments(extra_cxx UNIX_COMMAND "${CXX_FLAGS}")
  separate_arguments(extra_ld UNIX_COMMAND "${LINKER_FLAGS}")
  set(pc_app "${WORK_DIR}/pkgconfig_consumer")
  run_step("pkg-config build" "${CXX_COMPILER}" ${extra_cxx} "${CONSUMER_DIR}/main.cpp" -o
           "${pc_app}" ${pc_flags} ${extra_ld})
  run_step("pkg-config run" "${pc_app}")
endif()
message(STATUS "[${MODE}] OK")
