// Catch2 main for executor_exporter_tests; the test cases live in tests/test_*.cpp.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#if defined(__SANITIZE_THREAD__)
// libstdc++.so is not built with ThreadSanitizer: the reference count of a
// std::exception_ptr is decremented inside it (exception_ptr::_M_release), and so is that
// of the message string std::logic_error and std::runtime_error hold. TSan therefore sees
// no ordering between the thread that last used an exception (get() rethrew it, what()
// was read) and the thread whose release frees it, and reports the free as a race. The
// destructor runs on one of three paths, each named by a frame that is only ever on such
// a release:
// - through exception_ptr's destroy thunk, a template instantiated in our binary
//   (std::make_exception_ptr's exceptions): __dest_thunk, called from _M_release;
// - a thrown exception of one of our types: its (instrumented) destructor, called
//   directly by _M_release;
// - a thrown std::logic_error or std::runtime_error (or a standard type derived from
//   them): their destructor inside libstdc++, which frees the message; no frame of
//   _M_release is seen then, only theirs (the instrumented caller is the code that
//   dropped the last exception_ptr, e.g. ~FutureState).
// Each of the four frames was in a report of the suite run without suppressions (the
// frees of a future's exception_ptr released on a pool thread while the test thread had
// read what()); with them, the suite reports nothing. They replace a blanket
// called_from_lib:libstdc++.so.6, which hid every access the library makes for us
// (strings, containers, streams, any interceptor it calls); any other race in our code
// is reported.
extern "C" const char* __tsan_default_suppressions() {
  return "race:std::__exception_ptr::exception_ptr::_M_release\n"
         "race:std::__exception_ptr::__dest_thunk\n"
         "race:std::logic_error::~logic_error\n"
         "race:std::runtime_error::~runtime_error\n";
}
#endif
