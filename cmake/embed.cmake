# Turns a text file into a C++ source defining mw::embedded_registry_json().
file(READ ${INPUT} content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
file(WRITE ${OUTPUT} "#include <string_view>\nnamespace mw {\nstatic const char kData[] = {${bytes} 0};\nstd::string_view embedded_registry_json() { return {kData, sizeof(kData) - 1}; }\n}\n")
