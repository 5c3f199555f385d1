// Catch2 main for executor_exporter_tests; the test cases live in tests/test_*.cpp.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#if defined(__SANITIZE_THREAD__)
// libstdc++.so is not built with ThreadSanitizer: the reference count of a
// std::exception_ptr is decremented inside it, so TSan sees no ordering between the
// thread that last used an exception and the thread whose release frees it (the
// exception's destructor runs in libstdc++ and calls operator delete). Reports of
// intercepted calls made from libstdc++ itself are suppressed; races in our code, and
// in templates instantiated in our code, are still reported.
extern "C" const char* __tsan_default_suppressions() {
  return "called_from_lib:libstdc++.so.6\n";
}
#endif
