# Compile-checks the C++ snippets of README.md.
#
# Every ```cpp fenced block that is directly preceded by a line `<!-- snippet -->` (blank lines
# in between are allowed) is written to its own .cpp file and compiled with -fsyntax-only.
# Each snippet must be a complete translation unit. Errors point at README.md lines (#line).
#
# Usage:
#   cmake -DREADME=<README.md> -DOUT_DIR=<dir> -DCXX_COMPILER=<c++>
#         [-DFLAGS_FILE=<file with one compiler argument per line>]
#         [-DIMPLICIT_INCLUDE_DIRS=<dirs not to pass with -I>] [-DEXTRA_FLAGS=<list>]
#         [-DALLOW_NO_SNIPPETS=ON] [-DTIMEOUT=<seconds per snippet>]
#         -P cmake/CompileSnippets.cmake
#
# A README without any marked snippet is an error unless ALLOW_NO_SNIPPETS is set: a check
# that checks nothing should not pass silently.

cmake_minimum_required(VERSION 3.25)

foreach(var README OUT_DIR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "CompileSnippets.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT DEFINED TIMEOUT)
  set(TIMEOUT 120)
endif()
if(NOT EXISTS "${README}")
  message(FATAL_ERROR "CompileSnippets.cmake: ${README} does not exist")
endif()

# Compiler arguments.
set(flags "")
if(DEFINED FLAGS_FILE AND NOT FLAGS_FILE STREQUAL "")
  if(NOT EXISTS "${FLAGS_FILE}")
    message(FATAL_ERROR "CompileSnippets.cmake: flags file ${FLAGS_FILE} does not exist")
  endif()
  file(STRINGS "${FLAGS_FILE}" flag_lines)
  foreach(flag IN LISTS flag_lines)
    string(STRIP "${flag}" flag)
    if(flag STREQUAL "" OR flag STREQUAL "-I" OR flag STREQUAL "-D")
      continue()
    endif()
    if(flag MATCHES "^-I(.*)$")
      set(dir "${CMAKE_MATCH_1}")
      if(dir IN_LIST IMPLICIT_INCLUDE_DIRS)
        continue()
      endif()
    endif()
    list(APPEND flags "${flag}")
  endforeach()
endif()
list(APPEND flags ${EXTRA_FLAGS})

file(READ "${README}" text)
string(REPLACE "\r\n" "\n" text "${text}")

file(REMOVE_RECURSE "${OUT_DIR}")
file(MAKE_DIRECTORY "${OUT_DIR}")

set(marker "<!-- snippet -->")
set(count 0)
set(failed "")
set(rest "${text}")
set(consumed 0) # characters of `text` before `rest`

while(TRUE)
  string(FIND "${rest}" "${marker}" pos)
  if(pos EQUAL -1)
    break()
  endif()
  string(LENGTH "${marker}" marker_len)
  math(EXPR after_marker "${pos} + ${marker_len}")
  string(SUBSTRING "${rest}" ${after_marker} -1 tail)

  # Line number of the marker, for messages.
  math(EXPR abs_pos "${consumed} + ${pos}")
  string(SUBSTRING "${text}" 0 ${abs_pos} before)
  string(REGEX REPLACE "[^\n]" "" newlines "${before}")
  string(LENGTH "${newlines}" marker_line)
  math(EXPR marker_line "${marker_line} + 1")

  # The fence must follow (only whitespace in between).
  if(NOT tail MATCHES "^[ \t]*\n([ \t]*\n)*```cpp[ \t]*\n")
    message(FATAL_ERROR "${README}:${marker_line}: '${marker}' is not followed by a ```cpp block")
  endif()
  string(LENGTH "${CMAKE_MATCH_0}" fence_open_len)
  string(SUBSTRING "${tail}" ${fence_open_len} -1 body_and_more)

  # Closing fence: a line that starts with ```.
  if(body_and_more MATCHES "^```")
    set(body_len 0)
  else()
    string(FIND "${body_and_more}" "\n```" body_len)
    if(body_len EQUAL -1)
      message(FATAL_ERROR "${README}:${marker_line}: unterminated ```cpp block")
    endif()
    math(EXPR body_len "${body_len} + 1") # keep the final newline
  endif()
  string(SUBSTRING "${body_and_more}" 0 ${body_len} body)

  # First line of the body, for #line.
  string(SUBSTRING "${tail}" 0 ${fence_open_len} open_part)
  string(REGEX REPLACE "[^\n]" "" nl_open "${open_part}")
  string(LENGTH "${nl_open}" n_open)
  math(EXPR body_line "${marker_line} + ${n_open}")

  math(EXPR count "${count} + 1")
  set(snippet_file "${OUT_DIR}/snippet_${count}.cpp")
  file(WRITE "${snippet_file}" "#line ${body_line} \"${README}\"\n${body}")

  execute_process(
    COMMAND "${CXX_COMPILER}" ${flags} -fsyntax-only -Wall -Wextra -Wpedantic -x c++
            "${snippet_file}"
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE out
    TIMEOUT ${TIMEOUT})
  if(NOT rc EQUAL 0)
    message(SEND_ERROR "README snippet #${count} (${README}:${body_line}) does not compile "
                       "(${snippet_file}):\n${out}")
    list(APPEND failed ${count})
  elseif(NOT out STREQUAL "")
    message(WARNING "README snippet #${count} (${README}:${body_line}) compiles with warnings:\n"
                    "${out}")
  else()
    message(STATUS "README snippet #${count} (${README}:${body_line}): OK")
  endif()

  # Continue after the closing fence.
  math(EXPR skip "${after_marker} + ${fence_open_len} + ${body_len}")
  math(EXPR consumed "${consumed} + ${skip}")
  string(SUBSTRING "${rest}" ${skip} -1 rest)
endwhile()

if(count EQUAL 0)
  if(ALLOW_NO_SNIPPETS)
    message(STATUS "No '${marker}' snippets in ${README}")
    return()
  endif()
  message(FATAL_ERROR "No ```cpp block marked with '${marker}' found in ${README}. "
                      "Mark the README's usage examples so that they are compile-checked.")
endif()
list(LENGTH failed n_failed)
if(n_failed GREATER 0)
  message(FATAL_ERROR "${n_failed} of ${count} README snippet(s) failed to compile: #${failed}")
endif()
message(STATUS "All ${count} README snippet(s) compile")
