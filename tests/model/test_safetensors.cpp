// safetensors: round trips keep every byte, the file follows the spec's layout, and each kind of
// corrupt or hostile file is a UserError naming the problem (never a crash or an out-of-bounds read).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "model/safetensors.h"
#include "tests/support/run_cli.h"

namespace st = scorch::safetensors;

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// A file with the given header text and `data_bytes` bytes of data (length prefix = header size).
std::string make_file(const std::string& dir, const std::string& header, size_t data_bytes) {
  const std::string path = dir + "/f.safetensors";
  write_bytes(path, le64(header.size()) + header + std::string(data_bytes, '\x01'));
  return path;
}

void expect_user_error(const std::string& path, const std::string& fragment) {
  try {
    st::load(path);
    FAIL() << "expected a UserError containing '" << fragment << "'";
  } catch (const scorch::UserError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "the message names the file: " << e.what();
  }
  EXPECT_THROW(st::read_header(path), scorch::UserError);
}

}  // namespace

TEST(Safetensors, RoundTripKeepsEveryDtypeShapeValueAndMetadata) {
  const std::string dir = scorch::test::temp_dir("st");
  at::manual_seed(7);
  st::TensorMap in{
      {"w.f32", at::randn({3, 5})},
      {"w.bf16", at::randn({7}).to(at::kBFloat16)},
      {"w.f16", at::randn({2, 3, 2}).to(at::kHalf)},
      {"w.f64.scalar", at::randn({}, at::kDouble)},
      {"ids.i64", at::randint(-1000000000000LL, 1000000000000LL, {4}, at::kLong)},
      {"ids.i32", at::randint(-1000, 1000, {3, 1}, at::kInt)},
      {"bytes.u8", at::randint(0, 256, {5}, at::kByte)},
      {"mask.bool", at::randint(0, 2, {6}, at::kLong).to(at::kBool)},
      {"empty", at::empty({0, 3})},
      {"strided", at::randn({4, 6}).t()},  // non-contiguous input is written in logical order
  };
  const st::Metadata meta{{"format", "pt"}, {"step", "123"}};
  st::save(dir + "/m.safetensors", in, meta);

  st::Metadata got_meta;
  const st::TensorMap out = st::load(dir + "/m.safetensors", &got_meta);
  EXPECT_EQ(got_meta, meta);
  ASSERT_EQ(out.size(), in.size());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(out.count(name)) << name;
    EXPECT_EQ(out.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(out.at(name).sizes(), t.sizes()) << name;
    EXPECT_TRUE(at::equal(out.at(name), t)) << name;
  }
  const auto header = st::read_header(dir + "/m.safetensors");
  EXPECT_EQ(header.at("w.bf16").dtype, "BF16");
  EXPECT_EQ(header.at("w.f64.scalar").dtype, "F64");
  EXPECT_TRUE(header.at("w.f64.scalar").shape.empty());
  EXPECT_EQ(header.at("strided").shape, (std::vector<int64_t>{6, 4}));
}

TEST(Safetensors, FileLayoutFollowsTheSpec) {
  const std::string dir = scorch::test::temp_dir("st");
  const at::Tensor a = at::arange(6, at::kFloat).view({2, 3}), b = at::tensor({int64_t{-5}, int64_t{9}});
  st::save(dir + "/m.safetensors", {{"a", a}, {"b", b}});
  const std::string bytes = read_bytes(dir + "/m.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u) << "header padded to a multiple of 8";
  ASSERT_EQ(bytes.size(), 8 + n + 6 * 4 + 2 * 8);
  const auto h = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(h["a"]["dtype"], "F32");
  EXPECT_EQ(h["a"]["shape"], nlohmann::json({2, 3}));
  const auto a_off = h["a"]["data_offsets"].get<std::vector<uint64_t>>();
  const auto b_off = h["b"]["data_offsets"].get<std::vector<uint64_t>>();
  EXPECT_EQ(a_off[1] - a_off[0], 24u);
  EXPECT_EQ(b_off[1] - b_off[0], 16u);
  float a4;
  std::memcpy(&a4, bytes.data() + 8 + n + a_off[0] + 4 * 4, 4);
  EXPECT_EQ(a4, 4.0f);
  int64_t b0;
  std::memcpy(&b0, bytes.data() + 8 + n + b_off[0], 8);
  EXPECT_EQ(b0, -5);
}

TEST(Safetensors, TruncatedFileIsAUserError) {
  const std::string dir = scorch::test::temp_dir("st");
  st::save(dir + "/m.safetensors", {{"a", at::randn({16})}});
  const std::string bytes = read_bytes(dir + "/m.safetensors");
  write_bytes(dir + "/m.safetensors", bytes.substr(0, bytes.size() - 4));
  expect_user_error(dir + "/m.safetensors", "truncated");
  write_bytes(dir + "/m.safetensors", bytes.substr(0, 5));
  expect_user_error(dir + "/m.safetensors", "shorter than the 8-byte header length");
}

TEST(Safetensors, AbsurdHeaderLengthIsAUserError) {
  const std::string dir = scorch::test::temp_dir("st");
  const std::string path = dir + "/f.safetensors";
  write_bytes(path, le64(1ull << 60) + "{}");
  expect_user_error(path, "exceeds the 100 MB limit");
  write_bytes(path, le64(4096) + "{\"a\":1}");
  expect_user_error(path, "runs past the end of the file");
}

TEST(Safetensors, OverlappingOffsetsAreAUserError) {
  const std::string dir = scorch::test::temp_dir("st");
  const std::string h = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                        R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})";
  expect_user_error(make_file(dir, h, 24), "overlaps");
}

