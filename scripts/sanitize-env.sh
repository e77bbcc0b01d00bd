# shellcheck shell=bash
# Sourced by scripts/test-sanitize and scripts/fuzz: one definition of the
# sanitizer build (so the two never reconfigure each other's build folder)
# and of the sanitizer run-time options.

# sanitize_configure DIR SANITIZERS FUZZ(ON|OFF): configures DIR with clang 14.
# -O1 -g: the usual sanitizer trade-off (readable stacks, tolerable speed);
# asserts stay on.
sanitize_configure() {
  CXX=clang++-14 cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DFRONTDOOR_SANITIZE="$2" -DFRONTDOOR_FUZZ="$3" >/dev/null
}

# A report ends the process that made it: halt_on_error and abort_on_error
# here, -fno-sanitize-recover=all at compile time. LeakSanitizer is on
# (detect_leaks=1, ASan's default on Linux x86_64) with no suppressions.
sanitize_export_options() {
  local symbolizer common
  symbolizer=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)
  common="halt_on_error=1:abort_on_error=1:print_summary=1"
  [ -z "$symbolizer" ] || common+=":external_symbolizer_path=$symbolizer"
  export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:$common"
  export LSAN_OPTIONS="report_objects=0"
  export UBSAN_OPTIONS="print_stacktrace=1:$common"
  export TSAN_OPTIONS="second_deadlock_stack=1:$common"
}
