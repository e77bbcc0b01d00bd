#pragma once
// The running process: proxy threads with their listeners, the admin
// listener, signals and shutdown (SPEC §1 signals, §6 shutdown).
#include <memory>

#include "frontdoor/auth/store.hpp"
#include "frontdoor/config/config.hpp"

namespace frontdoor::server {

// Binds every listener, serves until SIGTERM/SIGINT, drains, and returns
// the process exit code. Throws std::runtime_error when a listener cannot
// be bound.
int run_server(std::shared_ptr<const config::Config> config, std::unique_ptr<auth::KeyStore> store);

}  // namespace frontdoor::server
