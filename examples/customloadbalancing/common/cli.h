// Command lines of the example programs and of lbkit's tools, read with
// CLI11 (Debian's libcli11-dev, header-only). CLI11 rather than absl flags
// (which gRPC already brings): absl's flag names cannot hold a '-' (these
// programs' flags are --choose-second, --no-progress, ...), its --help exits
// with status 1 in Debian's absl 20220623, and one lbkit-bench binary has
// scenarios whose flags share names with other defaults and types, which
// absl's single process-wide flag namespace cannot hold.
#ifndef LBKIT_EXAMPLES_CLI_H_
#define LBKIT_EXAMPLES_CLI_H_

#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

namespace lbkit_example {

// --name N: a number in [min, max] (for a vector, each number; add
// ->delimiter(',') for a comma list); `*value` holds the default, which
// --help shows.
template <typename Value, typename T>
CLI::Option* AddNumber(CLI::App& app, const std::string& name, Value* value, T min, T max,
                       const std::string& help) {
  return app.add_option(name, *value, help)->check(CLI::Range(min, max))->capture_default_str();
}

// Refuses an empty value (an empty file name, path, ...).
inline CLI::Validator NonEmpty(const std::string& what) {
  return CLI::Validator(
      [what](std::string& value) { return value.empty() ? "empty " + what : std::string(); }, "");
}

// Parses argv[1..argc) into `app`'s options and runs their callbacks.
// Returns -1 when the program should go on; otherwise the status to exit
// with: 0 after printing the usage for --help (or -h), 2 after printing
// "<app name>: <what is wrong>" and a pointer to --help on stderr.
inline int ParseCommandLine(CLI::App& app, int argc, const char* const* argv) {
  try {
    app.parse(argc, argv);
    return -1;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      std::cout << app.help();
      return 0;
    }
    std::cerr << app.get_name() << ": " << e.what() << "\n(see " << app.get_name() << " --help)\n";
    return 2;
  }
}

}  // namespace lbkit_example

#endif  // LBKIT_EXAMPLES_CLI_H_
