#include "common/metrics/tfevents.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// --- A reader written from the format's description, independent of the writer ---

uint64_t Fixed(const std::string& bytes, size_t at, int width) {
  uint64_t v = 0;
  for (int i = width - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
  return v;
}

// The records of a TFRecord file; a bad length or CRC fails the test and ends the list.
std::vector<std::string> Records(const std::string& file) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < file.size()) {
    if (file.size() - at < 12) {
      ADD_FAILURE() << "truncated header at byte " << at;
      break;
    }
    const uint64_t length = Fixed(file, at, 8);
    if (MaskCrc32c(Crc32c(file.substr(at, 8))) != Fixed(file, at + 8, 4)) {
      ADD_FAILURE() << "bad length CRC at byte " << at;
      break;
    }
    if (file.size() - at - 12 < length + 4) {
      ADD_FAILURE() << "truncated record at byte " << at;
      break;
    }
    std::string data = file.substr(at + 12, length);
    if (MaskCrc32c(Crc32c(data)) != Fixed(file, at + 12 + length, 4)) {
      ADD_FAILURE() << "bad data CRC at byte " << at;
      break;
    }
    out.push_back(data);
    at += 12 + length + 4;
  }
  return out;
}

// A protobuf message's fields, as the wire format lays them out: field number -> its values' raw bytes (varints
// decoded into 8 little-endian bytes).
std::multimap<uint32_t, std::string> Fields(const std::string& msg) {
  std::multimap<uint32_t, std::string> out;
  size_t at = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0; at < msg.size(); shift += 7) {
      const auto byte = static_cast<unsigned char>(msg[at++]);
      v |= uint64_t{byte & 0x7fu} << shift;
      if (!(byte & 0x80)) break;
    }
    return v;
  };
  while (at < msg.size()) {
    const uint64_t key = varint();
    const uint32_t field = static_cast<uint32_t>(key >> 3);
    switch (key & 7) {
      case 0: {
        const uint64_t v = varint();
        out.emplace(field, std::string(reinterpret_cast<const char*>(&v), 8));
        break;
      }
      case 1:
        out.emplace(field, msg.substr(at, 8));
        at += 8;
        break;
      case 5:
        out.emplace(field, msg.substr(at, 4));
        at += 4;
        break;
      case 2: {
        const uint64_t n = varint();
        out.emplace(field, msg.substr(at, n));
        at += n;
        break;
      }
      default:
        ADD_FAILURE() << "wire type " << (key & 7);
        return out;
    }
  }
  return out;
}

template <typename T>
T As(const std::string& bytes) {
  T v;
  EXPECT_EQ(bytes.size(), sizeof v);
  std::memcpy(&v, bytes.data(), sizeof v);
  return v;
}

struct DecodedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  int64_t session_status = -1;  // -1: no session_log
  std::map<std::string, float> scalars;
};

DecodedEvent Decode(const std::string& event) {
  DecodedEvent e;
  for (const auto& [field, value] : Fields(event)) {
    if (field == 1) e.wall_time = As<double>(value);
    if (field == 2) e.step = As<int64_t>(value);
    if (field == 3) e.file_version = value;
    if (field == 7) e.session_status = As<int64_t>(Fields(value).find(1)->second);
    if (field == 5) {
      for (const auto& [vfield, v] : Fields(value)) {
        EXPECT_EQ(vfield, 1u);
        auto parts = Fields(v);
        e.scalars[parts.find(1)->second] = As<float>(parts.find(2)->second);
      }
    }
  }
  return e;
}

std::string Hex(const std::string& bytes) { return absl::BytesToHexString(bytes); }

// --- CRC and framing ---

TEST(Crc32cTest, MatchesTheKnownVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720, B.4
  // TensorBoard's own masked_crc32c(b"123456789").
  EXPECT_EQ(MaskCrc32c(Crc32c("123456789")), 0xC78AB0E5u);
}

