// kick/yaml_text.hpp: the one way kick parses the text of a YAML file it was given (task files, judge prompt
// files, experiments). Header-only, so only the libraries that link yaml-cpp (eval, pipeline) pay for it.
// The text must be UTF-8 first: YAML requires it, and these files' strings end up in JSON results, whose writer
// throws on invalid UTF-8 long after the file was read (found by fuzzing the experiment reader). yaml-cpp also
// decodes some escapes of a valid file ("\_" for U+00A0, "\N" for U+0085) to a raw byte rather than its UTF-8
// encoding, so every decoded scalar is checked too. And every mapping key must be a plain scalar: no kick file
// has a list or a mapping as a key, and yaml-cpp's conversion of one throws a bare exception in whichever reader
// asks for the key's name (found by fuzzing the experiment reader, then the judge prompt reader).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "kick/core.hpp"

namespace kick {

// `where` is the path to `node` ("grid[0]", "defaults.x"), empty at the root.
inline void check_yaml_tree(const YAML::Node& node, const std::string& file, const std::string& where = "") {
  if (node.IsScalar()) {
    if (find_invalid_utf8(node.Scalar())) {
      fail("{}:{}: the value {} decodes to bytes that are not UTF-8 (write the character itself, not a \\_ or \\N escape)",
           file, node.Mark().line + 1, node.Mark().is_null() ? std::string("here") : fmt::format("at column {}", node.Mark().column + 1));
    }
  } else if (node.IsSequence()) {
    size_t i = 0;
    for (const auto& child : node) check_yaml_tree(child, file, fmt::format("{}[{}]", where, i++));
  } else if (node.IsMap()) {
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) {
        fail("{}:{}: {}expected key names, found a {} used as a key", file, kv.first.Mark().line + 1,
             where.empty() ? "" : where + ": ", kv.first.IsSequence() ? "list" : kv.first.IsMap() ? "mapping" : "null");
      }
      check_yaml_tree(kv.first, file, where);
      check_yaml_tree(kv.second, file, where.empty() ? kv.first.Scalar() : where + "." + kv.first.Scalar());
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
  check_yaml_tree(root, file);
  return root;
}

}  // namespace kick
