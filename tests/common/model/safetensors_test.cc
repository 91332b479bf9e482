#include "common/model/safetensors.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::safetensors {
namespace {

using ::testing::HasSubstr;

// 8-byte little-endian length, `header` verbatim, then `data`: a file as any writer (or an attacker) could make it.
std::string RawFile(absl::string_view header, absl::string_view data = "") {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return absl::StrCat(out, header, data);
}

// A header with one tensor entry, `entry` being the JSON object's text.
std::string OneTensor(absl::string_view entry) { return absl::StrCat(R"({"a.weight":)", entry, "}"); }

uint64_t HeaderLength(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  return n;
}

std::string Bytes(const TensorView& view) { return std::string(reinterpret_cast<const char*>(view.data), view.nbytes); }

class SafetensorsTest : public ::testing::Test {
 protected:
  // Adds a tensor whose payload is kept alive by the fixture.
  void Add(std::string name, Dtype dtype, std::vector<int64_t> shape, std::string payload) {
    payloads_.push_back(std::make_unique<std::string>(std::move(payload)));
    tensors_.push_back({std::move(name), dtype, std::move(shape), payloads_.back()->data(), payloads_.back()->size()});
  }

  std::string Serialized() {
    absl::StatusOr<std::string> bytes = Serialize(tensors_, metadata_);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return bytes.ok() ? *bytes : "";
  }

  // A file whose last tensor (by offset) is not empty, so every strict prefix of it is invalid.
  void AddMixedTensors() {
    Add("f32", Dtype::kF32, {2, 3}, std::string(24, '\x01'));
    Add("empty", Dtype::kU8, {0, 5}, "");
    Add("i64", Dtype::kI64, {2}, std::string("\x01\0\0\0\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff", 16));
    Add("bf16", Dtype::kBF16, {3}, "abcdef");
    Add("scalar", Dtype::kF64, {}, "12345678");
    Add("flags", Dtype::kBool, {3}, std::string("\x01\x00\x01", 3));
    metadata_ = {{"format", "pt"}, {"step", "7"}};
  }

  static void ExpectError(const std::string& bytes, absl::StatusCode code, const std::vector<std::string>& parts) {
    absl::StatusOr<File> file = File::Parse(bytes, "model.safetensors");
    ASSERT_EQ(file.status().code(), code) << file.status();
    EXPECT_THAT(file.status().message(), HasSubstr("model.safetensors: "));
    for (const std::string& part : parts) EXPECT_THAT(file.status().message(), HasSubstr(part));
  }

  // A header with one entry and a data buffer of `data_size` bytes must be rejected with INVALID_ARGUMENT.
  static void ExpectBadEntry(absl::string_view entry, size_t data_size, const std::vector<std::string>& parts) {
    ExpectError(RawFile(OneTensor(entry), std::string(data_size, '\0')), absl::StatusCode::kInvalidArgument, parts);
  }

  static void ExpectBadHeader(absl::string_view header, size_t data_size, const std::vector<std::string>& parts) {
    ExpectError(RawFile(header, std::string(data_size, '\0')), absl::StatusCode::kInvalidArgument, parts);
  }

