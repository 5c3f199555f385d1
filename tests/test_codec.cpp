// Specification tests for executor_exporter/process/codec.hpp.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "executor_exporter/process/codec.hpp"

namespace ee = executor_exporter;
using ee::CodecError;
using ee::Decoder;
using ee::Encoder;

namespace codec_test {

enum class Color : std::uint8_t { kRed = 1, kGreen = 2, kBlue = 3 };
enum Legacy { kLegacyA = -5, kLegacyB = 70000 };

struct Pod {
  std::int32_t a;
  double b;
  char tag[4];
  bool operator==(const Pod& o) const {
    return a == o.a && b == o.b && std::string_view(tag, 4) == std::string_view(o.tag, 4);
  }
};

// A user type with non-trivial members: only codec_traits makes it Encodable.
struct Person {
  std::string name;
  std::uint32_t age = 0;
  std::vector<std::string> tags;
  bool operator==(const Person&) const = default;
};

// Trivially copyable, but its codec_traits must win over the byte copy.
struct Celsius {
  double degrees;
};

// Recursive user type for depth tests.
struct Tree {
  std::vector<Tree> children;
  bool operator==(const Tree&) const = default;
};

// A user type whose codec writes nothing: illegal inside containers.
struct Nothing {
  bool operator==(const Nothing&) const = default;
};

// Constructor may throw and move is not noexcept: lets a test produce a
// valueless_by_exception variant.
struct Fragile {
  explicit Fragile(bool boom) {
    if (boom) throw std::runtime_error("boom");
  }
  Fragile(Fragile&&) noexcept(false) {}
  Fragile& operator=(Fragile&&) noexcept(false) { return *this; }
};

struct NotEncodable {
  std::string s;
};

// Counts allocations made through it, to prove that rejected input allocates
// nothing and that reservations are bounded.
struct AllocStats {
  static inline std::size_t calls = 0;
  static inline std::size_t bytes = 0;
  static inline std::size_t largest = 0;
  static void reset() { calls = bytes = largest = 0; }
};
template <class T>
struct CountingAllocator {
  using value_type = T;
  CountingAllocator() = default;
  template <class U>
  CountingAllocator(const CountingAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    ++AllocStats::calls;
    AllocStats::bytes += n * sizeof(T);
    AllocStats::largest = std::max(AllocStats::largest, n * sizeof(T));
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  template <class U>
  bool operator==(const CountingAllocator<U>&) const noexcept {
    return true;
  }
};

template <class T>
T round_trip(const T& value) {
  return ee::decode_message<T>(ee::encode_to_string(value));
}

std::string u64le(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
  return out;
}

}  // namespace codec_test

template <>
struct executor_exporter::codec_traits<codec_test::Person> {
  static void encode(Encoder& e, const codec_test::Person& p) {
    executor_exporter::encode(e, p.name);
    executor_exporter::encode(e, p.age);
    executor_exporter::encode(e, p.tags);
  }
  static codec_test::Person decode(Decoder& d) {
    codec_test::Person p;
    p.name = executor_exporter::decode<std::string>(d);
    p.age = executor_exporter::decode<std::uint32_t>(d);
    p.tags = executor_exporter::decode<std::vector<std::string>>(d);
    return p;
  }
};

template <>
struct executor_exporter::codec_traits<codec_test::Celsius> {
  // Encoded as a float in tenths, so it is observably not a byte copy.
  static void encode(Encoder& e, const codec_test::Celsius& c) {
    executor_exporter::encode(e, static_cast<std::int32_t>(std::lround(c.degrees * 10)));
  }
  static codec_test::Celsius decode(Decoder& d) {
    return {executor_exporter::decode<std::int32_t>(d) / 10.0};
  }
};

template <>
struct executor_exporter::codec_traits<codec_test::Tree> {
  static void encode(Encoder& e, const codec_test::Tree& t) {
    executor_exporter::encode(e, t.children);
  }
  static codec_test::Tree decode(Decoder& d) {
    return {executor_exporter::decode<std::vector<codec_test::Tree>>(d)};
  }
};

template <>
struct executor_exporter::codec_traits<codec_test::Nothing> {
  static void encode(Encoder&, const codec_test::Nothing&) {}
  static codec_test::Nothing decode(Decoder&) { return {}; }
};

template <>
struct executor_exporter::codec_traits<codec_test::Fragile> {
  static void encode(Encoder& e, const codec_test::Fragile&) { executor_exporter::encode(e, 0); }
  static codec_test::Fragile decode(Decoder& d) {
    return codec_test::Fragile(executor_exporter::decode<int>(d) != 0);
  }
};

using namespace codec_test;

// ---------------------------------------------------------------------------
// Encodable

TEST_CASE("Encodable is true exactly for the supported types", "[codec]") {
  STATIC_REQUIRE(ee::Encodable<bool>);
  STATIC_REQUIRE(ee::Encodable<char>);
  STATIC_REQUIRE(ee::Encodable<std::uint64_t>);
  STATIC_REQUIRE(ee::Encodable<long double>);
  STATIC_REQUIRE(ee::Encodable<Color>);
  STATIC_REQUIRE(ee::Encodable<std::byte>);
  STATIC_REQUIRE(ee::Encodable<std::string>);
  STATIC_REQUIRE(ee::Encodable<std::monostate>);
  STATIC_REQUIRE(ee::Encodable<std::tuple<>>);
  STATIC_REQUIRE(ee::Encodable<std::vector<std::map<std::string, std::optional<double>>>>);
  STATIC_REQUIRE(ee::Encodable<std::array<Person, 3>>);
  STATIC_REQUIRE(ee::Encodable<std::variant<std::monostate, int, std::string>>);
  STATIC_REQUIRE(ee::Encodable<std::unordered_map<int, std::vector<bool>>>);
  STATIC_REQUIRE(ee::Encodable<Pod>);
  STATIC_REQUIRE(ee::Encodable<Person>);
  STATIC_REQUIRE(ee::Encodable<Tree>);
  STATIC_REQUIRE(ee::Encodable<std::optional<std::monostate>>);

  // Addresses, views and non-trivial types without codec_traits.
  STATIC_REQUIRE_FALSE(ee::Encodable<int*>);
  STATIC_REQUIRE_FALSE(ee::Encodable<const char*>);
  STATIC_REQUIRE_FALSE(ee::Encodable<void (*)()>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::nullptr_t>);
  STATIC_REQUIRE_FALSE(ee::Encodable<int Pod::*>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::string_view>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::span<const int>>);
  STATIC_REQUIRE_FALSE(ee::Encodable<int[4]>);
  STATIC_REQUIRE_FALSE(ee::Encodable<NotEncodable>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::unique_ptr<int>>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::wstring>);
  // Qualified and reference types: strip them before asking.
  STATIC_REQUIRE_FALSE(ee::Encodable<const int>);
  STATIC_REQUIRE_FALSE(ee::Encodable<int&>);
  STATIC_REQUIRE_FALSE(ee::Encodable<void>);
  // Unsupported types nested anywhere poison the whole type.
  STATIC_REQUIRE_FALSE(ee::Encodable<std::vector<int*>>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::tuple<int, std::string_view>>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::map<std::string, NotEncodable>>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::optional<int*>>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::pair<int, int&>>);
  // Container elements that can encode to zero bytes would defeat the
  // length-versus-remaining-input check.
  STATIC_REQUIRE_FALSE(ee::Encodable<std::vector<std::monostate>>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::vector<std::tuple<>>>);
  STATIC_REQUIRE_FALSE(ee::Encodable<std::map<std::monostate, std::monostate>>);
}

// ---------------------------------------------------------------------------
// Scalars

TEMPLATE_TEST_CASE("every arithmetic type round-trips its extreme values", "[codec]", char,
                   signed char, unsigned char, wchar_t, char8_t, char16_t, char32_t, short,
                   unsigned short, int, unsigned, long, unsigned long, long long,
                   unsigned long long, float, double, long double) {
  using L = std::numeric_limits<TestType>;
  for (TestType v : {L::min(), L::max(), L::lowest(), TestType{}, static_cast<TestType>(1)}) {
    CHECK(round_trip(v) == v);
    CHECK(ee::encode_to_string(v).size() == sizeof(TestType));
  }
}

TEST_CASE("integers are fixed-width little-endian two's complement", "[codec]") {
  CHECK(ee::encode_to_string(std::uint32_t{0x01020304}) == std::string("\x04\x03\x02\x01", 4));
  CHECK(ee::encode_to_string(std::int16_t{-2}) == std::string("\xfe\xff", 2));
  CHECK(ee::encode_to_string(std::uint64_t{1}) == std::string("\x01\0\0\0\0\0\0\0", 8));
}

TEST_CASE("floating point round-trips bit-exactly, including NaN payloads and signed zero",
          "[codec]") {
  const double nan_payload = std::bit_cast<double>(std::uint64_t{0x7ff8000000000123});
  for (double v : {0.0, -0.0, 1.5, -1e308, std::numeric_limits<double>::infinity(),
                   -std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::denorm_min(), nan_payload}) {
    CHECK(std::bit_cast<std::uint64_t>(round_trip(v)) == std::bit_cast<std::uint64_t>(v));
  }
  const float f = std::bit_cast<float>(std::uint32_t{0x7fc00042});
  CHECK(std::bit_cast<std::uint32_t>(round_trip(f)) == 0x7fc00042u);
  CHECK(ee::encode_to_string(1.0f) == std::string("\x00\x00\x80\x3f", 4));
}

TEST_CASE("bool is one byte and any value other than 0 or 1 is rejected", "[codec]") {
  CHECK(ee::encode_to_string(true) == std::string("\x01", 1));
  CHECK(ee::encode_to_string(false) == std::string("\x00", 1));
  CHECK(round_trip(true));
  CHECK_FALSE(round_trip(false));
  CHECK_THROWS_WITH(ee::decode_message<bool>(std::string("\x02", 1)),
                    Catch::Contains("invalid bool value 2"));
  CHECK_THROWS_AS(ee::decode_message<std::vector<bool>>(u64le(2) + std::string("\x01\xff", 2)),
                  CodecError);
}

TEST_CASE("enums round-trip through their underlying type", "[codec]") {
  CHECK(round_trip(Color::kBlue) == Color::kBlue);
  CHECK(ee::encode_to_string(Color::kGreen) == std::string("\x02", 1));
  CHECK(round_trip(kLegacyA) == kLegacyA);
  CHECK(round_trip(kLegacyB) == kLegacyB);
  CHECK(round_trip(std::byte{0xAB}) == std::byte{0xAB});
}

TEST_CASE("strings round-trip, including empty strings, NUL bytes and non-ASCII bytes", "[codec]") {
  for (const std::string& s : {std::string(), std::string("hello"), std::string("a\0b\0", 4),
                               std::string(1000, '\xff'), std::string("\xc3\xa9t\xc3\xa9")}) {
    CHECK(round_trip(s) == s);
  }
  CHECK(ee::encode_to_string(std::string("ab")) == u64le(2) + "ab");
}

TEST_CASE("std::monostate encodes to nothing and round-trips", "[codec]") {
  CHECK(ee::encode_to_string(std::monostate{}).empty());
  CHECK(round_trip(std::monostate{}) == std::monostate{});
}

// ---------------------------------------------------------------------------
// Composites

TEST_CASE("vectors, arrays, pairs, tuples, optionals, variants and maps round-trip", "[codec]") {
  CHECK(round_trip(std::vector<int>{}) == std::vector<int>{});
  CHECK(round_trip(std::vector<std::int64_t>{1, -2, 3}) == std::vector<std::int64_t>{1, -2, 3});
  CHECK(round_trip(std::vector<std::string>{"a", "", "ccc"}) ==
        std::vector<std::string>{"a", "", "ccc"});
  CHECK(round_trip(std::vector<bool>{true, false, true}) == std::vector<bool>{true, false, true});
  CHECK(round_trip(std::vector<double>{0.5, -1.0}) == std::vector<double>{0.5, -1.0});
  CHECK(round_trip(std::vector<Color>{Color::kRed, Color::kBlue}) ==
        std::vector<Color>{Color::kRed, Color::kBlue});
  CHECK(round_trip(std::array<int, 3>{1, 2, 3}) == std::array<int, 3>{1, 2, 3});
  CHECK(round_trip(std::array<std::string, 2>{"x", "y"}) == std::array<std::string, 2>{"x", "y"});
  CHECK(round_trip(std::array<int, 0>{}) == std::array<int, 0>{});
  CHECK(round_trip(std::pair<int, std::string>{4, "four"}) ==
        std::pair<int, std::string>{4, "four"});
  CHECK(round_trip(std::tuple<>{}) == std::tuple<>{});
  CHECK(round_trip(std::tuple<int, std::string, bool>{1, "x", true}) ==
        std::tuple<int, std::string, bool>{1, "x", true});
  CHECK(round_trip(std::tuple<std::tuple<int>>{std::tuple<int>{7}}) ==
        std::tuple<std::tuple<int>>{std::tuple<int>{7}});
  CHECK(round_trip(std::optional<std::string>{}) == std::nullopt);
  CHECK(round_trip(std::optional<std::string>{"v"}) == std::optional<std::string>{"v"});
  using V = std::variant<std::monostate, int, std::string, std::vector<int>>;
  for (const V& v : {V{}, V{42}, V{std::string("s")}, V{std::vector<int>{1, 2}}}) {
    CHECK(round_trip(v) == v);
  }
  // Same alternative type twice: the index, not the type, is what is sent.
  using Twice = std::variant<int, int>;
  CHECK(round_trip(Twice{std::in_place_index<1>, 5}).index() == 1);
  const std::map<std::string, std::int64_t> m{{"a", 1}, {"b", -2}, {"", 0}};
  CHECK(round_trip(m) == m);
  const std::unordered_map<int, std::string> um{{1, "one"}, {2, "two"}, {-3, ""}};
  CHECK(round_trip(um) == um);
}

TEST_CASE("pairs and tuples are the concatenation of their members, with no header", "[codec]") {
  CHECK(ee::encode_to_string(std::pair<std::uint8_t, std::uint8_t>{1, 2}) == "\x01\x02");
  CHECK(ee::encode_to_string(std::tuple<std::uint8_t, bool>{7, true}) == "\x07\x01");
  CHECK(ee::encode_to_string(std::uint8_t{7}, true) ==
        ee::encode_to_string(std::tuple<std::uint8_t, bool>{7, true}));
}

TEST_CASE("deeply nested standard containers round-trip", "[codec]") {
  using Deep =
      std::map<std::string, std::vector<std::optional<std::pair<
                                std::array<std::int16_t, 2>, std::variant<double, std::string>>>>>;
  Deep deep;
  deep["first"] = {std::nullopt, std::pair{std::array<std::int16_t, 2>{1, -1},
                                           std::variant<double, std::string>{2.5}}};
  deep["second"] = {};
  deep["third"] = {
      std::pair{std::array<std::int16_t, 2>{3, 4}, std::variant<double, std::string>{"str"}}};
  CHECK(round_trip(deep) == deep);

  std::vector<std::vector<std::vector<std::string>>> cube{{{"a"}, {}}, {}, {{"b", "c"}}};
  CHECK(round_trip(cube) == cube);
}

TEST_CASE("a user type with a codec_traits specialization round-trips", "[codec]") {
  const Person p{"Ada", 36, {"math", "engines"}};
  CHECK(round_trip(p) == p);
  const std::vector<Person> people{p, Person{"", 0, {}}};
  CHECK(round_trip(people) == people);
  const std::map<std::string, Person> by_name{{"ada", p}};
  CHECK(round_trip(by_name) == by_name);
}

TEST_CASE("codec_traits takes priority over the byte copy of trivially copyable types", "[codec]") {
  STATIC_REQUIRE(std::is_trivially_copyable_v<Celsius>);
  CHECK(ee::encode_to_string(Celsius{21.5}).size() == sizeof(std::int32_t));
  CHECK(round_trip(Celsius{21.5}).degrees == 21.5);
}

TEST_CASE("trivially copyable structs are copied byte for byte", "[codec]") {
  const Pod pod{-7, 3.25, {'a', 'b', '\0', 'd'}};
  CHECK(ee::encode_to_string(pod).size() == sizeof(Pod));
  CHECK(round_trip(pod) == pod);
  CHECK(round_trip(std::vector<Pod>{pod, pod}) == std::vector<Pod>{pod, pod});
}

TEST_CASE("encode_to_string and decode_all round-trip an argument list", "[codec]") {
  const std::string args = ee::encode_to_string(1, std::string("two"), 3.0, Color::kRed);
  const auto [a, b, c, d] = ee::decode_all<int, std::string, double, Color>(args);
  CHECK(a == 1);
  CHECK(b == "two");
  CHECK(c == 3.0);
  CHECK(d == Color::kRed);

  CHECK(ee::encode_to_string().empty());
  CHECK(ee::decode_all<>(std::string_view{}) == std::tuple<>{});
  CHECK_THROWS_AS(ee::decode_all<>(std::string_view("x")), CodecError);

  const std::vector<std::byte> raw{std::byte{5}, std::byte{0}};
  CHECK(std::get<0>(ee::decode_all<std::int16_t>(std::span<const std::byte>(raw))) == 5);
}

TEST_CASE("Decoder tracks its position and Encoder exposes and releases its buffer", "[codec]") {
  Encoder e;
  ee::encode(e, std::uint16_t{0xBEEF});
  ee::encode(e, std::string("xy"));
  CHECK(e.size() == 2 + 8 + 2);
  const std::string bytes = e.take();
  CHECK(e.size() == 0);

  Decoder d(bytes);
  CHECK(d.remaining() == 12);
  CHECK(ee::decode<std::uint16_t>(d) == 0xBEEF);
  CHECK(d.position() == 2);
  CHECK_FALSE(d.at_end());
  CHECK(ee::decode<std::string>(d) == "xy");
  CHECK(d.at_end());
  CHECK_NOTHROW(d.expect_end());

  Encoder appending(std::string("hdr"));
  ee::encode(appending, std::uint8_t{1});
  CHECK(appending.buffer() == "hdr\x01");
}

// ---------------------------------------------------------------------------
// Malformed input

TEST_CASE("every truncation of a valid message fails with CodecError", "[codec]") {
  using T = std::tuple<std::string, std::vector<std::int32_t>, std::optional<Person>,
                       std::map<std::string, std::vector<bool>>, std::variant<int, std::string>,
                       Pod, double>;
  const T value{"head",
                {1, 2, 3},
                Person{"p", 1, {"t"}},
                {{"k", {true, false}}},
                std::string("alt"),
                Pod{1, 2.0, {'w', 'x', 'y', 'z'}},
                9.5};
  const std::string full = ee::encode_to_string(value);
  REQUIRE(ee::decode_message<T>(full) == value);
  for (std::size_t n = 0; n < full.size(); ++n) {
    INFO("prefix length " << n);
    CHECK_THROWS_AS(ee::decode_message<T>(std::string_view(full).substr(0, n)), CodecError);
  }
}

TEST_CASE("a truncated vector fails with CodecError and allocates nothing", "[codec]") {
  using Vec = std::vector<std::uint64_t, CountingAllocator<std::uint64_t>>;
  // Claims 4 elements (32 bytes) but carries 3.
  const std::string input = u64le(4) + u64le(1) + u64le(2) + u64le(3);
  AllocStats::reset();
  CHECK_THROWS_WITH(ee::decode_message<Vec>(input),
                    Catch::Contains("std::vector length 4 exceeds the remaining input"));
  CHECK(AllocStats::calls == 0);

  using StrVec = std::vector<std::string, CountingAllocator<std::string>>;
  AllocStats::reset();
  CHECK_THROWS_AS(ee::decode_message<StrVec>(u64le(3) + u64le(0) + u64le(0)), CodecError);
  CHECK(AllocStats::calls == 0);
}

TEST_CASE("a huge length is rejected before anything is allocated", "[codec]") {
  const std::uint64_t huge = std::uint64_t{1} << 62;
  const std::string tail(64, '\0');
  AllocStats::reset();
  using Vec = std::vector<std::string, CountingAllocator<std::string>>;
  CHECK_THROWS_AS(ee::decode_message<Vec>(u64le(huge) + tail), CodecError);
  CHECK_THROWS_AS(ee::decode_message<Vec>(u64le(~std::uint64_t{0}) + tail), CodecError);
  CHECK(AllocStats::calls == 0);
  CHECK_THROWS_WITH(ee::decode_message<std::string>(u64le(huge) + tail),
                    Catch::Contains("std::string length 4611686018427387904 exceeds"));
  CHECK_THROWS_AS((ee::decode_message<std::map<int, int>>(u64le(huge) + tail)), CodecError);
  CHECK_THROWS_AS((ee::decode_message<std::unordered_map<int, int>>(u64le(huge) + tail)),
                  CodecError);
  // Exactly enough bytes for the claimed count is fine; one element more is not.
  CHECK(ee::decode_message<std::vector<std::uint32_t>>(u64le(2) + std::string(8, '\0')).size() ==
        2);
  CHECK_THROWS_AS(ee::decode_message<std::vector<std::uint32_t>>(u64le(3) + std::string(8, '\0')),
                  CodecError);
}

TEST_CASE("up-front reservation never exceeds the bytes left in the input", "[codec]") {
  // An empty optional<array<char, 1024>> is 1 byte on the wire but 1025 bytes
  // in memory, so trusting the count for reserve() would amplify the input.
  using Big = std::optional<std::array<char, 1024>>;
  using Vec = std::vector<Big, CountingAllocator<Big>>;
  const std::size_t claimed = 4096;
  std::string input = u64le(claimed) + std::string(claimed, '\x07');  // invalid tags
  AllocStats::reset();
  CHECK_THROWS_WITH(ee::decode_message<Vec>(input), Catch::Contains("invalid std::optional tag 7"));
  CHECK(AllocStats::largest <= claimed + sizeof(Big));

  // Valid input of the same shape still decodes completely.
  input = u64le(claimed) + std::string(claimed, '\0');
  CHECK(ee::decode_message<Vec>(input).size() == claimed);
}

TEST_CASE("invalid optional tags, variant indices and duplicate or unsorted map keys are rejected",
          "[codec]") {
  CHECK_THROWS_WITH(ee::decode_message<std::optional<int>>(std::string("\x02", 1)),
                    Catch::Contains("invalid std::optional tag 2"));
  using V = std::variant<int, std::string>;
  CHECK_THROWS_WITH(ee::decode_message<V>(std::string("\x02\0\0\0", 4)),
                    Catch::Contains("invalid std::variant index 2"));

  const std::string dup = ee::encode_to_string(std::uint64_t{2}, 1, 10, 1, 20);
  CHECK_THROWS_WITH((ee::decode_message<std::map<int, int>>(dup)),
                    Catch::Contains("not strictly increasing"));
  CHECK_THROWS_WITH((ee::decode_message<std::unordered_map<int, int>>(dup)),
                    Catch::Contains("duplicate key"));
  const std::string unsorted = ee::encode_to_string(std::uint64_t{2}, 2, 10, 1, 20);
  CHECK_THROWS_AS((ee::decode_message<std::map<int, int>>(unsorted)), CodecError);
  CHECK((ee::decode_message<std::unordered_map<int, int>>(unsorted)).size() == 2);
}

TEST_CASE("trailing bytes after a complete message are rejected", "[codec]") {
  const std::string msg = ee::encode_to_string(std::int32_t{5}) + "junk";
  CHECK_THROWS_WITH(ee::decode_message<std::int32_t>(msg),
                    Catch::Contains("4 trailing byte(s)") && Catch::Contains("offset 4"));
  CHECK_THROWS_AS((ee::decode_all<std::int32_t, std::uint8_t>(msg)), CodecError);
  Decoder d(msg);
  CHECK(ee::decode<std::int32_t>(d) == 5);  // plain decode reads a prefix
  CHECK_THROWS_AS(d.expect_end(), CodecError);
}

TEST_CASE("error messages say what was being decoded and where", "[codec]") {
  const std::string input = ee::encode_to_string(std::uint8_t{1}) + u64le(100) + "abc";
  Decoder d(input);
  ee::decode<std::uint8_t>(d);
  try {
    ee::decode<std::string>(d);
    FAIL("expected CodecError");
  } catch (const CodecError& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Catch::StartsWith("codec: std::string length 100 exceeds the remaining input "
                                       "(3 byte(s) after the length"));
    CHECK_THAT(what, Catch::Contains("at byte offset 1 of 12"));
  }
  CHECK_THROWS_WITH(ee::decode_message<std::uint64_t>(std::string("\x01\x02", 2)),
                    Catch::Contains("truncated input: integer needs 8 bytes but only 2 remain"));
}

