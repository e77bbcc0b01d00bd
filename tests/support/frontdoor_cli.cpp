#include "support/frontdoor_cli.hpp"

#include <sstream>

#include "support/child_process.hpp"

namespace frontdoor::test {

CliResult run_frontdoor(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  CliResult r;
  ChildProcess child;
  std::vector<std::string> argv{FRONTDOOR_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  if (!child.spawn(argv)) {
    r.err = child.error();
    return r;
  }
  r.exit_status = child.wait_exit(timeout);
  if (!r.exit_status) child.stop(std::chrono::milliseconds(100));
  // The output is complete once the pipes close, shortly after the exit.
  child.wait_output([](const std::string&, const std::string&) { return false; },
                    std::chrono::milliseconds(2000));
  r.out = child.stdout_text();
  r.err = child.stderr_text();
  return r;
}

std::string cli_create_key(const std::string& store, const std::string& name,
                           const std::vector<std::string>& endpoints,
                           const std::string& management, std::string* why) {
  std::vector<std::string> args{"keys", "create", "--store", store, "--name", name};
  for (const auto& e : endpoints) {
    args.push_back("--endpoint");
    args.push_back(e);
  }
  if (!management.empty()) {
    args.push_back("--management");
    args.push_back(management);
  }
  auto r = run_frontdoor(args);
  std::string token = r.out;
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  if (!r.ok() || token.rfind("rpa_", 0) != 0 || token.find('\n') != std::string::npos) {
    if (why) {
      *why = "exit " + (r.exit_status ? std::to_string(*r.exit_status) : std::string("timeout")) +
             ", stdout: " + r.out + ", stderr: " + r.err;
    }
    return {};
  }
  return token;
}

std::vector<std::vector<std::string>> cli_list_keys(const std::string& store, std::string* why) {
  auto r = run_frontdoor({"keys", "list", "--store", store});
  if (!r.ok()) {
    if (why) *why = "exit status not 0; stderr: " + r.err;
    return {};
  }
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::vector<std::string> row;
    for (std::string w; words >> w;) row.push_back(w);
    if (!row.empty()) rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace frontdoor::test