  std::vector<std::unique_ptr<std::string>> payloads_;
  std::vector<TensorToWrite> tensors_;
  std::map<std::string, std::string> metadata_;
};

TEST(Dtype, NamesSizesAndParsingAgree) {
  for (Dtype d : {Dtype::kBool, Dtype::kU8, Dtype::kI8, Dtype::kI16, Dtype::kU16, Dtype::kI32, Dtype::kU32, Dtype::kI64,
                  Dtype::kU64, Dtype::kF16, Dtype::kBF16, Dtype::kF32, Dtype::kF64}) {
    EXPECT_EQ(*ParseDtype(DtypeName(d)), d) << DtypeName(d);
  }
  EXPECT_EQ(DtypeName(Dtype::kBF16), "BF16");
  EXPECT_EQ(DtypeSize(Dtype::kBF16), 2u);
  EXPECT_EQ(DtypeSize(Dtype::kF64), 8u);
  EXPECT_EQ(DtypeSize(Dtype::kBool), 1u);
  EXPECT_EQ(ParseDtype("f32").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SafetensorsTest, RoundTripsSeveralDtypesAndMetadata) {
  AddMixedTensors();
  absl::StatusOr<File> file = File::Parse(Serialized());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_THAT(file->names(), ::testing::ElementsAre("bf16", "empty", "f32", "flags", "i64", "scalar"));
  EXPECT_EQ(file->metadata(), metadata_);
  for (const TensorToWrite& t : tensors_) {
    absl::StatusOr<TensorView> view = file->Get(t.name);
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->dtype, t.dtype) << t.name;
    EXPECT_EQ(view->shape, t.shape) << t.name;
    EXPECT_EQ(Bytes(*view), std::string(static_cast<const char*>(t.data), t.nbytes)) << t.name;
  }
  EXPECT_EQ(file->Get("empty")->numel(), 0);
  EXPECT_EQ(file->Get("scalar")->numel(), 1);
  EXPECT_EQ(file->Get("f32")->numel(), 6);
}

TEST_F(SafetensorsTest, ReserializingAParsedFileGivesIdenticalBytes) {
  AddMixedTensors();
  std::string first = Serialized();
  absl::StatusOr<File> file = File::Parse(first);
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<TensorToWrite> again;
  for (const TensorToWrite& t : tensors_) {
    TensorView v = *file->Get(t.name);
    again.push_back({t.name, v.dtype, v.shape, v.data, v.nbytes});
  }
  EXPECT_EQ(*Serialize(again, file->metadata()), first);
}

TEST_F(SafetensorsTest, HeaderIsPaddedWithSpacesToEightBytes) {
  for (int len = 1; len <= 16; ++len) {
    tensors_.clear();
    Add(std::string(len, 'x'), Dtype::kU8, {3}, "abc");
    std::string bytes = Serialized();
    uint64_t n = HeaderLength(bytes);
    EXPECT_EQ((8 + n) % 8, 0u) << len;
    EXPECT_EQ(bytes.size(), 8 + n + 3);
    EXPECT_EQ(bytes.substr(8 + n), "abc");
    std::string header = bytes.substr(8, n);
    EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}')) << header;
  }
}

TEST_F(SafetensorsTest, WritesHeaderInGivenOrderAndDataContiguously) {
  Add("z", Dtype::kU8, {2}, "zz");
  Add("a", Dtype::kI16, {1}, "aa");
  metadata_ = {{"k", "v"}};
  std::string bytes = Serialized();
  EXPECT_EQ(bytes.substr(8, HeaderLength(bytes)),
            R"({"__metadata__":{"k":"v"},"z":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
            R"("a":{"dtype":"I16","shape":[1],"data_offsets":[2,4]}}     )");
  EXPECT_EQ(bytes.substr(bytes.size() - 4), "zzaa");
}

TEST_F(SafetensorsTest, ParsesAFileAsTheReferenceWriterMakesIt) {
  // What `safetensors.torch.save_file({"a": torch.zeros(2)}, ...)` writes: 54 bytes of JSON, two spaces of padding.
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  )";
  ASSERT_EQ(header.size(), 56u);
  std::string bytes = RawFile(header, std::string(8, '\0'));
  absl::StatusOr<File> file = File::Parse(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->Get("a")->shape, std::vector<int64_t>({2}));
  Add("a", Dtype::kF32, {2}, std::string(8, '\0'));
  EXPECT_EQ(Serialized(), bytes);
}

TEST_F(SafetensorsTest, AcceptsZeroSizeTensorsAnywhere) {
  std::string header = R"({"e0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                       R"("e1":{"dtype":"F32","shape":[3,0],"data_offsets":[0,0]},)"
                       R"("x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                       R"("e2":{"dtype":"I64","shape":[0,7],"data_offsets":[4,4]}})";
  absl::StatusOr<File> file = File::Parse(RawFile(header, "abcd"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->Get("e2")->nbytes, 0u);
  EXPECT_EQ(file->Get("e1")->shape, std::vector<int64_t>({3, 0}));
  EXPECT_EQ(Bytes(*file->Get("x")), "abcd");
}

TEST_F(SafetensorsTest, AcceptsAnEmptyFile) {
  absl::StatusOr<File> file = File::Parse(RawFile("{}      "));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->names().empty());
  EXPECT_TRUE(file->metadata().empty());
  EXPECT_TRUE(Serialize({}).ok());
  EXPECT_EQ(*Serialize({}), RawFile("{}      "));
}

