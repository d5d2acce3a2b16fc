# embed.cmake: writes OUT, a C file that holds every DIR/*.gp as a byte
# array and `plot_template(name)` to look one up, so that the templates
# stay gnuplot files in the source tree and an installed binary needs none.
#   cmake -DDIR=plots -DOUT=plot_templates.c -P embed.cmake
file(GLOB templates ${DIR}/*.gp)
list(SORT templates)
set(body "/* Generated from the templates in plots/ by plots/embed.cmake: edit those, not this. */\n#include <string.h>\n\n")
set(table "")
set(i 0)
foreach(t ${templates})
  get_filename_component(name ${t} NAME_WE)
  file(READ ${t} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const unsigned char k_t${i}[] = {${bytes}0x00};\n")
  string(APPEND table "    {\"${name}\", k_t${i}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND body "\nstatic const struct {\n  const char *name;\n  const unsigned char *text;\n} k_templates[] = {\n${table}};\n\n")
string(APPEND body "const char *plot_template(const char *name);\n")
string(APPEND body "const char *plot_template(const char *name) {\n  for (size_t i = 0; i < sizeof k_templates / sizeof k_templates[0]; i++)\n    if (strcmp(k_templates[i].name, name) == 0) return (const char *)k_templates[i].text;\n  return NULL;\n}\n")
file(WRITE ${OUT}.tmp "${body}")
file(RENAME ${OUT}.tmp ${OUT})
