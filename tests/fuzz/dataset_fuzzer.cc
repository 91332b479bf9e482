// JSONL for ParseJsonl (common/data/dataset.h). The first line names the schema to require ("auto" to detect it, or one of
// SchemaName's names); an input whose first line is neither is read whole, detecting the schema. Errors are
// INVALID_ARGUMENT starting with the source; a dataset that parses writes back (RecordToJsonLine) to lines that parse
// to equal records.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/data/dataset.h"
#include "tests/fuzz/fuzz_check.h"

namespace alignd {
namespace {

void Run(const uint8_t* data, size_t size) {
  absl::string_view contents(reinterpret_cast<const char*>(data), size);
  std::optional<DatasetSchema> schema;
  if (size_t newline = contents.find('\n'); newline != absl::string_view::npos) {
    absl::string_view first = contents.substr(0, newline);
    absl::StatusOr<DatasetSchema> named = ParseSchemaName(first);
    if (named.ok() || first == "auto") {
      if (named.ok()) schema = *named;
      contents.remove_prefix(newline + 1);
    }
  }
  absl::StatusOr<Dataset> dataset = ParseJsonl(contents, "fuzz.jsonl", schema);
  if (!dataset.ok()) {
    FUZZ_CHECK(fuzz::IsErrorOf(dataset.status(), {absl::StatusCode::kInvalidArgument}), dataset.status());
    FUZZ_CHECK(absl::StartsWith(dataset.status().message(), "fuzz.jsonl:"), dataset.status());
    return;
  }
  FUZZ_CHECK(!dataset->records.empty(), "no records");
  FUZZ_CHECK(!schema || dataset->schema == *schema, "schema changed");
  std::string lines;
  for (const Record& record : dataset->records)
    absl::StrAppend(&lines, RecordToJsonLine(record, dataset->schema), "\n");
  absl::StatusOr<Dataset> again = ParseJsonl(lines, "again.jsonl", dataset->schema);
  FUZZ_CHECK(again.ok(), again.status());
  FUZZ_CHECK(again->records.size() == dataset->records.size(), "record count changed");
  for (size_t i = 0; i < again->records.size(); ++i) {
    const Record& a = dataset->records[i];
    const Record& b = again->records[i];
    FUZZ_CHECK(a.text == b.text && a.messages == b.messages && a.prompt == b.prompt && a.completion == b.completion &&
                   a.chosen == b.chosen && a.rejected == b.rejected && a.extra == b.extra,
               "record " << i << " changed: " << RecordToJsonLine(b, dataset->schema));
  }
}

}  // namespace
}  // namespace alignd

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alignd::Run(data, size);
  return 0;
}
