# Turns static files into C++ functions returning std::string_view, so the demo page and the
# JavaScript client ship inside the pushd binary. Run with cmake -P:
#   -DOUTPUT=<generated .cc>  -DASSETS=<Name=path;Name=path...>
# Each Name becomes `std::string_view Name()` in namespace push::edge::embedded.
set(delimiter "pushd_embed")
set(code "// Generated from edge/web/embed.cmake at build time: do not edit.\n")
string(APPEND code "#include <string_view>\n\nnamespace push::edge::embedded {\n")
foreach(asset IN LISTS ASSETS)
  string(FIND "${asset}" "=" eq)
  string(SUBSTRING "${asset}" 0 ${eq} name)
  math(EXPR start "${eq} + 1")
  string(SUBSTRING "${asset}" ${start} -1 path)
  file(READ "${path}" content)
  string(FIND "${content}" ")${delimiter}\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${path} contains the raw-string delimiter )${delimiter}\"")
  endif()
  string(APPEND code "\nstd::string_view ${name}() {\n"
         "  static constexpr std::string_view kContent = R\"${delimiter}(${content})${delimiter}\";\n"
         "  return kContent;\n}\n")
endforeach()
string(APPEND code "\n}  // namespace push::edge::embedded\n")
# Rewrite only on change so that a touched but identical asset does not recompile.
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" previous)
  if(previous STREQUAL code)
    return()
  endif()
endif()
file(WRITE "${OUTPUT}" "${code}")
