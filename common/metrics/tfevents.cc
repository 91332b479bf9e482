#include "common/metrics/tfevents.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/file_util.h"
#include "common/base/status.h"

namespace alignd {
namespace {

namespace fs = std::filesystem;

constexpr char kEventsPrefix[] = "events.out.tfevents.";

constexpr std::array<uint32_t, 256> MakeCrc32cTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    table[i] = crc;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrc32cTable = MakeCrc32cTable();

// Little-endian fixed-width integers, whatever the host's byte order.
void PutFixed32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutFixed64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Protocol buffer wire format: the few field kinds an Event with scalar summaries needs.
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void PutKey(std::string* out, uint32_t field, WireType type) { PutVarint(out, (uint64_t{field} << 3) | type); }
void PutDouble(std::string* out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  PutKey(out, field, kFixed64);
  PutFixed64(out, bits);
}
void PutFloat(std::string* out, uint32_t field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  PutKey(out, field, kFixed32);
  PutFixed32(out, bits);
}
void PutInt64(std::string* out, uint32_t field, int64_t v) {  // int64: negative values as 10-byte varints
  PutKey(out, field, kVarint);
  PutVarint(out, static_cast<uint64_t>(v));
}
void PutBytes(std::string* out, uint32_t field, absl::string_view bytes) {
  PutKey(out, field, kLengthDelimited);
  PutVarint(out, bytes.size());
  out->append(bytes.data(), bytes.size());
}

// tensorflow.Event's fields (tensorboard/compat/proto/event.proto), with Summary's and SessionLog's.
constexpr uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5, kEventSessionLog = 7;
constexpr uint32_t kSummaryValue = 1, kValueTag = 1, kValueSimpleValue = 2;
constexpr uint32_t kSessionLogStatus = 1, kSessionLogStart = 1;

std::string EventHeader(double wall_time, int64_t step) {
  std::string event;
  PutDouble(&event, kEventWallTime, wall_time);
  if (step != 0) PutInt64(&event, kEventStep, step);
  return event;
}

double SystemClock() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// The seconds field of an events file name, or -1.
int64_t SecondsOf(absl::string_view name) {
  name.remove_prefix(std::strlen(kEventsPrefix));
  int64_t seconds;
  if (!absl::SimpleAtoi(name.substr(0, name.find('.')), &seconds)) return -1;
  return seconds;
}

}  // namespace

uint32_t Crc32c(absl::string_view data) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char c : data) crc = kCrc32cTable[(crc ^ c) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

uint32_t MaskCrc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

std::string FrameRecord(absl::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  PutFixed64(&out, data.size());
  PutFixed32(&out, MaskCrc32c(Crc32c(out)));
  out.append(data.data(), data.size());
  PutFixed32(&out, MaskCrc32c(Crc32c(data)));
  return out;
}

std::string FileVersionEvent(double wall_time) {
  std::string event = EventHeader(wall_time, 0);
  PutBytes(&event, kEventFileVersion, "brain.Event:2");
  return event;
}

std::string SessionStartEvent(double wall_time, int64_t step) {
  std::string session_log;
  PutKey(&session_log, kSessionLogStatus, kVarint);
  PutVarint(&session_log, kSessionLogStart);
  std::string event = EventHeader(wall_time, step);
  PutBytes(&event, kEventSessionLog, session_log);
  return event;
}

std::string ScalarsEvent(double wall_time, int64_t step, const std::map<std::string, double>& scalars) {
  std::string summary;
  for (const auto& [tag, value] : scalars) {
    std::string v;
    PutBytes(&v, kValueTag, tag);
    PutFloat(&v, kValueSimpleValue, static_cast<float>(value));
    PutBytes(&summary, kSummaryValue, v);
  }
  std::string event = EventHeader(wall_time, step);
  PutBytes(&event, kEventSummary, summary);
  return event;
}

bool IsEventsFileName(absl::string_view name) { return absl::StartsWith(name, kEventsPrefix); }

std::string EventsFileName(int64_t unix_seconds, absl::string_view host, int64_t pid,
                           const std::vector<std::string>& existing) {
  auto name = [&](int64_t seconds) { return absl::StrFormat("%s%010d.%s.%d.0", kEventsPrefix, seconds, host, pid); };
  std::string last;  // the greatest events file name there
  for (const std::string& e : existing) {
    if (IsEventsFileName(e) && e > last) last = e;
  }
  std::string candidate = name(unix_seconds);
  if (last.empty() || candidate > last) return candidate;
  return name(std::max(unix_seconds, SecondsOf(last)) + 1);
}

absl::StatusOr<std::unique_ptr<EventsWriter>> EventsWriter::Create(Options options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("EventsWriter: no folder given");
  if (!options.clock) options.clock = SystemClock;
  if (options.host.empty()) options.host = HostName();
  if (options.pid == 0) options.pid = ::getpid();
  RETURN_IF_ERROR(MakeDirs(options.dir));
  std::vector<std::string> existing;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(options.dir, ec)) {
    std::string name = entry.path().filename().string();
    if (!IsEventsFileName(name)) continue;
    if (options.fresh) {
      fs::remove(entry.path(), ec);
      if (ec) return absl::InternalError(absl::StrCat(entry.path().string(), ": cannot remove: ", ec.message()));
    } else {
      existing.push_back(name);
    }
  }
  if (ec) return absl::InternalError(absl::StrCat(options.dir, ": cannot list: ", ec.message()));
  const double now = options.clock();
  std::string path =
      JoinPath(options.dir, EventsFileName(static_cast<int64_t>(now), options.host, options.pid, existing));
  std::unique_ptr<EventsWriter> writer(new EventsWriter(path, options.clock));
  writer->file_.open(path, std::ios::binary | std::ios::trunc);
  if (!writer->file_) return absl::InternalError(absl::StrCat(path, ": cannot create"));
  RETURN_IF_ERROR(writer->Append(FileVersionEvent(now)));
  RETURN_IF_ERROR(writer->Append(SessionStartEvent(now, options.first_step)));
  return writer;
}

absl::Status EventsWriter::WriteScalars(int64_t step, const std::map<std::string, double>& scalars) {
  return Append(ScalarsEvent(clock_(), step, scalars));
}

absl::Status EventsWriter::Append(const std::string& event) {
  const std::string record = FrameRecord(event);
  file_.write(record.data(), static_cast<std::streamsize>(record.size()));
  file_.flush();
  if (!file_) return absl::InternalError(absl::StrCat(path_, ": cannot write"));
  return absl::OkStatus();
}

}  // namespace alignd
