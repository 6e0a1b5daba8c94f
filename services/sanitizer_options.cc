// Compiled into pushd only in the sanitizer build (PUSHD_SANITIZE=ON). The runtimes read these
// defaults first and the ASAN_OPTIONS / UBSAN_OPTIONS environment after, which can override them.
// A report ends the process with PUSHD_SANITIZER_EXIT_CODE, which tests/testing/pushd_process.cc
// turns into a test failure (the report itself is on pushd's stderr, next to the test's output).

#define PUSHD_STR2(x) #x
#define PUSHD_STR(x) PUSHD_STR2(x)

extern "C" const char* __asan_default_options() {
  return "exitcode=" PUSHD_STR(PUSHD_SANITIZER_EXIT_CODE) ":detect_leaks=1:strict_string_checks=1"
         ":detect_stack_use_after_return=1:check_initialization_order=1";
}

extern "C" const char* __ubsan_default_options() {
  return "exitcode=" PUSHD_STR(PUSHD_SANITIZER_EXIT_CODE) ":halt_on_error=1:print_stacktrace=1";
}
