// TensorBoard event files ("tfevents"), written without TensorFlow or protobuf: TFRecord framing around hand-encoded
// tensorflow.Event messages that carry scalar summaries, which TensorBoard's loaders (and EventAccumulator) read.
//
// A file is a sequence of records: uint64 length (little endian), the masked CRC-32C of those 8 bytes, the data, the
// masked CRC-32C of the data. Each record's data is one serialized Event: the first carries file_version
// "brain.Event:2", the second a SessionLog START at the first step the writer will log, every later one a Summary of
// simple_value scalars at one step.
//
// Restarts: TensorBoard takes a START event at step S to mean that the run restarted there, and drops every event it
// read before with a step >= S (--purge_orphaned_data, the default). So a run resumed from the checkpoint of step C
// writes a new file whose START is at C + 1, and TensorBoard shows what metrics.jsonl keeps: the old run's steps up
// to C, the resumed run's after.
#ifndef ALIGND_COMMON_METRICS_TFEVENTS_H_
#define ALIGND_COMMON_METRICS_TFEVENTS_H_

#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord framing uses: Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(absl::string_view data);

// TFRecord's mask of a CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t MaskCrc32c(uint32_t crc);

// `data` framed as one TFRecord (length, masked CRC of the length, data, masked CRC of the data).
std::string FrameRecord(absl::string_view data);

// Serialized tensorflow.Event messages.
std::string FileVersionEvent(double wall_time);                 // file_version: "brain.Event:2"
std::string SessionStartEvent(double wall_time, int64_t step);  // session_log { status: START }
// One Summary with a simple_value (float32) per entry, tagged with its key, in key order.
std::string ScalarsEvent(double wall_time, int64_t step, const std::map<std::string, double>& scalars);

// True for the names TensorBoard reads as event files of a folder ("events.out.tfevents.*").
bool IsEventsFileName(absl::string_view name);

// "events.out.tfevents.<unix seconds, 10 digits>.<host>.<pid>.0", the name TensorFlow's and PyTorch's writers use.
// TensorBoard reads a folder's files in name order, so when the name with `unix_seconds` would not sort after every
// events file in `existing` (a resumed run in the same second, or with a smaller pid), the seconds are raised to
// one more than the greatest there.
std::string EventsFileName(int64_t unix_seconds, absl::string_view host, int64_t pid,
                           const std::vector<std::string>& existing);

// Writes one events file in a folder. Not thread-safe: one caller at a time.
class EventsWriter {
 public:
  struct Options {
    std::string dir;         // the folder (created when missing); required
    int64_t first_step = 1;  // the step the SessionLog START names: the first step this run will log
    // Remove the folder's earlier events files first (a fresh run; a resumed one keeps them, see above).
    bool fresh = true;
    // Wall time in seconds since the Unix epoch. Default: the system clock.
    std::function<double()> clock;
    std::string host;  // default: gethostname()
    int64_t pid = 0;   // default: getpid()
  };

  // Opens a new events file in options.dir and writes (and flushes) its file_version and START events.
  // INVALID_ARGUMENT without a dir; FAILED_PRECONDITION when a part of the dir is a file; INTERNAL (naming the path)
  // when the folder or file cannot be made, listed or written.
  static absl::StatusOr<std::unique_ptr<EventsWriter>> Create(Options options);

  // Appends one Summary event of `scalars` at `step`, stamped with the clock, and flushes it, so that TensorBoard
  // sees a running job's steps as they come. INTERNAL naming the file when the write fails.
  absl::Status WriteScalars(int64_t step, const std::map<std::string, double>& scalars);

  // The events file this writer appends to.
  const std::string& path() const { return path_; }

 private:
  EventsWriter(std::string path, std::function<double()> clock) : path_(std::move(path)), clock_(std::move(clock)) {}
  absl::Status Append(const std::string& event);

  const std::string path_;
  const std::function<double()> clock_;
  std::ofstream file_;
};

}  // namespace alignd

#endif  // ALIGND_COMMON_METRICS_TFEVENTS_H_
