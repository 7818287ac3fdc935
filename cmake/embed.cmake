# Turns a text file into a C++ source defining std::string_view mw::NAME().
file(READ ${INPUT} content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
file(WRITE ${OUTPUT} "#include <string_view>\nnamespace mw {\nstatic const char ${NAME}_data[] = {${bytes} 0};\nstd::string_view ${NAME}() { return {${NAME}_data, sizeof(${NAME}_data) - 1}; }\n}\n")
