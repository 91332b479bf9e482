#include "common/base/flags.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "glog/logging.h"

namespace alignd {
namespace {

// Positions in FlagSet::Value.
constexpr size_t kString = 0;
constexpr size_t kInt = 1;
constexpr size_t kDouble = 2;
constexpr size_t kBool = 3;

bool IsHelp(absl::string_view arg) { return arg == "--help" || arg == "-h"; }

// Flag names are kept, looked up and printed with dashes; `_` is accepted as another spelling of `-`.
std::string Canonical(absl::string_view name) {
  std::string canonical(name);
  std::replace(canonical.begin(), canonical.end(), '_', '-');
  return canonical;
}

// "-5" and "-.5" are negative numbers and "-" conventionally means stdin: positional, not misspelt flags.
bool LooksLikeFlag(absl::string_view arg) {
  if (absl::StartsWith(arg, "--")) return true;
  return arg.size() > 1 && arg[0] == '-' && !(std::isdigit(static_cast<unsigned char>(arg[1])) || arg[1] == '.');
}

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string TypeName(size_t index) {
  switch (index) {
    case kString:
      return "STRING";
    case kInt:
      return "INT";
    case kDouble:
      return "DOUBLE";
    default:
      return "BOOL";
  }
}

std::string Format(const std::variant<std::string, int64_t, double, bool>& value) {
  switch (value.index()) {
    case kString:
      return absl::StrCat("\"", std::get<kString>(value), "\"");
    case kInt:
      return absl::StrCat(std::get<kInt>(value));
    case kDouble:
      return absl::StrCat(std::get<kDouble>(value));
    default:
      return std::get<kBool>(value) ? "true" : "false";
  }
}

}  // namespace

FlagSet::FlagSet(std::string usage, EnvLookup env) : usage_(std::move(usage)), env_(std::move(env)) {}

std::optional<std::string> FlagSet::ProcessEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

void FlagSet::String(std::string name, std::string default_value, std::string help, std::string env_var) {
  Declare(std::move(name), Value(std::in_place_index<kString>, std::move(default_value)), std::move(help),
          std::move(env_var));
}

void FlagSet::Int(std::string name, int64_t default_value, std::string help, std::string env_var) {
  Declare(std::move(name), Value(std::in_place_index<kInt>, default_value), std::move(help), std::move(env_var));
}

void FlagSet::Double(std::string name, double default_value, std::string help, std::string env_var) {
  Declare(std::move(name), Value(std::in_place_index<kDouble>, default_value), std::move(help), std::move(env_var));
}

void FlagSet::Bool(std::string name, bool default_value, std::string help, std::string env_var) {
  Declare(std::move(name), Value(std::in_place_index<kBool>, default_value), std::move(help), std::move(env_var));
}

void FlagSet::Declare(std::string name, Value default_value, std::string help, std::string env_var) {
  name = Canonical(name);
  CHECK(!name.empty() && name[0] != '-' && name.find('=') == std::string::npos)
      << "invalid flag name \"" << name << "\" in \"" << usage_ << "\"";
  CHECK(name != "help" && name != "h") << "--" << name << " is reserved in \"" << usage_ << "\"";
  CHECK(index_.count(name) == 0) << "flag --" << name << " declared twice in \"" << usage_ << "\"";
  // --noX and --no-X negate a boolean X, so X and noX (or no-X) cannot both be flags.
  const bool is_bool = default_value.index() == kBool;
  const Flag* negated = Find(absl::StrCat("no", name));
  if (negated == nullptr) negated = Find(absl::StrCat("no-", name));
  const Flag* positive = nullptr;
  if (absl::StartsWith(name, "no-")) {
    positive = Find(absl::string_view(name).substr(3));
  } else if (absl::StartsWith(name, "no")) {
    positive = Find(absl::string_view(name).substr(2));
  }
  CHECK(!(is_bool && negated != nullptr) && !(positive != nullptr && positive->value.index() == kBool))
      << "flag --" << name << " clashes with the --no form of a boolean in \"" << usage_ << "\"";
  index_.emplace(name, flags_.size());
  flags_.push_back(Flag{std::move(name), std::move(help), std::move(env_var), default_value, default_value, false});
}

FlagSet::Flag* FlagSet::Find(absl::string_view name) {
  auto it = index_.find(Canonical(name));
  return it == index_.end() ? nullptr : &flags_[it->second];
}

const FlagSet::Flag& FlagSet::Lookup(absl::string_view name, size_t type_index) const {
  auto it = index_.find(Canonical(name));
  CHECK(it != index_.end()) << "flag --" << name << " was not declared in \"" << usage_ << "\"";
  const Flag& flag = flags_[it->second];
  CHECK_EQ(flag.value.index(), type_index)
      << "flag --" << name << " is " << TypeName(flag.value.index()) << ", read as " << TypeName(type_index);
  return flag;
}

absl::Status FlagSet::Assign(Flag& flag, absl::string_view text, absl::string_view source) {
  auto bad = [&](absl::string_view expected) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": expected ", expected, ", got \"", text, "\""));
  };
  switch (flag.value.index()) {
    case kString:
      flag.value = std::string(text);
      break;
    case kInt: {
      int64_t v;
      if (!absl::SimpleAtoi(text, &v)) return bad("an integer");
      flag.value = v;
      break;
    }
    case kDouble: {
      double v;
      if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) return bad("a finite number");
      flag.value = v;
      break;
    }
    default:
      if (text == "true" || text == "1") {
        flag.value = true;
      } else if (text == "false" || text == "0") {
        flag.value = false;
      } else {
        return bad("true, false, 1 or 0");
      }
  }
  return absl::OkStatus();
}

