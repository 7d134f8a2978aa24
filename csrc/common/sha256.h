// SHA-256 of a byte string (FIPS 180-4), as lowercase hex. Identifies files by content: the known
// tiktoken vocabularies are recognised by the same sha256 that tiktoken itself checks its
// downloads against (its `expected_hash`).
#pragma once
#include <string>

namespace scorch {

std::string sha256_hex(const std::string& bytes);

}  // namespace scorch
