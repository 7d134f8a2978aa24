// safetensors reader/writer written to the format's spec: 8-byte little-endian header length N,
// N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
// header padded with spaces to a multiple of 8, then the tensor bytes. The reader validates every
// field against the file size (a corrupt or hostile file is a UserError, never a crash).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace scorch::safetensors {

using TensorMap = std::map<std::string, at::Tensor>;
using Metadata = std::map<std::string, std::string>;

// Writes `tensors` (any device; copied to CPU contiguous) atomically (temp file + rename).
void save(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});
// Loads every tensor onto the CPU (memory-mapped read; the returned tensors own their memory).
TensorMap load(const std::string& path, Metadata* metadata = nullptr);
// Names, dtypes and shapes only (header parse + validation), no tensor data read.
struct TensorInfo {
  std::string dtype;  // "F32", "BF16", "F16", "I64", ...
  std::vector<int64_t> shape;
};
std::map<std::string, TensorInfo> read_header(const std::string& path, Metadata* metadata = nullptr);

// A sharded checkpoint's index (model.safetensors.index.json, `json_text` read from `index_path`):
// shard file name -> the tensor names it holds, from "weight_map". UserError naming `index_path`
// when the text is not such an object or a shard name is not a plain file name beside the index.
std::map<std::string, std::vector<std::string>> parse_shard_index(const std::string& json_text,
                                                                  const std::string& index_path);

}  // namespace scorch::safetensors
