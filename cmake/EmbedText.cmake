# Writes OUT, a C++ source defining executor_exporter::detail::${NAME} (a std::string_view)
# as the text of IN, so the library can serve a file without installing it.
# Usage: cmake -DIN=file -DOUT=file.cpp -DNAME=identifier -P EmbedText.cmake
file(READ "${IN}" content)
string(FIND "${content}" ")EEEMBED\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "EmbedText: ${IN} contains the raw-string delimiter )EEEMBED\"")
endif()
file(WRITE "${OUT}.tmp"
     "// Generated from ${IN} by cmake/EmbedText.cmake: edit that file, not this one.\n"
     "#include <string_view>\n"
     "namespace executor_exporter::detail {\n"
     "extern const std::string_view ${NAME};\n"
     "const std::string_view ${NAME} = R\"EEEMBED(${content})EEEMBED\";\n"
     "}  // namespace executor_exporter::detail\n")
# Only a changed text rebuilds what depends on it.
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