TEST_F(SafetensorsTest, GetNamesTheMissingTensor) {
  Add("a", Dtype::kU8, {1}, "x");
  absl::StatusOr<File> file = File::Parse(Serialized());
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE(file->contains("a"));
  EXPECT_FALSE(file->contains("b"));
  EXPECT_EQ(file->Get("b").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(file->Get("b").status().message(), HasSubstr("\"b\""));
}

TEST_F(SafetensorsTest, ViewsOutliveMovesOfTheFile) {
  Add("a", Dtype::kU8, {3}, "xyz");
  absl::StatusOr<File> parsed = File::Parse(Serialized());
  ASSERT_TRUE(parsed.ok());
  File copy = *parsed;
  TensorView view = *copy.Get("a");
  File moved = std::move(copy);
  parsed = absl::UnknownError("dropped");
  EXPECT_EQ(Bytes(view), "xyz");
}

TEST_F(SafetensorsTest, WriteThenReadThroughTheFileSystem) {
  AddMixedTensors();
  std::string path = ::testing::TempDir() + "/safetensors_test_model.safetensors";
  ASSERT_TRUE(Write(path, tensors_, metadata_).ok());
  absl::StatusOr<File> file = File::Read(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(Bytes(*file->Get("bf16")), "abcdef");
  EXPECT_EQ(*ReadFile(path), Serialized());
}

TEST_F(SafetensorsTest, ReadPrefixesErrorsWithThePath) {
  std::string dir = ::testing::TempDir();
  EXPECT_EQ(File::Read(dir + "/no_such.safetensors").status().code(), absl::StatusCode::kNotFound);
  std::string path = dir + "/safetensors_test_bad.safetensors";
  ASSERT_TRUE(WriteFileAtomic(path, RawFile(OneTensor(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,12]})"),
                                            std::string(12, '\0')))
                  .ok());
  absl::Status status = File::Read(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), absl::StrCat(path, R"(: tensor "a.weight": data_offsets [0, 12] do not match )",
                                           "shape [2, 3] x F32 = 24 bytes"));
}

TEST_F(SafetensorsTest, FailedWriteLeavesNothingBehind) {
  Add("a", Dtype::kU8, {1}, "x");
  std::string path = ::testing::TempDir() + "/no_such_dir/x.safetensors";
  EXPECT_EQ(Write(path, tensors_).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(PathExists(path));
  tensors_[0].nbytes = 2;
  path = ::testing::TempDir() + "/safetensors_test_invalid.safetensors";
  absl::Status status = Write(path, tensors_);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(path + ": tensor \"a\""));
  EXPECT_FALSE(PathExists(path));
}

// ---- Error paths: Parse ----

TEST_F(SafetensorsTest, RejectsFileShorterThanTheLength) {
  for (size_t n = 0; n < 8; ++n) {
    ExpectError(std::string(n, '\x01'), absl::StatusCode::kDataLoss, {absl::StrCat("file is ", n, " bytes")});
  }
}

TEST_F(SafetensorsTest, RejectsZeroHeaderLength) {
  ExpectError(RawFile(""), absl::StatusCode::kInvalidArgument, {"header length is 0"});
}

TEST_F(SafetensorsTest, RejectsHeaderLengthPastTheEnd) {
  std::string bytes = RawFile("{}      ").substr(0, 12);
  ExpectError(bytes, absl::StatusCode::kDataLoss, {"header length is 8 bytes but only 4 bytes follow"});
}