absl::Status FlagSet::Unknown(absl::string_view arg) const {
  absl::string_view name = arg.substr(0, arg.find('='));
  name.remove_prefix(std::min(name.find_first_not_of('-'), name.size()));
  std::string message = absl::StrCat("unknown flag ", arg.substr(0, arg.find('=')));
  if (!absl::StartsWith(arg, "--")) absl::StrAppend(&message, " (flags are written --name)");
  const Flag* best = nullptr;
  size_t best_distance = 3;  // Suggest only names at most two edits away, and fewer than half their length.
  for (const Flag& flag : flags_) {
    const size_t d = EditDistance(Canonical(name), flag.name);
    if (d < best_distance && 2 * d < flag.name.size()) {
      best = &flag;
      best_distance = d;
    }
  }
  if (best != nullptr) absl::StrAppend(&message, "; did you mean --", best->name, "?");
  return absl::InvalidArgumentError(message);
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  positional_.clear();
  help_requested_ = false;
  for (Flag& flag : flags_) {
    flag.value = flag.default_value;
    flag.set = false;
  }

  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (IsHelp(arg)) {
      help_requested_ = true;
      return absl::OkStatus();
    }
  }
  for (Flag& flag : flags_) {
    if (flag.env_var.empty()) continue;
    if (std::optional<std::string> value = env_(flag.env_var)) {
      RETURN_IF_ERROR(Assign(flag, *value, absl::StrCat("$", flag.env_var, " (for --", flag.name, ")")));
    }
  }

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional_.insert(positional_.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (!LooksLikeFlag(arg)) {
      positional_.push_back(arg);
      continue;
    }
    if (!absl::StartsWith(arg, "--")) return Unknown(arg);
    absl::string_view body = absl::string_view(arg).substr(2);
    const size_t eq = body.find('=');
    absl::string_view name = body.substr(0, eq);
    std::optional<absl::string_view> value;
    if (eq != absl::string_view::npos) value = body.substr(eq + 1);
    const std::string source = absl::StrCat("--", name);

    Flag* flag = Find(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      // --noverbose, --no-verbose and --no_verbose all negate --verbose.
      absl::string_view positive = name.substr(2);
      if (absl::StartsWith(positive, "-") || absl::StartsWith(positive, "_")) positive.remove_prefix(1);
      Flag* negated = Find(positive);
      if (negated != nullptr && negated->value.index() == kBool) {
        if (value) return absl::InvalidArgumentError(absl::StrCat(source, " takes no value"));
        negated->value = false;
        negated->set = true;
        continue;
      }
    }
    if (flag == nullptr) return Unknown(arg);
    if (flag->value.index() == kBool) {
      RETURN_IF_ERROR(Assign(*flag, value.value_or("true"), source));
    } else {
      if (!value) {
        if (i + 1 == args.size() || absl::StartsWith(args[i + 1], "--")) {
          return absl::InvalidArgumentError(absl::StrCat(source, " needs a value"));
        }
        value = args[++i];
      }
      RETURN_IF_ERROR(Assign(*flag, *value, source));
    }
    flag->set = true;
  }
  return absl::OkStatus();
}

std::string FlagSet::GetString(absl::string_view name) const { return std::get<kString>(Lookup(name, kString).value); }
int64_t FlagSet::GetInt(absl::string_view name) const { return std::get<kInt>(Lookup(name, kInt).value); }
double FlagSet::GetDouble(absl::string_view name) const { return std::get<kDouble>(Lookup(name, kDouble).value); }
bool FlagSet::GetBool(absl::string_view name) const { return std::get<kBool>(Lookup(name, kBool).value); }

bool FlagSet::IsSet(absl::string_view name) const {
  auto it = index_.find(Canonical(name));
  CHECK(it != index_.end()) << "flag --" << name << " was not declared in \"" << usage_ << "\"";
  return flags_[it->second].set;
}

std::string FlagSet::Usage() const {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const Flag& flag : flags_) {
    std::string left = flag.value.index() == kBool ? absl::StrCat("--[no]", flag.name)
                                                   : absl::StrCat("--", flag.name, "=", TypeName(flag.value.index()));
    std::string right = absl::StrCat(flag.help, flag.help.empty() ? "" : " ", "(default ", Format(flag.default_value));
    if (!flag.env_var.empty()) absl::StrAppend(&right, "; env ", flag.env_var);
    rows.emplace_back(std::move(left), absl::StrCat(right, ")"));
  }
  rows.emplace_back("-h, --help", "show this help");
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.first.size());
  std::string out = absl::StrCat("usage: ", usage_, "\n\nflags:\n");
  for (const auto& [left, right] : rows) {
    absl::StrAppend(&out, "  ", left, std::string(width - left.size() + 2, ' '), right, "\n");
  }
  return out;
}

}  // namespace alignd
