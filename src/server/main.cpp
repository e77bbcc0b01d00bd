// frontdoor's command line (SPEC §1).
#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>

#include "frontdoor/auth/store.hpp"
#include "frontdoor/config/config.hpp"
#include "frontdoor/core/log.hpp"
#include "frontdoor/server/keys_cli.hpp"
#include "frontdoor/server/server.hpp"

namespace {

using namespace frontdoor;

constexpr std::string_view kUsage =
    "usage: frontdoor [--config PATH] [--check]\n"
    "       frontdoor keys create|list|enable|disable|delete|hash|import|export|migrate ...\n"
    "       frontdoor --version\n";

int usage_error(std::string_view why) {
  std::cerr << "frontdoor: " << why << "\n" << kUsage;
  return 2;
}

// Opens and loads the key store named by the configuration, as the server
// would. Throws with a message that names the file (and line) on a problem.
std::unique_ptr<auth::KeyStore> check_keys(const config::Config& c) {
  auto store = auth::KeyStore::open(c.keys.store);
  auto keys = store->load();
  try {
    auth::KeySet set(std::move(keys));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(auth::shown_store(c.keys.store) + ": " + e.what());
  }
  return store;
}

// Each proxied request holds two descriptors (client and worker).
void raise_fd_limit(const config::Config& c, bool check_only) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (!check_only && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  auto needed = 2 * c.limits.max_connections + 64;
  auto have = check_only ? rl.rlim_max : rl.rlim_cur;
  if (have != RLIM_INFINITY && have < needed) {
    std::string msg = "open-file limit " + std::to_string(have) + " is below " + std::to_string(needed) +
                      " (2 per connection for limits.max_connections " +
                      std::to_string(c.limits.max_connections) + ")";
    if (check_only)
      std::cerr << "warning: " << msg << "\n";
    else
      core::log::warn(msg);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && std::string_view(argv[1]) == "keys") return server::run_keys_cli(argc - 1, argv + 1);

  std::string config_path = "config/frontdoor.yaml";
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--config") {
      if (++i >= argc) return usage_error("--config needs a path");
      config_path = argv[i];
    } else if (a.starts_with("--config=")) {
      config_path = std::string(a.substr(9));
    } else if (a == "--check") {
      check = true;
    } else if (a == "--version") {
      std::cout << "frontdoor " << FRONTDOOR_VERSION << "\n";
      return 0;
    } else if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    } else {
      return usage_error("unknown argument '" + std::string(a) + "'");
    }
  }

  std::shared_ptr<const config::Config> config;
  std::unique_ptr<auth::KeyStore> store;
  try {
    config = config::load_config(config_path);
    // --check loads the store in full; the server's registry loads it once
    // itself (a million-key store should not be read twice at start).
    store = check ? check_keys(*config) : auth::KeyStore::open(config->keys.store);
  } catch (const std::exception& e) {
    if (check) {
      std::cerr << e.what() << "\n";
    } else {
      core::log::error("invalid configuration", {{"error", e.what()}});
    }
    return 1;
  }
  if (check) {
    for (const std::string& w : config->warnings) std::cerr << "warning: " << w << "\n";
    raise_fd_limit(*config, true);
    std::cout << "ok\n";
    return 0;
  }

  core::log::set_level(config::to_log_level(config->log.level));
  raise_fd_limit(*config, false);
  core::log::info("starting", {{"version", FRONTDOOR_VERSION}, {"config", config->path}, {"keys", auth::shown_store(config->keys.store)}});
  for (const std::string& w : config->warnings) core::log::warn("configuration", {{"warning", w}});
  try {
    return server::run_server(std::move(config), std::move(store));
  } catch (const std::exception& e) {
    core::log::error("cannot start", {{"error", e.what()}});
    return 1;
  }
}
