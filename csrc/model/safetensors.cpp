// safetensors reader/writer (format spec: https://github.com/huggingface/safetensors, "Format").
// Reading maps the file and validates the whole header before touching tensor bytes: the header
// length is bounded by the file size and by kMaxHeaderBytes, the header is UTF-8 JSON, every dtype
// is known, each tensor's byte span equals numel × element size, and the spans tile the data region
// exactly (sorted by offset: no gap, no overlap, nothing past the end). Any violation is a UserError
// naming the file and the field, so a hostile file can never cause an out-of-bounds read.
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"

namespace scorch::safetensors {
namespace {

// The reference implementation refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  size_t bytes;
};

const DtypeInfo kDtypes[] = {
    {"F64", at::kDouble, 8},         {"F32", at::kFloat, 4},         {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2},      {"I64", at::kLong, 8},          {"I32", at::kInt, 4},
    {"I16", at::kShort, 2},          {"I8", at::kChar, 1},           {"U8", at::kByte, 1},
    {"BOOL", at::kBool, 1},          {"F8_E4M3", at::kFloat8_e4m3fn, 1}, {"F8_E5M2", at::kFloat8_e5m2, 1},
    {"U16", at::kUInt16, 2},         {"U32", at::kUInt32, 4},        {"U64", at::kUInt64, 8},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const DtypeInfo& dtype_of(at::ScalarType t, const std::string& tensor_name) {
  for (const auto& d : kDtypes) {
    if (d.type == t) return d;
  }
  throw UserError("safetensors cannot store tensor '" + tensor_name + "' of dtype " +
                  std::string(c10::toString(t)));
}

std::string known_dtypes() {
  std::string out;
  for (const auto& d : kDtypes) out += (out.empty() ? "" : ", ") + std::string(d.name);
  return out;
}

// Strict UTF-8 validation (no overlongs, no surrogates, max U+10FFFF).
bool valid_utf8(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// A read-only mapping of a whole file, unmapped on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    // O_NONBLOCK: opening a FIFO put in a weights file's place must fail below, not wait forever.
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd_ < 0) throw UserError("cannot open safetensors file '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw UserError("'" + path + "' is not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (p == MAP_FAILED) {
        ::close(fd_);
        throw UserError("cannot memory-map '" + path + "': " + std::strerror(errno));
      }
      data_ = static_cast<const unsigned char*>(p);
    }
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const unsigned char* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  std::string path_;
  int fd_ = -1;
  const unsigned char* data_ = nullptr;
  uint64_t size_ = 0;
};

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;  // relative to the data region
};

struct Parsed {
  std::vector<Entry> entries;
  uint64_t data_start = 0;
};

[[noreturn]] void corrupt(const std::string& path, const std::string& why) {
  throw UserError("corrupt safetensors file '" + path + "': " + why +
                  " (re-export or re-download the checkpoint)");
}

uint64_t as_u64(const nlohmann::json& j, const std::string& path, const std::string& what) {
  if (!j.is_number_integer() && !j.is_number_unsigned()) corrupt(path, what + " is not a non-negative integer");
  if (j.is_number_integer() && !j.is_number_unsigned() && j.get<int64_t>() < 0) {
    corrupt(path, what + " is negative");
  }
  return j.get<uint64_t>();
}

