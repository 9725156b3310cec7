// kick/yaml_text.hpp: the one way kick parses the text of a YAML file it was given (task files, judge prompt
// files, experiments). Header-only, so only the libraries that link yaml-cpp (eval, pipeline) pay for it.
// The text must be UTF-8 first: YAML requires it, and these files' strings end up in JSON results, whose writer
// throws on invalid UTF-8 long after the file was read (found by fuzzing the experiment reader).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "kick/core.hpp"

namespace kick {

inline YAML::Node parse_yaml_text(const std::string& text, const std::string& file) {
  if (const auto bad = find_invalid_utf8(text)) {
    fail("{}: not UTF-8 text (invalid byte 0x{:02X} at offset {})", file, static_cast<unsigned char>(text[*bad]), *bad);
  }
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) fail("{}: not valid YAML: {}", file, e.msg);
    fail("{}:{}: not valid YAML: {}", file, e.mark.line + 1, e.msg);
  }
}

}  // namespace kick
