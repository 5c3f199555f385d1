# Compiler options shared by every target of the executor_exporter project.
#
#   executor_exporter_apply_sanitizer()
#       Adds the sanitizer flags selected by EXECUTOR_EXPORTER_SANITIZE ("" | thread | address)
#       to all targets created afterwards in the calling directory and its subdirectories.
#       Also sets EXECUTOR_EXPORTER_SANITIZER_FLAGS (a list, empty when off) in the caller's
#       scope, so that helper builds (consumer tests) can use the same flags.
#
#   executor_exporter_target_warnings(<target>)
#       -Wall -Wextra -Wpedantic (+ -Werror when EXECUTOR_EXPORTER_WERROR is ON).

include_guard(GLOBAL)

macro(executor_exporter_apply_sanitizer)
  set(EXECUTOR_EXPORTER_SANITIZER_FLAGS "")
  if(EXECUTOR_EXPORTER_SANITIZE STREQUAL "")
    # nothing
  elseif(EXECUTOR_EXPORTER_SANITIZE STREQUAL "thread")
    set(EXECUTOR_EXPORTER_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
  elseif(EXECUTOR_EXPORTER_SANITIZE STREQUAL "address")
    set(EXECUTOR_EXPORTER_SANITIZER_FLAGS -fsanitize=address,undefined
                                          -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  else()
    message(
      FATAL_ERROR
        "EXECUTOR_EXPORTER_SANITIZE must be empty, 'thread' or 'address' (got '${EXECUTOR_EXPORTER_SANITIZE}')"
    )
  endif()
  if(EXECUTOR_EXPORTER_SANITIZER_FLAGS)
    if(MSVC)
      message(FATAL_ERROR "EXECUTOR_EXPORTER_SANITIZE is only supported with GCC and Clang")
    endif()
    message(STATUS "executor_exporter: sanitizer '${EXECUTOR_EXPORTER_SANITIZE}' "
                   "(${EXECUTOR_EXPORTER_SANITIZER_FLAGS})")
    add_compile_options(${EXECUTOR_EXPORTER_SANITIZER_FLAGS})
    add_link_options(${EXECUTOR_EXPORTER_SANITIZER_FLAGS})
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      # GCC's sanitizer instrumentation produces false -Wmaybe-uninitialized warnings (e.g. in
      # libstdc++'s <regex> used by Catch2); the non-sanitized build keeps the warning.
      add_compile_options(-Wno-maybe-uninitialized)
    endif()
    if(EXECUTOR_EXPORTER_SANITIZE STREQUAL "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      # GCC warns (-Wtsan) that TSan does not model std::atomic_thread_fence, e.g. inside
      # Boost.Asio; keep the warning visible but do not let -Werror turn it into an error.
      include(CheckCXXCompilerFlag)
      check_cxx_compiler_flag(-Wno-error=tsan EXECUTOR_EXPORTER_HAS_WNO_ERROR_TSAN)
      if(EXECUTOR_EXPORTER_HAS_WNO_ERROR_TSAN)
        add_compile_options(-Wno-error=tsan)
      endif()
    endif()
  endif()
endmacro()

function(executor_exporter_target_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 $<$<BOOL:${EXECUTOR_EXPORTER_WERROR}>:/WX>)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
                                             $<$<BOOL:${EXECUTOR_EXPORTER_WERROR}>:-Werror>)
    # GCC 12 at -O3 reports std::string copies in libstdc++ as overlapping memcpy
    # (-Wrestrict, GCC bug 105329): a false positive that -Werror would make fatal.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
      target_compile_options(${target} PRIVATE -Wno-restrict)
    endif()
  endif()
endfunction()