TEST_F(SafetensorsTest, RejectsAbsurdHeaderLength) {
  std::string bytes = RawFile("{}");
  bytes[3] = '\x10';  // 0x10000000 + 2 > 100 MB.
  ExpectError(bytes, absl::StatusCode::kInvalidArgument, {"header length 268435458", "limit of 100000000"});
  ExpectError(std::string(8, '\xff') + "{}", absl::StatusCode::kInvalidArgument, {"18446744073709551615"});
}

TEST_F(SafetensorsTest, RejectsHeaderNotStartingWithBrace) {
  ExpectBadHeader(" {}", 0, {"does not start with '{'"});
  ExpectBadHeader("[]", 0, {"does not start with '{'"});
}

TEST_F(SafetensorsTest, RejectsInvalidJson) {
  ExpectBadHeader(R"({"a": )", 0, {"not valid JSON"});
  ExpectBadHeader(R"({"a": {}} x)", 0, {"not valid JSON"});
  ExpectBadHeader(std::string("{\"\xff\": 1}"), 0, {"not valid JSON"});
  // nlohmann alone would accept this, stopping at the NUL.
  ExpectBadHeader(std::string("{}\0\0", 4), 0, {"NUL byte at offset 2"});
}

TEST_F(SafetensorsTest, RejectsDeeplyNestedHeader) {
  // A million nested arrays as data_offsets used to overflow the stack while the message quoted them.
  const int levels = 1'000'000;
  ExpectBadEntry(absl::StrCat(R"({"dtype": "U8", "shape": [1], "data_offsets": )", std::string(levels, '['),
                              std::string(levels, ']'), "}"),
                 1, {"header: JSON nests arrays and objects deeper than 64 levels (at byte 120)"});
  ExpectBadHeader(absl::StrCat(R"({"__metadata__": {"k": )", std::string(65, '['), std::string(65, ']'), "}}"), 0,
                  {"deeper than 64 levels"});
}

TEST_F(SafetensorsTest, RejectsEntryThatIsNotAnObject) {
  ExpectBadEntry("[1, 2]", 0, {R"(tensor "a.weight")", "not an object (got array)"});
}

TEST_F(SafetensorsTest, RejectsMissingFields) {
  ExpectBadEntry(R"({"shape":[1],"data_offsets":[0,1]})", 1, {R"(tensor "a.weight": missing "dtype")"});
  ExpectBadEntry(R"({"dtype":"U8","data_offsets":[0,1]})", 1, {R"(tensor "a.weight": missing "shape")"});
  ExpectBadEntry(R"({"dtype":"U8","shape":[1]})", 1, {R"(tensor "a.weight": missing "data_offsets")"});
}

TEST_F(SafetensorsTest, RejectsUnknownKeys) {
  ExpectBadEntry(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"stride":[1]})", 1,
                 {R"(tensor "a.weight": unknown key "stride")"});
}

TEST_F(SafetensorsTest, RejectsBadDtype) {
  ExpectBadEntry(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})", 4,
                 {R"(tensor "a.weight": unknown dtype "F33")"});
  ExpectBadEntry(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})", 4, {R"(tensor "a.weight": dtype is not a string)"});
}

TEST_F(SafetensorsTest, RejectsBadShape) {
  ExpectBadEntry(R"({"dtype":"U8","shape":3,"data_offsets":[0,3]})", 3,
                 {R"(tensor "a.weight": shape is not an array)"});
  ExpectBadEntry(R"({"dtype":"U8","shape":[1,-3],"data_offsets":[0,3]})", 3,
                 {R"(tensor "a.weight": shape[1] is not a non-negative integer: -3)"});
  ExpectBadEntry(R"({"dtype":"U8","shape":[3.0],"data_offsets":[0,3]})", 3, {"shape[0] is not a non-negative integer"});
  ExpectBadEntry(R"({"dtype":"U8","shape":["3"],"data_offsets":[0,3]})", 3, {"shape[0] is not a non-negative integer"});
  ExpectBadEntry(R"({"dtype":"U8","shape":[0,9223372036854775808],"data_offsets":[0,0]})", 0,
                 {R"(tensor "a.weight": shape[1] = 9223372036854775808 is too large)"});
}

