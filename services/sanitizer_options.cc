// Compiled into every executable of ours (pushd, pushctl, pushbench, the test binaries) only in
// the sanitizer build (PUSHD_SANITIZE=ON; pushd_sanitizer_defaults() in the top CMakeLists.txt).
// The runtimes read these defaults first and the ASAN_OPTIONS / UBSAN_OPTIONS / LSAN_OPTIONS
// environment after, which can override them. A report ends the process with
// PUSHD_SANITIZER_EXIT_CODE, which tests/testing/pushd_process.cc turns into a test failure (the
// report itself is on pushd's stderr, next to the test's output); a test binary's own report fails
// its test through the exit status.

#define PUSHD_STR2(x) #x
#define PUSHD_STR(x) PUSHD_STR2(x)

extern "C" const char* __asan_default_options() {
  return "exitcode=" PUSHD_STR(PUSHD_SANITIZER_EXIT_CODE) ":detect_leaks=1:strict_string_checks=1"
         ":detect_stack_use_after_return=1:check_initialization_order=1";
}

extern "C" const char* __ubsan_default_options() {
  return "exitcode=" PUSHD_STR(PUSHD_SANITIZER_EXIT_CODE) ":halt_on_error=1:print_stacktrace=1";
}

// Leaks inside Debian's libraries, not ours, that LeakSanitizer would otherwise report at exit.
// Matched by module name: a leak is suppressed only when its allocation stack passes through
// that library.
extern "C" const char* __lsan_default_suppressions() {
  // c-ares 1.18.1 (Debian 12's libc-ares2) leaks the copy of the name of each host it answers
  // from /etc/hosts or its built-in localhost (ares_strdup, 10 bytes for "localhost"; upstream
  // c-ares/c-ares#439). gRPC resolves "localhost:PORT" targets with it: the TLS tests and pushctl.
#ifdef PUSHD_SANITIZER_TEST_BINARY
  // The test binaries only: OpenSSL objects of the tests' own TLS clients (gRPC's handshaker
  // factories, released on gRPC's threads after a channel goes) that the process can exit before
  // gRPC frees, when the machine is busy. LeakSanitizer's fast unwinder stops inside libcrypto, so
  // the stacks name nothing else to match. pushd itself, where our OpenSSL code runs under the
  // integration tests, keeps the full check.
  return "leak:libcares.so\nleak:libcrypto.so\n";
#else
  return "leak:libcares.so\n";
#endif
}
