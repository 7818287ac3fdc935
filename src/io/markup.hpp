// Text placed in HTML, SVG or XML: the one escape every page and figure uses.
#pragma once

#include <string>

namespace mw::io {

// & < > " ' as entities: safe in element text and in quoted attribute values.
std::string xml_escape(const std::string& s);

}  // namespace mw::io