// ---------------------------------------------------------------------------
// Depth

namespace {
// Input for a Tree nested `depth` levels: each level is a vector of one child.
std::string tree_bomb(std::size_t depth) {
  std::string out;
  for (std::size_t i = 0; i < depth; ++i) out += u64le(1);
  out += u64le(0);
  return out;
}
}  // namespace

TEST_CASE("a depth bomb fails with CodecError instead of exhausting the stack", "[codec]") {
  // 200000 levels would overflow the stack if recursion were unbounded.
  CHECK_THROWS_WITH(ee::decode_message<Tree>(tree_bomb(200000)),
                    Catch::Contains("nested deeper than the limit of 64"));
  // Each Tree level costs two (codec_traits + vector): 31 levels fit in 64.
  CHECK_NOTHROW(ee::decode_message<Tree>(tree_bomb(31)));
  CHECK_THROWS_AS(ee::decode_message<Tree>(tree_bomb(32)), CodecError);
}

TEST_CASE("the depth limit is configurable per Decoder and enforced when encoding", "[codec]") {
  const std::string input = tree_bomb(100);
  Decoder deep(input, 1000);
  CHECK_NOTHROW(ee::decode<Tree>(deep));
  CHECK(deep.at_end());

  Tree t;
  Tree* cur = &t;
  for (int i = 0; i < 40; ++i) {
    cur->children.emplace_back();
    cur = &cur->children.back();
  }
  Encoder e;
  CHECK_THROWS_WITH(ee::encode(e, t), Catch::Contains("nested deeper than 64"));
  Encoder roomy(std::string(), 1000);
  CHECK_NOTHROW(ee::encode(roomy, t));
  Decoder back(roomy.buffer(), 1000);
  CHECK(ee::decode<Tree>(back) == t);
}

