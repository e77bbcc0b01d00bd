// `frontdoor --config FILE --check` (SPEC §1): "ok" and status 0 for a
// config it would run, warnings on stderr; status 1 and every problem, named
// by file, line and field, for one it would refuse.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "../support/frontdoor_cli.hpp"
#include "../unit/temp_dir.hpp"

namespace frontdoor::test {
namespace {

using unit_test::TempDir;

std::string write_config(const TempDir& dir, const std::string& yaml) {
  const std::string path = (dir.path() / "frontdoor.yaml").string();
  std::ofstream(path) << yaml;
  std::ofstream((dir.path() / "keys.yaml").string()) << "keys: []\n";
  return path;
}

TEST(CheckTest, TwoNamesForOneWorkerAddressAreAWarningNotAnError) {
  // The container image's config names two workers that a one-host test maps
  // to one address (docker/smoke-test): it must still start.
  TempDir dir;
  const std::string path = write_config(dir, R"(listeners: [ { address: 127.0.0.1:0 } ]
keys: { store: keys.yaml }
endpoints:
  demo:
    workers: [ "http://127.0.0.1:5000", "http://localhost:5000" ]
)");
  const CliResult r = run_frontdoor({"--config", path, "--check"});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.out, "ok\n");
  EXPECT_NE(r.err.find("warning: " + path + ":5: endpoints.demo.workers[1]: resolves to 127.0.0.1:5000, as "
                       "endpoints.demo.workers[0] does"),
            std::string::npos)
      << r.err;
}

TEST(CheckTest, RefusedConfigNamesEveryProblem) {
  TempDir dir;
  const std::string path = write_config(dir, R"(listeners: [ { address: 127.0.0.1:0 } ]
keys: { store: keys.yaml }
threads: many
endpoints:
  demo:
    workers: [ "http://127.0.0.1:5000", "http://127.0.0.1:5000/" ]
)");
  const CliResult r = run_frontdoor({"--config", path, "--check"});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find(path + ":3: threads: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(path + ":6: endpoints.demo.workers[1]: duplicate worker, same as endpoints.demo.workers[0]"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace frontdoor::test
