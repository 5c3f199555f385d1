// Catch2 main for executor_exporter_tests; the test cases live in tests/test_*.cpp.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#if defined(__SANITIZE_THREAD__)
// libstdc++.so is not built with ThreadSanitizer: the reference count of a
// std::exception_ptr is decremented inside it, so TSan sees no ordering between the
// thread that last used an exception and the thread whose release frees it. The
// exception's destructor then runs either inside libstdc++ (an intercepted operator
// delete called from the library) or through exception_ptr's destroy thunk, a template
// instantiated in our binary. Only those two paths are suppressed: any other race in
// our code is still reported.
extern "C" const char* __tsan_default_suppressions() {
  return "called_from_lib:libstdc++.so.6\n"
         "race:std::__exception_ptr::exception_ptr::_M_release\n"
         "race:std::__exception_ptr::__dest_thunk\n";
}
#endif
