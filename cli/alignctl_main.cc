// alignctl: the client: job commands against the coordinator, and data preparation (see cli/alignctl.cc).
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  return alignd::cli::RunAlignctl(alignd::cli::Args(argv + 1, argv + argc), std::cout, std::cerr);
}
