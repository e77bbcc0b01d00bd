#pragma once
// `frontdoor keys ...` (SPEC §1). argv[0] is "keys". Returns the exit code:
// 0 ok, 1 invalid input (message on stderr), 2 usage error.
namespace frontdoor::server {
int run_keys_cli(int argc, char** argv);
}
