#include "common/model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/file_util.h"
#include "common/base/json_depth.h"
#include "common/base/status.h"
#include "nlohmann/json.hpp"

namespace alignd::safetensors {
namespace {

using Json = nlohmann::json;

// The reference implementation refuses headers above this size; a larger length prefix is garbage, not a model.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kLengthPrefixBytes = 8;
constexpr char kMetadataKey[] = "__metadata__";

struct DtypeInfo {
  Dtype dtype;
  absl::string_view name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {Dtype::kBool, "BOOL", 1}, {Dtype::kU8, "U8", 1},   {Dtype::kI8, "I8", 1},     {Dtype::kI16, "I16", 2},
    {Dtype::kU16, "U16", 2},   {Dtype::kI32, "I32", 4}, {Dtype::kU32, "U32", 4},   {Dtype::kI64, "I64", 8},
    {Dtype::kU64, "U64", 8},   {Dtype::kF16, "F16", 2}, {Dtype::kBF16, "BF16", 2}, {Dtype::kF32, "F32", 4},
    {Dtype::kF64, "F64", 8},
};

const DtypeInfo& Info(Dtype dtype) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.dtype == dtype) return info;
  }
  return kDtypes[0];  // Unreachable for a valid enum value.
}

std::string ShapeString(const std::vector<uint64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string OffsetsString(uint64_t begin, uint64_t end) { return absl::StrCat("[", begin, ", ", end, "]"); }

// product(shape) * dtype size, or nullopt when it does not fit: the element count must fit in int64_t (TensorView's
// numel) and the byte count in uint64_t. Multiplies left to right, as the reference does.
std::optional<uint64_t> ByteSize(const std::vector<uint64_t>& shape, size_t dtype_size) {
  constexpr uint64_t kMaxNumel = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t numel = 1;
  for (uint64_t dim : shape) {
    if (dim != 0 && numel > kMaxNumel / dim) return std::nullopt;
    numel *= dim;
  }
  if (numel > std::numeric_limits<uint64_t>::max() / dtype_size) return std::nullopt;
  return numel * dtype_size;
}

// Truncates long library messages: nlohmann quotes the offending input, which may be anything.
std::string Clip(absl::string_view text) {
  constexpr size_t kMax = 200;
  if (text.size() <= kMax) return std::string(text);
  return absl::StrCat(text.substr(0, kMax), "...");
}

// A tensor entry whose fields have been checked one by one, before the cross-tensor layout checks.
struct Entry {
  std::string name;
  Dtype dtype;
  std::vector<uint64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Parses the header JSON, rejecting a repeated key in any object (nlohmann would silently keep the last one).
absl::StatusOr<Json> ParseHeaderJson(absl::string_view text) {
  std::vector<std::set<std::string>> seen;  // One set per open object or array (an array's stays empty).
  std::string top_key;                      // The tensor name being parsed, for messages.
  std::string duplicate;
  auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        seen.emplace_back();
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        if (!seen.empty()) seen.pop_back();
        break;
      case Json::parse_event_t::key: {
        if (seen.empty() || !parsed.is_string()) break;
        const std::string& key = parsed.get_ref<const std::string&>();
        if (seen.size() == 1) top_key = key;
        if (!seen.back().insert(key).second && duplicate.empty()) {
          if (seen.size() == 1) {
            duplicate = absl::StrCat("duplicate tensor name \"", key, "\"");
          } else if (top_key == kMetadataKey) {
            duplicate = absl::StrCat(kMetadataKey, ": duplicate key \"", key, "\"");
          } else {
            duplicate = absl::StrCat("tensor \"", top_key, "\": duplicate key \"", key, "\"");
          }
        }
        break;
      }
      case Json::parse_event_t::value:
        break;
    }
    return true;
  };
  Json header;
  try {
    header = Json::parse(text.begin(), text.end(), callback);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("header is not valid JSON: ", Clip(e.what())));
  }
  if (!duplicate.empty()) return absl::InvalidArgumentError(duplicate);
  if (!header.is_object()) return absl::InvalidArgumentError("header is not a JSON object");
  return header;
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(const Json& value) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kMetadataKey, " is not an object of string to string (got ", value.type_name(), ")"));
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(kMetadataKey, " \"", key, "\": value is not a string (got ", v.type_name(), ")"));
    }
    metadata[key] = v.get<std::string>();
  }
  return metadata;
}

