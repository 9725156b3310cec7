// kick/yaml_text.hpp: the one way kick parses the text of a YAML file it was given (task files, judge prompt
// files, experiments). Header-only, so only the libraries that link yaml-cpp (eval, pipeline) pay for it.
// The text must be UTF-8 first: YAML requires it, and these files' strings end up in JSON results, whose writer
// throws on invalid UTF-8 long after the file was read (found by fuzzing the experiment reader). yaml-cpp also
// decodes some escapes of a valid file ("\_" for U+00A0, "\N" for U+0085) to a raw byte rather than its UTF-8
// encoding, so every decoded scalar is checked too.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "kick/core.hpp"

namespace kick {

inline void check_yaml_scalars_utf8(const YAML::Node& node, const std::string& file) {
  if (node.IsScalar()) {
    if (find_invalid_utf8(node.Scalar())) {
      fail("{}:{}: the value {} decodes to bytes that are not UTF-8 (write the character itself, not a \\_ or \\N escape)",
           file, node.Mark().line + 1, node.Mark().is_null() ? std::string("here") : fmt::format("at column {}", node.Mark().column + 1));
    }
  } else if (node.IsSequence()) {
    for (const auto& child : node) check_yaml_scalars_utf8(child, file);
  } else if (node.IsMap()) {
    for (const auto& kv : node) {
      check_yaml_scalars_utf8(kv.first, file);
      check_yaml_scalars_utf8(kv.second, file);
    }
  }
}

inline YAML::Node parse_yaml_text(const std::string& text, const std::string& file) {
  if (const auto bad = find_invalid_utf8(text)) {
    fail("{}: not UTF-8 text (invalid byte 0x{:02X} at offset {})", file, static_cast<unsigned char>(text[*bad]), *bad);
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) fail("{}: not valid YAML: {}", file, e.msg);
    fail("{}:{}: not valid YAML: {}", file, e.mark.line + 1, e.msg);
  }
  check_yaml_scalars_utf8(root, file);
  return root;
}

}  // namespace kick