TEST_F(SafetensorsTest, RejectsBadDataOffsets) {
  const std::string field = R"(tensor "a.weight": data_offsets is not two non-negative integers)";
  ExpectBadEntry(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1,2]})", 2, {field});
  ExpectBadEntry(R"({"dtype":"U8","shape":[1],"data_offsets":[1]})", 2, {field});
  ExpectBadEntry(R"({"dtype":"U8","shape":[1],"data_offsets":[-1,0]})", 2, {field});
  ExpectBadEntry(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1.5]})", 2, {field});
  ExpectBadEntry(R"({"dtype":"U8","shape":[1],"data_offsets":{"0":1}})", 2, {field});
  ExpectBadEntry(R"({"dtype":"U8","shape":[1],"data_offsets":[2,1]})", 2,
                 {R"(tensor "a.weight": data_offsets [2, 1]: begin > end)"});
}

TEST_F(SafetensorsTest, RejectsOffsetsPastTheBuffer) {
  ExpectBadEntry(R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})", 3,
                 {R"(tensor "a.weight": data_offsets [0, 4] extend past the end of the 3-byte data buffer)"});
  ExpectBadEntry(R"({"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]})", 3,
                 {"extend past the end"});
}

TEST_F(SafetensorsTest, RejectsSizeThatDoesNotMatchShape) {
  ExpectBadEntry(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,12]})", 12,
                 {R"(tensor "a.weight": data_offsets [0, 12] do not match shape [2, 3] x F32 = 24 bytes)"});
}

TEST_F(SafetensorsTest, RejectsShapeWhoseByteSizeOverflows) {
  ExpectBadEntry(R"({"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]})", 0,
                 {R"(tensor "a.weight": shape [4294967296, 4294967296] x F64 overflows)"});
  // 2^61 elements fit in int64 but 2^61 x 8 bytes wraps to 0 in 64 bits.
  ExpectBadEntry(R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]})", 0, {"overflows"});
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  ExpectBadHeader(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                  R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                  6, {R"(tensor "b": data_offsets [2, 6] overlap tensor "a" at [0, 4])"});
  ExpectBadHeader(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                  R"("b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                  4, {R"(tensor "b": data_offsets [0, 4] overlap tensor "a")"});
}

TEST_F(SafetensorsTest, RejectsHoles) {
  ExpectBadHeader(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                  R"("b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})",
                  8, {R"(tensor "b": data_offsets [6, 8] leave a hole after tensor "a", which ends at 4)"});
  ExpectBadHeader(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", 6,
                  {R"(tensor "a": data_offsets [2, 6] leave a hole: the first tensor must start at 0)"});
}

TEST_F(SafetensorsTest, RejectsBytesAfterTheLastTensor) {
  ExpectBadHeader(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 5,
                  {R"(tensor "a" is the last and ends at 4, but the data buffer is 5 bytes)"});
  ExpectBadHeader(R"({"__metadata__":{}})", 1, {"no tensors, but the data buffer is 1 bytes"});
}

TEST_F(SafetensorsTest, RejectsBadMetadata) {
  ExpectBadHeader(R"({"__metadata__":["x"]})", 0, {"__metadata__ is not an object of string to string (got array)"});
  ExpectBadHeader(R"({"__metadata__":null})", 0, {"__metadata__ is not an object"});
  ExpectBadHeader(R"({"__metadata__":{"step":7}})", 0, {R"(__metadata__ "step": value is not a string (got number))"});
}

TEST_F(SafetensorsTest, RejectsDuplicateKeys) {
  ExpectBadHeader(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                  R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                  1, {R"(duplicate tensor name "a")"});
  ExpectBadHeader(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", 1,
                  {R"(tensor "a": duplicate key "dtype")"});
  ExpectBadHeader(R"({"__metadata__":{"k":"1","k":"2"}})", 0, {R"(__metadata__: duplicate key "k")"});
}

// ---- Error paths: Serialize ----

