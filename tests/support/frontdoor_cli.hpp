#pragma once
// Runs the frontdoor binary (FRONTDOOR_BINARY) as a command-line tool, e.g.
// `frontdoor keys create --store X.db --name n`, to completion, and returns
// what it printed and its exit status. Bounded: a run that does not finish in
// time is killed (exit_status then nullopt).
#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace frontdoor::test {

struct CliResult {
  std::optional<int> exit_status;  // 0..255, 128 + signal; nullopt: did not finish in time
  std::string out;
  std::string err;
  bool ok() const noexcept { return exit_status == 0; }
};

// `args` follow the binary name: {"keys", "list", "--store", path}.
CliResult run_frontdoor(const std::vector<std::string>& args,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

// `frontdoor keys create --store <store> --name <name> [--endpoint E]...
// [--management M]`; the printed token (trailing newline removed), or ""
// when the command failed (`why`, if given, says how).
std::string cli_create_key(const std::string& store, const std::string& name,
                           const std::vector<std::string>& endpoints,
                           const std::string& management = {}, std::string* why = nullptr);

// The rows of `frontdoor keys list --store <store>` (header included), each
// split on runs of spaces: {ID, PREFIX, NAME, ENABLED, CREATED, LAST_USED}.
// Names with spaces would split; tests use names without.
std::vector<std::vector<std::string>> cli_list_keys(const std::string& store,
                                                    std::string* why = nullptr);

}  // namespace frontdoor::test