// Checks one tensor entry on its own: keys, dtype, shape, offsets within `data_size`, byte size. Messages start with
// `tensor "NAME": `.
absl::StatusOr<Entry> ParseEntry(const std::string& name, const Json& value, uint64_t data_size) {
  const std::string where = absl::StrCat("tensor \"", name, "\": ");
  if (!value.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "entry is not an object (got ", value.type_name(), ")"));
  }
  for (const auto& item : value.items()) {
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets") {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "unknown key \"", item.key(), "\" (expected dtype, shape, data_offsets)"));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) return absl::InvalidArgumentError(absl::StrCat(where, "missing \"", key, "\""));
  }
  Entry entry;
  entry.name = name;

  const Json& dtype = value["dtype"];
  if (!dtype.is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "dtype is not a string (got ", dtype.type_name(), ")"));
  }
  absl::StatusOr<Dtype> parsed_dtype = ParseDtype(dtype.get_ref<const std::string&>());
  if (!parsed_dtype.ok()) return Annotate(parsed_dtype.status(), absl::StrCat("tensor \"", name, "\""));
  entry.dtype = *parsed_dtype;

  const Json& shape = value["shape"];
  if (!shape.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "shape is not an array (got ", shape.type_name(), ")"));
  }
  for (size_t i = 0; i < shape.size(); ++i) {
    if (!shape[i].is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "shape[", i, "] is not a non-negative integer: ", Clip(shape[i].dump())));
    }
    const uint64_t dim = shape[i].get<uint64_t>();
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(where, "shape[", i, "] = ", dim, " is too large"));
    }
    entry.shape.push_back(dim);
  }

  const Json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "data_offsets is not two non-negative integers: ", Clip(offsets.dump())));
  }
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  const std::string offsets_text = absl::StrCat("data_offsets ", OffsetsString(entry.begin, entry.end));
  if (entry.begin > entry.end) return absl::InvalidArgumentError(absl::StrCat(where, offsets_text, ": begin > end"));
  if (entry.end > data_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, offsets_text, " extend past the end of the ", data_size, "-byte data buffer"));
  }

  const std::string shape_text = absl::StrCat("shape ", ShapeString(entry.shape), " x ", DtypeName(entry.dtype));
  std::optional<uint64_t> nbytes = ByteSize(entry.shape, DtypeSize(entry.dtype));
  if (!nbytes) return absl::InvalidArgumentError(absl::StrCat(where, shape_text, " overflows 64 bits"));
  if (*nbytes != entry.end - entry.begin) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, offsets_text, " do not match ", shape_text, " = ", *nbytes, " bytes"));
  }
  return entry;
}

// The reference layout rule: sorted by offsets, tensors tile the data buffer exactly, with no overlap or hole, from 0
// to its end.
absl::Status CheckLayout(std::vector<Entry> entries, uint64_t data_size) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    const std::string where = absl::StrCat("tensor \"", e.name, "\": data_offsets ", OffsetsString(e.begin, e.end));
    if (e.begin < covered) {
      return absl::InvalidArgumentError(absl::StrCat(where, " overlap tensor \"", previous->name, "\" at ",
                                                     OffsetsString(previous->begin, previous->end)));
    }
    if (e.begin > covered) {
      return absl::InvalidArgumentError(
          previous == nullptr
              ? absl::StrCat(where, " leave a hole: the first tensor must start at 0")
              : absl::StrCat(where, " leave a hole after tensor \"", previous->name, "\", which ends at ", covered));
    }
    covered = e.end;
    previous = &e;
  }
  if (covered != data_size) {
    return absl::InvalidArgumentError(previous == nullptr
                                          ? absl::StrCat("no tensors, but the data buffer is ", data_size, " bytes")
                                          : absl::StrCat("tensor \"", previous->name, "\" is the last and ends at ",
                                                         covered, ", but the data buffer is ", data_size, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view DtypeName(Dtype dtype) { return Info(dtype).name; }

size_t DtypeSize(Dtype dtype) { return Info(dtype).size; }

absl::StatusOr<Dtype> ParseDtype(absl::string_view name) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.name == name) return info.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype \"", Clip(name), "\""));
}

int64_t TensorView::numel() const {
  uint64_t n = 1;  // Unsigned: wraps instead of undefined behaviour for a hand-built view; Parse guarantees a fit.
  for (int64_t dim : shape) n *= static_cast<uint64_t>(dim);
  return static_cast<int64_t>(n);
}

