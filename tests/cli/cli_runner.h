// Runs a CLI subcommand in-process and captures its exit code and output.
#ifndef ALIGND_TESTS_CLI_CLI_RUNNER_H_
#define ALIGND_TESTS_CLI_CLI_RUNNER_H_

#include <sstream>
#include <string>

#include "cli/commands.h"

namespace alignd::cli {

struct Outcome {
  int code;
  std::string out, err;
};

inline Outcome Call(int (*command)(const Args&, std::ostream&, std::ostream&), const Args& args) {
  std::ostringstream out, err;
  int code = command(args, out, err);
  return {code, out.str(), err.str()};
}

}  // namespace alignd::cli

#endif  // ALIGND_TESTS_CLI_CLI_RUNNER_H_
