// Fuzz target: the YAML config loader (config::load_config). The input is
// the text of a config file. Whatever it holds, the loader either returns a
// config that passes the invariants below or throws config::ConfigError;
// any other exception, a crash, a sanitizer report or a leak is a bug.
//
// load_config only reads files, so each input is written to one file in a
// private scratch folder (relative TLS and store paths resolve there).
// Worker names would be resolved with getaddrinfo: this binary is linked
// with -Wl,--wrap=getaddrinfo (fuzz/CMakeLists.txt) so that only literals
// and "localhost" resolve, without any DNS traffic, and so deterministically.
#include <netdb.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "frontdoor/config/config.hpp"
#include "scratch.hpp"

extern "C" int __real_getaddrinfo(const char* node, const char* service, const addrinfo* hints,
                                  addrinfo** res);

extern "C" int __wrap_getaddrinfo(const char* node, const char* service, const addrinfo* hints,
                                  addrinfo** res) {
  if (node != nullptr && std::string_view(node) != "localhost") {
    addrinfo numeric{};
    if (hints != nullptr) numeric = *hints;
    numeric.ai_flags |= AI_NUMERICHOST;  // a literal still resolves, a name fails at once
    return __real_getaddrinfo(node, service, &numeric, res);
  }
  return __real_getaddrinfo(node, service, hints, res);
}

namespace {


void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_config_loader: invariant broken: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const frontdoor::fuzz::ScratchFolder folder("config");
  static const std::string file = folder.path() + "/frontdoor.yaml";
  frontdoor::fuzz::write_file(file, std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    const auto cfg = frontdoor::config::load_config(file);
    check(cfg != nullptr, "load_config returned nullptr");
    check(!cfg->listeners.empty(), "a config without listeners");
    check(cfg->threads != 0, "threads not resolved");
    check(!cfg->keys.store.empty() && cfg->keys.store.front() == '/',
          "keys.store is not an absolute path");
    for (const auto& ep : cfg->endpoints) {
      check(!ep.id.empty(), "an endpoint without an id");
      check(cfg->find_endpoint(ep.id) != nullptr, "find_endpoint misses an endpoint");
    }
  } catch (const frontdoor::config::ConfigError& e) {
    check(std::string_view(e.what()).find(file) != std::string_view::npos,
          "a ConfigError that does not name the file");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_config_loader: not a ConfigError: %s\n", e.what());
    std::abort();
  }
  return 0;
}