absl::StatusOr<File> File::Parse(std::string bytes, absl::string_view source) {
  auto fail = [&](const absl::Status& status) { return Annotate(status, source); };
  if (bytes.size() < kLengthPrefixBytes) {
    return fail(
        absl::DataLossError(absl::StrCat("file is ", bytes.size(), " bytes, too short for the 8-byte header length")));
  }
  uint64_t header_size = 0;
  for (size_t i = 0; i < kLengthPrefixBytes; ++i) {
    header_size |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  }
  if (header_size == 0) return fail(absl::InvalidArgumentError("header length is 0"));
  if (header_size > kMaxHeaderBytes) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("header length ", header_size, " exceeds the limit of ", kMaxHeaderBytes, " bytes")));
  }
  const uint64_t available = bytes.size() - kLengthPrefixBytes;
  if (header_size > available) {
    return fail(absl::DataLossError(absl::StrCat("truncated: header length is ", header_size, " bytes but only ",
                                                 available, " bytes follow the length")));
  }
  absl::string_view header_text(bytes.data() + kLengthPrefixBytes, header_size);
  if (header_text.front() != '{') return fail(absl::InvalidArgumentError("header does not start with '{'"));

  // nlohmann stops at a NUL as if the input ended there, which would let bytes after it go unchecked.
  if (size_t nul = header_text.find('\0'); nul != absl::string_view::npos) {
    return fail(absl::InvalidArgumentError(absl::StrCat("header has a NUL byte at offset ", nul)));
  }
  // Deeper nesting would overflow the stack in the recursive dump of an offending value for its message.
  if (absl::Status depth = CheckJsonDepth(header_text); !depth.ok()) return fail(Annotate(depth, "header"));
  absl::StatusOr<Json> header = ParseHeaderJson(header_text);
  if (!header.ok()) return fail(header.status());

  const uint64_t data_start = kLengthPrefixBytes + header_size;
  const uint64_t data_size = bytes.size() - data_start;
  File file;
  std::vector<Entry> entries;
  for (const auto& item : header->items()) {
    if (item.key() == kMetadataKey) {
      absl::StatusOr<std::map<std::string, std::string>> metadata = ParseMetadata(item.value());
      if (!metadata.ok()) return fail(metadata.status());
      file.metadata_ = *std::move(metadata);
      continue;
    }
    absl::StatusOr<Entry> entry = ParseEntry(item.key(), item.value(), data_size);
    if (!entry.ok()) return fail(entry.status());
    entries.push_back(*std::move(entry));
  }
  if (absl::Status layout = CheckLayout(entries, data_size); !layout.ok()) return fail(layout);

  file.bytes_ = std::make_shared<const std::string>(std::move(bytes));
  const uint8_t* data = reinterpret_cast<const uint8_t*>(file.bytes_->data()) + data_start;
  for (Entry& e : entries) {
    TensorView view;
    view.dtype = e.dtype;
    view.shape.assign(e.shape.begin(), e.shape.end());  // ParseEntry bounded each dim by INT64_MAX.
    view.data = data + e.begin;
    view.nbytes = static_cast<size_t>(e.end - e.begin);
    file.tensors_.emplace(std::move(e.name), std::move(view));
  }
  return file;
}

absl::StatusOr<File> File::Read(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return Parse(std::move(bytes), path);
}

std::vector<std::string> File::names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) names.push_back(name);
  return names;
}

absl::StatusOr<TensorView> File::Get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return absl::NotFoundError(absl::StrCat("tensor \"", name, "\" not found"));
  return it->second;
}

absl::StatusOr<std::string> Serialize(const std::vector<TensorToWrite>& tensors,
                                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    const std::string where = absl::StrCat("tensor \"", t.name, "\": ");
    if (t.name == kMetadataKey) {
      return absl::InvalidArgumentError(absl::StrCat(where, "name is reserved for metadata"));
    }
    if (header.contains(t.name)) return absl::InvalidArgumentError(absl::StrCat(where, "name repeats"));
    std::vector<uint64_t> shape;
    for (int64_t dim : t.shape) {
      if (dim < 0) return absl::InvalidArgumentError(absl::StrCat(where, "negative dimension ", dim, " in shape"));
      shape.push_back(static_cast<uint64_t>(dim));
    }
    const std::string shape_text = absl::StrCat("shape ", ShapeString(shape), " x ", DtypeName(t.dtype));
    std::optional<uint64_t> nbytes = ByteSize(shape, DtypeSize(t.dtype));
    if (!nbytes) return absl::InvalidArgumentError(absl::StrCat(where, shape_text, " overflows 64 bits"));
    if (*nbytes != t.nbytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "nbytes ", t.nbytes, " does not match ", shape_text, " = ", *nbytes, " bytes"));
    }
    if (t.nbytes > 0 && t.data == nullptr) return absl::InvalidArgumentError(absl::StrCat(where, "data is null"));
    header[t.name] = {
        {"dtype", std::string(DtypeName(t.dtype))}, {"shape", shape}, {"data_offsets", {offset, offset + *nbytes}}};
    offset += *nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {  // Names and metadata must be valid UTF-8.
    return absl::InvalidArgumentError(absl::StrCat("cannot encode header: ", Clip(e.what())));
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(kLengthPrefixBytes + text.size() + offset);
  for (size_t i = 0; i < kLengthPrefixBytes; ++i) {
    out.push_back(static_cast<char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff));
  }
  out += text;
  for (const TensorToWrite& t : tensors) {
    if (t.nbytes > 0) out.append(static_cast<const char*>(t.data), t.nbytes);
  }
  return out;
}

absl::Status Write(const std::string& path, const std::vector<TensorToWrite>& tensors,
                   const std::map<std::string, std::string>& metadata) {
  absl::StatusOr<std::string> bytes = Serialize(tensors, metadata);
  if (!bytes.ok()) return Annotate(bytes.status(), path);
  return WriteFileAtomic(path, *bytes);
}

}  // namespace alignd::safetensors