TEST_F(SafetensorsTest, SerializeRejectsRepeatedNames) {
  Add("a", Dtype::kU8, {1}, "x");
  Add("a", Dtype::kU8, {1}, "y");
  EXPECT_EQ(Serialize(tensors_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Serialize(tensors_).status().message(), HasSubstr(R"(tensor "a": name repeats)"));
}

TEST_F(SafetensorsTest, SerializeRejectsTheMetadataName) {
  Add("__metadata__", Dtype::kU8, {1}, "x");
  EXPECT_EQ(Serialize(tensors_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Serialize(tensors_).status().message(), HasSubstr("reserved"));
}

TEST_F(SafetensorsTest, SerializeRejectsSizeMismatch) {
  Add("a", Dtype::kF32, {2, 3}, std::string(12, '\0'));
  EXPECT_EQ(Serialize(tensors_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Serialize(tensors_).status().message(),
              HasSubstr(R"(tensor "a": nbytes 12 does not match shape [2, 3] x F32 = 24 bytes)"));
}

TEST_F(SafetensorsTest, SerializeRejectsNegativeAndOverflowingShapes) {
  Add("neg", Dtype::kU8, {-1}, "");
  EXPECT_EQ(Serialize(tensors_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Serialize(tensors_).status().message(), HasSubstr(R"(tensor "neg": negative dimension -1)"));
  tensors_.clear();
  Add("big", Dtype::kF32, {int64_t{1} << 62, 2}, "");
  EXPECT_EQ(Serialize(tensors_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Serialize(tensors_).status().message(), HasSubstr("overflows"));
}

TEST_F(SafetensorsTest, SerializeRejectsNullDataAndInvalidUtf8) {
  tensors_.push_back({"a", Dtype::kU8, {1}, nullptr, 1});
  EXPECT_EQ(Serialize(tensors_).status().code(), absl::StatusCode::kInvalidArgument);
  tensors_.clear();
  Add("\xff", Dtype::kU8, {1}, "x");
  EXPECT_EQ(Serialize(tensors_).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Robustness: damaged files return a Status, never crash or read outside the buffer ----

// Touches every byte of every view so that an out-of-range view shows up under AddressSanitizer.
void CheckViews(const File& file) {
  for (const std::string& name : file.names()) {
    TensorView view = *file.Get(name);
    EXPECT_EQ(static_cast<uint64_t>(view.numel()) * DtypeSize(view.dtype), view.nbytes) << name;
    static volatile uint8_t sink = 0;
    for (size_t i = 0; i < view.nbytes; ++i) sink = sink ^ view.data[i];
  }
}

TEST_F(SafetensorsTest, EveryTruncationIsRejected) {
  AddMixedTensors();
  std::string bytes = Serialized();
  const uint64_t data_start = 8 + HeaderLength(bytes);
  for (size_t len = 0; len < bytes.size(); ++len) {
    absl::StatusCode expected = len < data_start ? absl::StatusCode::kDataLoss : absl::StatusCode::kInvalidArgument;
    EXPECT_EQ(File::Parse(bytes.substr(0, len)).status().code(), expected) << "length " << len;
  }
  EXPECT_TRUE(File::Parse(bytes).ok());
}

TEST_F(SafetensorsTest, FlippedHeaderBytesNeverCrash) {
  AddMixedTensors();
  const std::string original = Serialized();
  const size_t header_end = 8 + HeaderLength(original);
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<size_t> position(0, header_end - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  int rejected = 0;
  constexpr int kTrials = 20000;
  for (int trial = 0; trial < kTrials; ++trial) {
    std::string bytes = original;
    const int flips = 1 + trial % 3;
    for (int f = 0; f < flips; ++f) bytes[position(rng)] = static_cast<char>(byte(rng));
    absl::StatusOr<File> file = File::Parse(bytes);
    if (file.ok()) {
      CheckViews(*file);
    } else {
      ++rejected;
      EXPECT_TRUE(file.status().code() == absl::StatusCode::kInvalidArgument ||
                  file.status().code() == absl::StatusCode::kDataLoss)
          << file.status();
    }
  }
  // Most random damage to a header must be caught; some (a changed letter in a name) is harmless.
  EXPECT_GT(rejected, kTrials / 2);
}

}  // namespace
}  // namespace alignd::safetensors
