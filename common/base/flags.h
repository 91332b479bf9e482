// Command-line flags for one (sub)command of `alignd` / `alignctl`, without global state: each subcommand builds a
// FlagSet, declares its flags, and parses the arguments that follow the subcommand name.
//
//   FlagSet flags("alignd eval --model DIR --data FILE.jsonl [flags]");
//   flags.String("model", "", "model directory");
//   flags.Int("batch-size", 8, "sequences per batch");
//   flags.String("coordinator", "localhost:7070", "coordinator address", "ALIGND_COORDINATOR");
//   RETURN_IF_ERROR(flags.Parse(args));
//   if (flags.help_requested()) { std::cout << flags.Usage(); return 0; }
//
// Names are spelt with dashes (`--batch-size`), the spelling Usage() prints; `_` is accepted for `-` everywhere a
// name appears (declaration, the command line, Get*/IsSet), so `--batch_size` and GetInt("batch_size") work too.
//
// Syntax: `--name=value` or `--name value`; booleans as `--name`, `--name=true|false|1|0`, `--noname` or `--no-name`.
// `--` ends the flags; everything else that is not a flag (and everything after `--`) is positional. A repeated flag
// keeps its last value. Precedence: command line, then the flag's environment variable (if declared and set), then
// the default.
//
// Declaring a flag twice (in either spelling), or with a name that is empty, starts with '-' or '_', contains '=', or
// is "help"/"h", is a programming error and CHECK-fails, as does a Get* with an undeclared name or the wrong type.
//
// Not thread-safe; a FlagSet is built, parsed and read on one thread.
#ifndef ALIGND_COMMON_BASE_FLAGS_H_
#define ALIGND_COMMON_BASE_FLAGS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace alignd {

class FlagSet {
 public:
  // Returns the value of an environment variable, or nullopt when it is unset.
  using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

  // `usage` is the synopsis shown by Usage(), e.g. "alignd eval --model DIR --data FILE.jsonl [flags]". `env` defaults
  // to the process environment (getenv); tests pass their own.
  explicit FlagSet(std::string usage, EnvLookup env = ProcessEnv);

  // Declare a flag. `env_var`, when not empty, names an environment variable whose value (parsed like a command-line
  // value) replaces the default.
  void String(std::string name, std::string default_value, std::string help, std::string env_var = "");
  void Int(std::string name, int64_t default_value, std::string help, std::string env_var = "");
  void Double(std::string name, double default_value, std::string help, std::string env_var = "");
  void Bool(std::string name, bool default_value, std::string help, std::string env_var = "");

  // Parses `args` (without the program and subcommand names), starting again from the defaults each time.
  // INVALID_ARGUMENT naming the flag (or environment variable) for an unknown flag, a missing value, or a value that
  // does not parse as the flag's type (integers in int64 range; doubles finite; booleans true/false/1/0).
  // "--help" or "-h" before any "--" makes it return OK at once with help_requested() true, leaving the other
  // arguments unchecked.
  absl::Status Parse(const std::vector<std::string>& args);

  // The flag's value: from the last Parse, or its default before any.
  std::string GetString(absl::string_view name) const;
  int64_t GetInt(absl::string_view name) const;
  double GetDouble(absl::string_view name) const;
  bool GetBool(absl::string_view name) const;

  // Whether the flag was given on the command line (a value from its environment variable does not count).
  bool IsSet(absl::string_view name) const;
  // The non-flag arguments of the last Parse, in order (those after `--` included); whether --help or -h was seen.
  const std::vector<std::string>& positional() const { return positional_; }
  bool help_requested() const { return help_requested_; }

  // "usage: <usage>\n" then one aligned line per flag in declaration order: name, type, help, default, env variable.
  std::string Usage() const;

  // getenv as an EnvLookup.
  static std::optional<std::string> ProcessEnv(const std::string& name);

 private:
  using Value = std::variant<std::string, int64_t, double, bool>;
  struct Flag {
    std::string name;
    std::string help;
    std::string env_var;
    Value default_value;
    Value value;
    bool set = false;
  };

  void Declare(std::string name, Value default_value, std::string help, std::string env_var);
  Flag* Find(absl::string_view name);
  const Flag& Lookup(absl::string_view name, size_t type_index) const;
  // Parses `text` as `flag`'s type into its value; `source` ("--name" or "$VAR") names it in errors.
  absl::Status Assign(Flag& flag, absl::string_view text, absl::string_view source);
  // INVALID_ARGUMENT for an unknown flag, with a suggestion when a declared name is close.
  absl::Status Unknown(absl::string_view arg) const;

  std::string usage_;
  EnvLookup env_;
  std::vector<Flag> flags_;                           // Declaration order, for Usage().
  std::map<std::string, size_t, std::less<>> index_;  // Name -> position in flags_.
  std::vector<std::string> positional_;
  bool help_requested_ = false;
};

}  // namespace alignd

#endif  // ALIGND_COMMON_BASE_FLAGS_H_