TEST(FrameRecordTest, RoundTrips) {
  const std::string data("an event\0with a zero byte", 25);
  const std::string framed = FrameRecord(data);
  EXPECT_EQ(framed.size(), 8 + 4 + data.size() + 4);
  EXPECT_EQ(Fixed(framed, 0, 8), data.size());
  EXPECT_THAT(Records(framed + FrameRecord("")), ElementsAre(data, ""));
}

std::string CorruptedRecord() {
  std::string framed = FrameRecord("payload");
  framed[14] ^= 1;  // a byte of the data
  return framed;
}

TEST(FrameRecordTest, ACorruptedByteIsCaught) {
  // The test's reader checks what the writer wrote: a flipped bit must show, or the round trip proves nothing.
  EXPECT_NONFATAL_FAILURE(Records(CorruptedRecord()), "bad data CRC");
}

// --- Events, against bytes that TensorBoard's own event_pb2 serializes ---

TEST(EventsTest, ScalarsEventMatchesProtobufBytes) {
  // Event(wall_time=1.5, step=3, summary=Summary(value=[Value(tag='a', simple_value=0.25),
  //                                                     Value(tag='b/c', simple_value=-2)])).SerializeToString()
  EXPECT_EQ(Hex(ScalarsEvent(1.5, 3, {{"b/c", -2.0}, {"a", 0.25}})),
            "09000000000000f83f10032a160a080a0161150000803e0a0a0a03622f6315000000c0");
  // Event(wall_time=2.0, file_version='brain.Event:2')
  EXPECT_EQ(Hex(FileVersionEvent(2.0)), "0900000000000000401a0d627261696e2e4576656e743a32");
  // Event(wall_time=2.0, step=7, session_log=SessionLog(status=START))
  EXPECT_EQ(Hex(SessionStartEvent(2.0, 7)), "09000000000000004010073a020801");
}

TEST(EventsTest, ScalarsDecodeAsFloat32) {
  DecodedEvent e = Decode(ScalarsEvent(1700000000.25, 123456789012, {{"train/loss", 1.0 / 3}, {"eval/x", 1e40}}));
  EXPECT_EQ(e.wall_time, 1700000000.25);
  EXPECT_EQ(e.step, 123456789012);
  EXPECT_THAT(e.scalars, ElementsAre(Pair("eval/x", std::numeric_limits<float>::infinity()),
                                     Pair("train/loss", static_cast<float>(1.0 / 3))));
}

// --- File names ---

TEST(EventsFileNameTest, HasTheNameTensorBoardLooksFor) {
  EXPECT_EQ(EventsFileName(1700000000, "host", 42, {}), "events.out.tfevents.1700000000.host.42.0");
  EXPECT_TRUE(IsEventsFileName("events.out.tfevents.1700000000.host.42.0"));
  EXPECT_FALSE(IsEventsFileName("metrics.jsonl"));
}

TEST(EventsFileNameTest, SortsAfterTheFilesAlreadyThere) {
  const std::vector<std::string> earlier = {"events.out.tfevents.1700000000.host.999.0", "zz-not-events"};
  // A later second sorts after as it is.
  EXPECT_EQ(EventsFileName(1700000001, "host", 1000, earlier), "events.out.tfevents.1700000001.host.1000.0");
  // The same second with a pid that sorts first ("1000" < "999"), or the same name: one second on.
  EXPECT_EQ(EventsFileName(1700000000, "host", 1000, earlier), "events.out.tfevents.1700000001.host.1000.0");
  EXPECT_EQ(EventsFileName(1700000000, "host", 999, earlier), "events.out.tfevents.1700000001.host.999.0");
  // A clock behind the files there.
  EXPECT_EQ(EventsFileName(1600000000, "host", 7, earlier), "events.out.tfevents.1700000001.host.7.0");
}

// --- The writer ---

class EventsWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/tb";
    fs::remove_all(dir_);
  }

  std::unique_ptr<EventsWriter> Open(int64_t first_step, bool fresh) {
    EventsWriter::Options o;
    o.dir = dir_;
    o.first_step = first_step;
    o.fresh = fresh;
    o.clock = [this] { return now_; };
    o.host = "testhost";
    o.pid = 77;
    auto writer = EventsWriter::Create(o);
    EXPECT_TRUE(writer.ok()) << writer.status();
    return writer.ok() ? std::move(*writer) : nullptr;
  }

  std::vector<DecodedEvent> Read(const std::string& path) {
    auto bytes = ReadFile(path);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    std::vector<DecodedEvent> out;
    for (const std::string& r : Records(bytes.ok() ? *bytes : "")) out.push_back(Decode(r));
    return out;
  }

  std::vector<std::string> Files() {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string dir_;
  double now_ = 1700000000.5;
};

TEST_F(EventsWriterTest, WritesVersionStartAndOneEventPerStepFlushedAtOnce) {
  auto writer = Open(1, true);
  ASSERT_NE(writer, nullptr);
  EXPECT_EQ(writer->path(), dir_ + "/events.out.tfevents.1700000000.testhost.77.0");
  ASSERT_TRUE(writer->WriteScalars(1, {{"train/loss", 2.5}, {"reward/mean", 0.125}}).ok());
  now_ += 3;
  ASSERT_TRUE(writer->WriteScalars(2, {{"train/loss", 2.0}}).ok());
  // Read while the writer is still open: every step is already in the file.
  std::vector<DecodedEvent> events = Read(writer->path());
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  EXPECT_EQ(events[0].wall_time, 1700000000.5);
  EXPECT_EQ(events[1].session_status, 1);  // START
  EXPECT_EQ(events[1].step, 1);
  EXPECT_EQ(events[2].step, 1);
  EXPECT_THAT(events[2].scalars, ElementsAre(Pair("reward/mean", 0.125f), Pair("train/loss", 2.5f)));
  EXPECT_EQ(events[3].step, 2);
  EXPECT_EQ(events[3].wall_time, 1700000003.5);
  EXPECT_THAT(events[3].scalars, ElementsAre(Pair("train/loss", 2.0f)));
}

TEST_F(EventsWriterTest, AResumedRunAddsAFileThatSortsLastAndStartsAfterTheCheckpoint) {
  auto first = Open(1, true);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->WriteScalars(1, {{"train/loss", 3}}).ok());
  first.reset();
  auto resumed = Open(5, false);  // the same second and pid: the name moves one second on
  ASSERT_NE(resumed, nullptr);
  EXPECT_THAT(Files(), ElementsAre("events.out.tfevents.1700000000.testhost.77.0",
                                   "events.out.tfevents.1700000001.testhost.77.0"));
  std::vector<DecodedEvent> events = Read(resumed->path());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].session_status, 1);
  EXPECT_EQ(events[1].step, 5);
}

TEST_F(EventsWriterTest, AFreshRunRemovesEarlierEventsFilesOnly) {
  ASSERT_NE(Open(1, true), nullptr);
  now_ += 60;
  ASSERT_NE(Open(3, false), nullptr);
  std::ofstream(dir_ + "/notes.txt") << "mine";
  now_ += 60;
  auto fresh = Open(1, true);
  ASSERT_NE(fresh, nullptr);
  EXPECT_THAT(Files(), ElementsAre("events.out.tfevents.1700000120.testhost.77.0", "notes.txt"));
}

// Error paths.

TEST_F(EventsWriterTest, NoFolderIsInvalidArgument) {
  EXPECT_EQ(EventsWriter::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(EventsWriterTest, AFolderThatIsAFileIsFailedPrecondition) {
  fs::create_directories(fs::path(dir_).parent_path());
  std::ofstream(dir_) << "not a folder";
  EventsWriter::Options o;
  o.dir = dir_;
  auto writer = EventsWriter::Create(o);
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(writer.status().message(), HasSubstr(dir_));
}

}  // namespace
}  // namespace alignd