Parsed parse(const MappedFile& file, const std::string& path, Metadata* metadata) {
  const uint64_t size = file.size();
  if (size < 8) corrupt(path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file.data()[i];  // little-endian u64
  if (n > kMaxHeaderBytes) corrupt(path, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8) {
    corrupt(path, "header length " + std::to_string(n) + " runs past the end of the file (" +
                      std::to_string(size) + " bytes; truncated?)");
  }
  if (n < 2) corrupt(path, "header of " + std::to_string(n) + " bytes cannot hold a JSON object");
  const unsigned char* h = file.data() + 8;
  if (!valid_utf8(h, n)) corrupt(path, "header is not valid UTF-8");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(h, h + n);
  } catch (const nlohmann::json::exception& e) {
    corrupt(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) corrupt(path, "header is not a JSON object");

  Parsed out;
  out.data_start = 8 + n;
  const uint64_t data_size = size - out.data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) corrupt(path, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) corrupt(path, "__metadata__ value '" + m.key() + "' is not a string");
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) corrupt(path, where + " entry is not an object");
    for (auto f = v.begin(); f != v.end(); ++f) {
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets") {
        corrupt(path, where + " has unknown field '" + f.key() + "'");
      }
    }
    if (!v.contains("dtype") || !v["dtype"].is_string()) corrupt(path, where + " has no string dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) corrupt(path, where + " has no shape array");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2) {
      corrupt(path, where + " has no [begin, end] data_offsets");
    }
    Entry e;
    e.name = name;
    const std::string dt = v["dtype"].get<std::string>();
    e.dtype = find_dtype(dt);
    if (!e.dtype) corrupt(path, where + " has unknown dtype '" + dt + "' (known: " + known_dtypes() + ")");
    // numel × element size with overflow checks: a hostile shape must not wrap around. `extent`
    // (the product of the non-zero dimensions) bounds every stride, so a zero-size tensor such as
    // [0, 2^62, 2^62] cannot overflow a stride either.
    uint64_t bytes = e.dtype->bytes;
    uint64_t extent = 1;
    constexpr uint64_t kMaxIndex = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    for (const auto& d : v["shape"]) {
      const uint64_t dim = as_u64(d, path, where + " shape entry");
      if (dim > kMaxIndex) corrupt(path, where + " dimension too large");
      if (dim != 0 && bytes > std::numeric_limits<uint64_t>::max() / dim) corrupt(path, where + " shape overflows");
      if (dim != 0 && extent > kMaxIndex / dim) corrupt(path, where + " shape overflows");
      bytes *= dim;
      if (dim != 0) extent *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    e.begin = as_u64(v["data_offsets"][0], path, where + " data_offsets[0]");
    e.end = as_u64(v["data_offsets"][1], path, where + " data_offsets[1]");
    if (e.end < e.begin) corrupt(path, where + " has data_offsets end before begin");
    if (e.end > data_size) {
      corrupt(path, where + " ends at byte " + std::to_string(e.end) + " of a " + std::to_string(data_size) +
                        "-byte data region (truncated?)");
    }
    if (e.end - e.begin != bytes) {
      corrupt(path, where + " spans " + std::to_string(e.end - e.begin) + " bytes but dtype " + dt + " × shape needs " +
                        std::to_string(bytes));
    }
    out.entries.push_back(std::move(e));
  }
  // The spans must tile [0, data_size) exactly: sorted by offset, each begins where the previous ended.
  std::vector<const Entry*> order;
  for (const auto& e : out.entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  for (const Entry* e : order) {
    if (e->begin < cursor) corrupt(path, "tensor '" + e->name + "' overlaps the previous tensor's bytes");
    if (e->begin > cursor) corrupt(path, "gap of " + std::to_string(e->begin - cursor) + " bytes before tensor '" + e->name + "'");
    cursor = e->end;
  }
  if (cursor != data_size) {
    corrupt(path, std::to_string(data_size - cursor) + " bytes after the last tensor are not described by the header");
  }
  return out;
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw UserError("cannot write '" + path + "': " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

std::map<std::string, TensorInfo> read_header(const std::string& path, Metadata* metadata) {
  MappedFile file(path);
  const Parsed parsed = parse(file, path, metadata);
  std::map<std::string, TensorInfo> out;
  for (const auto& e : parsed.entries) out[e.name] = TensorInfo{e.dtype->name, e.shape};
  return out;
}

std::map<std::string, std::vector<std::string>> parse_shard_index(const std::string& json_text,
                                                                  const std::string& index_path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw UserError(index_path + " is not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    throw UserError(index_path + ": expected an object with a \"weight_map\" {tensor name: shard file}");
  }
  std::map<std::string, std::vector<std::string>> by_file;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) throw UserError(index_path + ": weight_map entry '" + it.key() + "' is not a file name");
    const std::string file = it.value().get<std::string>();
    // Shards live beside the index: refuse paths that would leave the directory.
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
      throw UserError(index_path + ": shard file name '" + file + "' must be a plain file name in the same directory");
    }
    by_file[file].push_back(it.key());
  }
  return by_file;
}

TensorMap load(const std::string& path, Metadata* metadata) {
  MappedFile file(path);
  const Parsed parsed = parse(file, path, metadata);
  TensorMap out;
  for (const auto& e : parsed.entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype->type));
    if (e.end > e.begin) std::memcpy(t.data_ptr(), file.data() + parsed.data_start + e.begin, e.end - e.begin);
    out.emplace(e.name, std::move(t));
  }
  return out;
}

void save(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  static_assert(sizeof(void*) == 8, "64-bit host expected");
  {
    const uint16_t probe = 1;
    if (*reinterpret_cast<const unsigned char*>(&probe) != 1) {
      throw std::runtime_error("safetensors::save needs a little-endian host");
    }
  }
  // std::map iterates names in sorted order, so the file layout is deterministic.
  std::vector<at::Tensor> cpu;
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") throw UserError("a tensor cannot be named '__metadata__'");
    if (!tensor.defined()) throw std::runtime_error("safetensors::save: tensor '" + name + "' is undefined");
    const DtypeInfo& d = dtype_of(tensor.scalar_type(), name);
    at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * d.bytes;
    header[name] = {{"dtype", d.name}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(std::move(t));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xFF);

  const std::filesystem::path target(path);
  if (target.has_parent_path()) fs::make_directories(target.parent_path().string());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw UserError("cannot write '" + tmp + "': " + std::strerror(errno));
  try {
    write_all(fd, len, 8, tmp);
    write_all(fd, text.data(), text.size(), tmp);
    for (const auto& t : cpu) {
      if (t.numel() > 0) write_all(fd, t.data_ptr(), t.numel() * t.element_size(), tmp);
    }
    if (::fsync(fd) != 0) throw UserError("cannot flush '" + tmp + "': " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw UserError("cannot rename '" + tmp + "' to '" + path + "': " + why);
  }
  fs::sync_directory(target.has_parent_path() ? target.parent_path().string() : ".");
}

}  // namespace scorch::safetensors