TEST_CASE("a codec_traits that writes nothing inside a container is reported when encoding",
          "[codec]") {
  CHECK(round_trip(Nothing{}) == Nothing{});  // fine on its own
  Encoder e;
  CHECK_THROWS_WITH(ee::encode(e, std::vector<Nothing>{Nothing{}}),
                    Catch::Contains("must write at least one byte"));
  CHECK_THROWS_AS(ee::encode(e, std::map<int, Nothing>{{1, Nothing{}}}), CodecError);
}

TEST_CASE("a valueless variant cannot be encoded", "[codec]") {
  std::variant<int, Fragile> v;
  // Fragile's move may throw, so emplace constructs in place after destroying
  // the int: a throwing constructor leaves the variant valueless.
  CHECK_THROWS(v.emplace<Fragile>(true));
  REQUIRE(v.valueless_by_exception());
  Encoder e;
  CHECK_THROWS_WITH(ee::encode(e, v), Catch::Contains("valueless"));
}

TEST_CASE("a codec error is an ExecutorError, as every error of the library", "[codec]") {
  STATIC_REQUIRE(
      std::is_base_of_v<executor_exporter::ExecutorError, executor_exporter::CodecError>);
  executor_exporter::Decoder d(std::string_view("\x01", 1));
  CHECK_THROWS_AS(d.read_uint<std::uint64_t>(), executor_exporter::ExecutorError);
}