TEST(Safetensors, GapOrTrailingBytesAreAUserError) {
  const std::string dir = scorch::test::temp_dir("st");
  const std::string gap = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_user_error(make_file(dir, gap, 8), "gap of 4 bytes");
  const std::string tail = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_user_error(make_file(dir, tail, 12), "after the last tensor");
}

TEST(Safetensors, ByteSizeThatDisagreesWithDtypeAndShapeIsAUserError) {
  const std::string dir = scorch::test::temp_dir("st");
  const std::string h = R"({"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,24]}})";
  expect_user_error(make_file(dir, h, 24), "spans 24 bytes but dtype BF16 × shape needs 12");
  const std::string overflow = R"({"a":{"dtype":"F64","shape":[4611686018427387904,8],"data_offsets":[0,8]}})";
  expect_user_error(make_file(dir, overflow, 8), "overflows");
}

TEST(Safetensors, NonUtf8OrNonJsonHeaderIsAUserError) {
  const std::string dir = scorch::test::temp_dir("st");
  expect_user_error(make_file(dir, "{\"a\xff\xfe\":{}}", 0), "not valid UTF-8");
  expect_user_error(make_file(dir, "{\"\xed\xa0\x80\":{}}", 0), "not valid UTF-8");  // a UTF-16 surrogate
  expect_user_error(make_file(dir, "{not json at all}", 0), "not valid JSON");
  expect_user_error(make_file(dir, "[1, 2, 3]  ", 0), "not a JSON object");
}

TEST(Safetensors, UnknownDtypeIsAUserErrorNamingIt) {
  const std::string dir = scorch::test::temp_dir("st");
  const std::string h = R"({"a":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}})";
  expect_user_error(make_file(dir, h, 1), "unknown dtype 'F7'");
}

TEST(Safetensors, MalformedEntriesAreUserErrors) {
  const std::string dir = scorch::test::temp_dir("st");
  expect_user_error(make_file(dir, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", 4), "negative");
  expect_user_error(make_file(dir, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4), "end before begin");
  expect_user_error(make_file(dir, R"({"a":{"dtype":"F32","shape":[1]}})", 4), "data_offsets");
  expect_user_error(make_file(dir, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4),
                    "unknown field 'x'");
  expect_user_error(make_file(dir, R"({"__metadata__":{"k":3}})", 0), "__metadata__ value 'k'");
}

TEST(Safetensors, MissingFileIsAUserError) {
  EXPECT_THROW(st::load("/nonexistent/dir/model.safetensors"), scorch::UserError);
}

TEST(Safetensors, ZeroSizeTensorWhoseStridesWouldOverflowIsAUserError) {
  const std::string dir = scorch::test::temp_dir("st");
  const std::string big = std::to_string(uint64_t{1} << 62);
  expect_user_error(make_file(dir, R"({"a":{"dtype":"F32","shape":[0,)" + big + "," + big + R"(],"data_offsets":[0,0]}})", 0),
                    "shape overflows");
  // The largest legal zero-size shape still loads.
  const std::string ok = make_file(dir, R"({"a":{"dtype":"F32","shape":[0,)" + big + R"(],"data_offsets":[0,0]}})", 0);
  EXPECT_EQ(st::load(ok).at("a").size(1), int64_t{1} << 62);
}

TEST(Safetensors, AFifoInPlaceOfTheFileIsAUserErrorNotAHang) {
  const std::string path = scorch::test::temp_dir("st") + "/model.safetensors";
  ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0);
  try {
    st::load(path);
    FAIL() << "a FIFO must be refused";
  } catch (const scorch::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(scorch::fs::read_file(path, "config"), scorch::UserError);
}
