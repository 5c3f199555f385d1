// A small binary codec for moving task arguments and results between a parent
// process and its fork()ed workers.
//
// Why a custom codec: the process pool needs to ship ordinary C++ values over a
// pipe without pulling in a serialization framework, and it must survive a
// worker that dies mid-write or writes garbage. So the format is deliberately
// simple (fixed-width little-endian scalars, uint64 length prefixes, no
// self-description) and the decoder is deliberately paranoid: every read is
// bounds-checked, every length is checked against the bytes that remain before
// anything is allocated, and nesting depth is bounded.
//
// Wire format, per type (all integers little-endian):
//   bool                       1 byte, 0 or 1 (anything else is rejected)
//   integers, char types       sizeof(T) bytes, two's complement
//   float / double             the IEEE-754 bits as uint32 / uint64 (NaN payloads kept)
//   long double                sizeof(long double) raw native bytes (same-machine only)
//   enums                      the underlying type
//   std::monostate             nothing (0 bytes)
//   std::string                uint64 byte count, then the bytes
//   std::vector<T>             uint64 element count, then each element
//   std::array<T, N>           the N elements (no count)
//   std::pair / std::tuple     the members in order (no header)
//   std::optional<T>           1 byte tag (0 = empty, 1 = engaged), then the value
//   std::variant<Ts...>        uint32 alternative index, then the alternative
//   std::map / unordered_map   uint64 entry count, then key, value, key, value...
//   codec_traits<T>            whatever the specialization writes
//   other trivially copyable   sizeof(T) raw bytes (memcpy)
//
// Encoding a sequence of values (encode_to_string(a, b, c)) is byte-for-byte
// the same as encoding std::tuple{a, b, c}.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <executor_exporter/errors.hpp>

namespace executor_exporter {

/// Thrown for any input the codec cannot decode (truncation, a length larger
/// than the remaining input, an invalid tag or bool, a duplicate map key,
/// trailing bytes, nesting deeper than the limit) and for values that cannot
/// be encoded faithfully. It is an ExecutorError (and so a std::runtime_error), so
/// `catch (const ExecutorError&)` catches every error of the library; the message
/// always says what was being decoded and at which byte offset, because these errors
/// are usually diagnosed from logs of a worker that is already gone.
class CodecError : public ExecutorError {
 public:
  using ExecutorError::ExecutorError;
};

/// The single customization point for user types. Specialize it in namespace
/// executor_exporter with two static members; the primary template is empty
/// on purpose so that Encodable<T> can detect whether a specialization exists.
/// A specialization takes priority over every built-in rule, including the
/// byte-copy rule for trivially copyable structs, so a type can opt out of
/// memcpy (for example because it holds a pointer). Each call into a
/// specialization counts as one nesting level, so recursive types are bounded
/// by the decoder's depth limit without extra work. Inside a container every
/// element must encode to at least one byte; the encoder checks this.
///
///   struct Point { std::string label; double x, y; };
///   template <>
///   struct executor_exporter::codec_traits<Point> {
///     static void encode(Encoder& e, const Point& p) {
///       executor_exporter::encode(e, p.label);
///       executor_exporter::encode(e, p.x);
///       executor_exporter::encode(e, p.y);
///     }
///     static Point decode(Decoder& d) {
///       auto label = executor_exporter::decode<std::string>(d);
///       auto x = executor_exporter::decode<double>(d);
///       return Point{std::move(label), x, executor_exporter::decode<double>(d)};
///     }
///   };
template <class T>
struct codec_traits {};

/// Appends encoded values to an owned std::string. A std::string (rather than
/// a byte vector) is used throughout because it is what frames, pipes and
/// logging want, and it has the small-buffer optimisation for tiny payloads.
/// The encoder also counts nesting depth so that a value that the other side
/// would reject as too deep fails here, at the sender, with a clear message.
class Encoder {
 public:
  static constexpr std::size_t kDefaultMaxDepth = 64;

  Encoder() = default;
  /// Continues appending after the existing contents of `buffer` (used by the
  /// frame layer to write a header and a payload into one allocation).
  explicit Encoder(std::string buffer, std::size_t max_depth = kDefaultMaxDepth)
      : buf_(std::move(buffer)), max_depth_(max_depth) {}

  /// Appends raw bytes; the primitive every other write is built on.
  void write_bytes(const void* data, std::size_t size) {
    if (size != 0) buf_.append(static_cast<const char*>(data), size);
  }
  void write_bytes(std::span<const std::byte> bytes) { write_bytes(bytes.data(), bytes.size()); }

  /// Appends an unsigned integer as exactly sizeof(U) little-endian bytes, so
  /// the format does not depend on the host's byte order.
  template <std::unsigned_integral U>
  void write_uint(U value) {
    std::array<char, sizeof(U)> out{};
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(out.data(), &value, sizeof(U));
    } else {
      for (std::size_t i = 0; i < sizeof(U); ++i) {
        out[i] = static_cast<char>(static_cast<unsigned char>(value & U{0xFF}));
        if constexpr (sizeof(U) > 1) value = static_cast<U>(value >> 8);
      }
    }
    buf_.append(out.data(), out.size());
  }

  /// Appends a container length as uint64, the one length format of the codec.
  void write_length(std::size_t n) { write_uint<std::uint64_t>(n); }

  std::size_t size() const noexcept { return buf_.size(); }
  const std::string& buffer() const& noexcept { return buf_; }
  /// Mutable access, for callers that patch a previously written field (such
  /// as a frame's payload length) in place.
  std::string& buffer() & noexcept { return buf_; }
  /// Moves the encoded bytes out and leaves the encoder empty.
  std::string take() noexcept {
    std::string out = std::move(buf_);
    buf_.clear();
    return out;
  }

  /// RAII nesting counter used by the built-in composite rules and around
  /// every codec_traits call. User code does not need it.
  class DepthGuard {
   public:
    explicit DepthGuard(Encoder& e) : e_(e) {
      if (e_.depth_ >= e_.max_depth_) {
        throw CodecError(
            "codec: cannot encode value nested deeper than " + std::to_string(e_.max_depth_) +
            " levels (the decoder would reject it; raise the depth limit on both sides)");
      }
      ++e_.depth_;
    }
    ~DepthGuard() { --e_.depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    Encoder& e_;
  };

 private:
  std::string buf_;
  std::size_t max_depth_ = kDefaultMaxDepth;
  std::size_t depth_ = 0;
};

/// Reads encoded values from a borrowed byte range, tracking the position.
/// Every read is checked against the bytes that remain and fails with a
/// CodecError naming what was being read and the offset, so a corrupt or
/// truncated message from a worker is a recoverable error, never a crash or a
/// huge allocation. The input must outlive the decoder.
class Decoder {
 public:
  static constexpr std::size_t kDefaultMaxDepth = 64;

  explicit Decoder(std::span<const std::byte> input,
                   std::size_t max_depth = kDefaultMaxDepth) noexcept
      : data_(input.data()), size_(input.size()), max_depth_(max_depth) {}
  explicit Decoder(std::string_view input, std::size_t max_depth = kDefaultMaxDepth) noexcept
      : data_(reinterpret_cast<const std::byte*>(input.data())),
        size_(input.size()),
        max_depth_(max_depth) {}

  std::size_t position() const noexcept { return pos_; }
  std::size_t remaining() const noexcept { return size_ - pos_; }
  bool at_end() const noexcept { return pos_ == size_; }

  /// Consumes exactly `n` bytes and returns a view of them; `what` names the
  /// value for the error message if fewer than `n` bytes remain.
  std::span<const std::byte> read_bytes(std::size_t n, std::string_view what = "bytes") {
    if (n > remaining()) {
      fail("truncated input: " + std::string(what) + " needs " + std::to_string(n) +
           " bytes but only " + std::to_string(remaining()) + " remain");
    }
    std::span<const std::byte> out(data_ + pos_, n);
    pos_ += n;
    return out;
  }

  /// Reads an unsigned little-endian integer of exactly sizeof(U) bytes.
  template <std::unsigned_integral U>
  U read_uint(std::string_view what = "integer") {
    auto bytes = read_bytes(sizeof(U), what);
    U value{};
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(&value, bytes.data(), sizeof(U));
    } else {
      for (std::size_t i = sizeof(U); i-- > 0;) {
        if constexpr (sizeof(U) > 1) value = static_cast<U>(value << 8);
        value = static_cast<U>(value | static_cast<U>(std::to_integer<unsigned char>(bytes[i])));
      }
    }
    return value;
  }

  /// Reads a uint64 element count and checks, before the caller allocates
  /// anything, that the remaining input could hold that many elements of at
  /// least `min_bytes_per_element` bytes each. This is what bounds the memory
  /// a hostile or corrupt length can make the decoder allocate.
  std::size_t read_length(std::size_t min_bytes_per_element, std::string_view what) {
    const std::size_t at = pos_;
    const std::uint64_t n = read_uint<std::uint64_t>(what);
    const std::size_t per = std::max<std::size_t>(min_bytes_per_element, 1);
    if (n > remaining() / per) {
      const std::size_t left = remaining();
      pos_ = at;  // report the offset of the bad length field itself
      fail(std::string(what) + " length " + std::to_string(n) + " exceeds the remaining input (" +
           std::to_string(left) + " byte(s) after the length, at least " + std::to_string(per) +
           " byte(s) per element)");
    }
    return static_cast<std::size_t>(n);
  }

  /// Throws unless the whole input was consumed. A message is only trusted
  /// when it decodes to exactly its length; trailing bytes mean the two sides
  /// disagree about the types, which must not pass silently.
  void expect_end() const {
    if (!at_end()) {
      fail(std::to_string(remaining()) + " trailing byte(s) after the end of the message");
    }
  }

  /// Throws a CodecError carrying the current offset; for codec_traits
  /// specializations that validate their own invariants.
  [[noreturn]] void fail(const std::string& message) const {
    throw CodecError("codec: " + message + " (at byte offset " + std::to_string(pos_) + " of " +
                     std::to_string(size_) + ")");
  }

  /// RAII nesting counter, the decoder twin of Encoder::DepthGuard. It is what
  /// turns a "depth bomb" (deeply nested recursive input) into a CodecError
  /// instead of a stack overflow.
  class DepthGuard {
   public:
    explicit DepthGuard(Decoder& d) : d_(d) {
      if (d_.depth_ >= d_.max_depth_) {
        d_.fail("value nested deeper than the limit of " + std::to_string(d_.max_depth_) +
                " levels");
      }
      ++d_.depth_;
    }
    ~DepthGuard() { --d_.depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    Decoder& d_;
  };

 private:
  const std::byte* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  std::size_t max_depth_;
  std::size_t depth_ = 0;
};

namespace detail {

template <class T>
struct is_std_vector : std::false_type {};
template <class T, class A>
struct is_std_vector<std::vector<T, A>> : std::true_type {};

template <class T>
struct is_std_array : std::false_type {};
template <class T, std::size_t N>
struct is_std_array<std::array<T, N>> : std::true_type {};

template <class T>
struct is_std_pair : std::false_type {};
template <class A, class B>
struct is_std_pair<std::pair<A, B>> : std::true_type {};

template <class T>
struct is_std_tuple : std::false_type {};
template <class... Ts>
struct is_std_tuple<std::tuple<Ts...>> : std::true_type {};

template <class T>
struct is_std_optional : std::false_type {};
template <class T>
struct is_std_optional<std::optional<T>> : std::true_type {};

template <class T>
struct is_std_variant : std::false_type {};
template <class... Ts>
struct is_std_variant<std::variant<Ts...>> : std::true_type {};

template <class T>
struct is_std_map : std::false_type {};
template <class K, class V, class C, class A>
struct is_std_map<std::map<K, V, C, A>> : std::true_type {};

template <class T>
struct is_std_unordered_map : std::false_type {};
template <class K, class V, class H, class E, class A>
struct is_std_unordered_map<std::unordered_map<K, V, H, E, A>> : std::true_type {};

// Views are trivially copyable but only carry a pointer; byte-copying them
// across processes would silently send an address, so they are excluded.
template <class T>
struct is_view : std::false_type {};
template <class C, class Tr>
struct is_view<std::basic_string_view<C, Tr>> : std::true_type {};
template <class T, std::size_t E>
struct is_view<std::span<T, E>> : std::true_type {};

template <class T>
concept HasCodecTraits = requires(Encoder& e, Decoder& d, const T& v) {
  codec_traits<T>::encode(e, v);
  { codec_traits<T>::decode(d) } -> std::same_as<T>;
};

enum class Rule {
  kNone,
  kUser,
  kBool,
  kInteger,
  kFloat,
  kEnum,
  kMonostate,
  kString,
  kVector,
  kArray,
  kPair,
  kTuple,
  kOptional,
  kVariant,
  kMap,
  kUnorderedMap,
  kTrivial,
};

// The order of the checks is the priority of the rules: user specializations
// first, the byte-copy fallback last.
template <class T>
consteval Rule rule_for() {
  if constexpr (!std::is_object_v<T> || std::is_const_v<T> || std::is_volatile_v<T> ||
                std::is_array_v<T>) {
    return Rule::kNone;
  } else if constexpr (HasCodecTraits<T>) {
    return Rule::kUser;
  } else if constexpr (std::is_same_v<T, bool>) {
    return Rule::kBool;
  } else if constexpr (std::is_integral_v<T>) {
    return Rule::kInteger;
  } else if constexpr (std::is_floating_point_v<T>) {
    return Rule::kFloat;
  } else if constexpr (std::is_enum_v<T>) {
    return Rule::kEnum;
  } else if constexpr (std::is_same_v<T, std::monostate>) {
    return Rule::kMonostate;
  } else if constexpr (std::is_same_v<T, std::string>) {
    return Rule::kString;
  } else if constexpr (is_std_vector<T>::value) {
    return Rule::kVector;
  } else if constexpr (is_std_array<T>::value) {
    return Rule::kArray;
  } else if constexpr (is_std_pair<T>::value) {
    return Rule::kPair;
  } else if constexpr (is_std_tuple<T>::value) {
    return Rule::kTuple;
  } else if constexpr (is_std_optional<T>::value) {
    return Rule::kOptional;
  } else if constexpr (is_std_variant<T>::value) {
    return Rule::kVariant;
  } else if constexpr (is_std_map<T>::value) {
    return Rule::kMap;
  } else if constexpr (is_std_unordered_map<T>::value) {
    return Rule::kUnorderedMap;
  } else if constexpr (std::is_trivially_copyable_v<T> && !std::is_scalar_v<T> &&
                       !is_view<T>::value) {
    // Classes and unions only: scalars were handled above or are pointers.
    return Rule::kTrivial;
  } else {
    return Rule::kNone;
  }
}

consteval std::size_t sat_add(std::size_t a, std::size_t b) {
  return a > std::numeric_limits<std::size_t>::max() - b ? std::numeric_limits<std::size_t>::max()
                                                         : a + b;
}
consteval std::size_t sat_mul(std::size_t a, std::size_t b) {
  return (b != 0 && a > std::numeric_limits<std::size_t>::max() / b)
             ? std::numeric_limits<std::size_t>::max()
             : a * b;
}

template <class T>
consteval bool encodable();
template <class T>
consteval std::size_t min_size();

template <class T>
struct pack;
template <template <class...> class L, class... Ts>
struct pack<L<Ts...>> {
  static consteval bool all_encodable() { return (encodable<Ts>() && ...); }
  static consteval std::size_t min_sum() {
    std::size_t total = 0;
    ((total = sat_add(total, min_size<Ts>())), ...);
    return total;
  }
  static consteval std::size_t min_of() {
    std::size_t best = std::numeric_limits<std::size_t>::max();
    ((best = std::min(best, min_size<Ts>())), ...);
    return best;
  }
};

// Container elements must encode to at least one byte: that is what lets the
// decoder bound an element count by the bytes that remain.
template <class T>
consteval bool element_ok() {
  return encodable<T>() && min_size<T>() > 0;
}

template <class T>
consteval bool encodable() {
  constexpr Rule r = rule_for<T>();
  if constexpr (r == Rule::kNone) {
    return false;
  } else if constexpr (r == Rule::kVector) {
    return element_ok<typename T::value_type>() &&
           std::is_default_constructible_v<typename T::allocator_type>;
  } else if constexpr (r == Rule::kArray || r == Rule::kOptional) {
    return encodable<typename T::value_type>();
  } else if constexpr (r == Rule::kPair) {
    return encodable<typename T::first_type>() && encodable<typename T::second_type>();
  } else if constexpr (r == Rule::kTuple || r == Rule::kVariant) {
    return pack<T>::all_encodable();
  } else if constexpr (r == Rule::kMap || r == Rule::kUnorderedMap) {
    using K = typename T::key_type;
    using V = typename T::mapped_type;
    return encodable<K>() && encodable<V>() && min_size<K>() + min_size<V>() > 0 &&
           std::is_default_constructible_v<T>;
  } else {
    return true;
  }
}

// The fewest bytes any value of T can encode to. Only meaningful when
// encodable<T>(); user types are assumed to write at least one byte.
template <class T>
consteval std::size_t min_size() {
  constexpr Rule r = rule_for<T>();
  if constexpr (r == Rule::kUser || r == Rule::kBool || r == Rule::kOptional) {
    return 1;
  } else if constexpr (r == Rule::kInteger || r == Rule::kFloat || r == Rule::kEnum ||
                       r == Rule::kTrivial) {
    return sizeof(T);
  } else if constexpr (r == Rule::kString || r == Rule::kVector || r == Rule::kMap ||
                       r == Rule::kUnorderedMap) {
    return sizeof(std::uint64_t);
  } else if constexpr (r == Rule::kArray) {
    return sat_mul(std::tuple_size_v<T>, min_size<typename T::value_type>());
  } else if constexpr (r == Rule::kPair) {
    return sat_add(min_size<typename T::first_type>(), min_size<typename T::second_type>());
  } else if constexpr (r == Rule::kTuple) {
    return pack<T>::min_sum();
  } else if constexpr (r == Rule::kVariant) {
    return sat_add(sizeof(std::uint32_t), pack<T>::min_of());
  } else {
    return 0;  // kMonostate, kNone
  }
}

// Scalars that a vector can copy in one memcpy on a little-endian host.
template <class T>
inline constexpr bool bulk_copyable =
    (std::is_integral_v<T> && !std::is_same_v<T, bool>) || std::is_same_v<T, std::byte> ||
    (std::is_floating_point_v<T> && (sizeof(T) == 4 || sizeof(T) == 8));

// Rules whose encoding has a fixed size, so container elements need no
// encoded-size check.
template <class T>
consteval bool fixed_size_rule() {
  constexpr Rule r = rule_for<T>();
  return r == Rule::kBool || r == Rule::kInteger || r == Rule::kFloat || r == Rule::kEnum ||
         r == Rule::kTrivial;
}

}  // namespace detail

/// True exactly for the types encode()/decode() accept: non-const,
/// non-reference object types that are bool, arithmetic, enums,
/// std::monostate, std::string, std::vector/std::array/std::optional of
/// Encodable, std::pair/std::tuple/std::variant of Encodable,
/// std::map/std::unordered_map of Encodable keys and values, types with a
/// codec_traits specialization, and otherwise trivially copyable classes or
/// unions (not raw pointers, C arrays, std::string_view or std::span, which
/// would only carry an address). Elements of vectors and maps must encode to
/// at least one byte, so e.g. std::vector<std::monostate> is not Encodable.
/// Meant for static_assert in APIs that take user values, so that an
/// unsupported argument fails at compile time with a readable message.
template <class T>
concept Encodable = detail::encodable<T>();

template <class T>
void encode(Encoder& e, const T& value);
template <class T>
T decode(Decoder& d);

namespace detail {

template <class T>
void encode_element(Encoder& e, const T& value) {
  if constexpr (fixed_size_rule<T>()) {
    encode(e, value);
  } else {
    const std::size_t before = e.size();
    encode(e, value);
    if (e.size() - before < min_size<T>()) {
      throw CodecError(
          "codec: a container element encoded to " + std::to_string(e.size() - before) +
          " byte(s), fewer than the " + std::to_string(min_size<T>()) +
          " the decoder requires per element; a codec_traits specialization must write at least "
          "one byte");
    }
  }
}

template <class K, class V, class M>
void encode_map(Encoder& e, const M& m) {
  Encoder::DepthGuard guard(e);
  e.write_length(m.size());
  for (const auto& [key, value] : m) {
    const std::size_t before = e.size();
    encode(e, key);
    encode(e, value);
    if (e.size() - before < min_size<K>() + min_size<V>()) {
      throw CodecError("codec: a map entry encoded to fewer bytes than the decoder requires");
    }
  }
}

template <class M>
M decode_map(Decoder& d, const char* what) {
  using K = typename M::key_type;
  using V = typename M::mapped_type;
  Decoder::DepthGuard guard(d);
  const std::size_t n = d.read_length(min_size<K>() + min_size<V>(), what);
  M out;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t entry_at = d.position();
    K key = decode<K>(d);
    V value = decode<V>(d);
    if constexpr (is_std_map<M>::value) {
      // An encoder always writes a std::map in its iteration order, so keys
      // must be strictly increasing; this rejects duplicates and keeps the
      // encoding canonical (decode then encode gives back the same bytes).
      if (!out.empty() && !out.key_comp()(std::prev(out.end())->first, key)) {
        throw CodecError(
            "codec: std::map keys are not strictly increasing (duplicate or "
            "unsorted key in entry " +
            std::to_string(i) + " at byte offset " + std::to_string(entry_at) + ")");
      }
      out.emplace_hint(out.end(), std::move(key), std::move(value));
    } else {
      if (!out.emplace(std::move(key), std::move(value)).second) {
        throw CodecError("codec: duplicate key in std::unordered_map (entry " + std::to_string(i) +
                         " at byte offset " + std::to_string(entry_at) + ")");
      }
    }
  }
  return out;
}

template <class T, std::size_t... I>
T decode_array_pack(Decoder& d, std::index_sequence<I...>) {
  // Braced initialisation evaluates its elements left to right.
  return T{{((void)I, decode<typename T::value_type>(d))...}};
}

template <class T, std::size_t... I>
T decode_tuple(Decoder& d, std::index_sequence<I...>) {
  return T{decode<std::tuple_element_t<I, T>>(d)...};
}

template <class T, std::size_t... I>
T decode_variant(Decoder& d, std::uint32_t index, std::index_sequence<I...>) {
  std::optional<T> out;
  auto try_alternative = [&]<std::size_t J>(std::integral_constant<std::size_t, J>) {
    if (index != J) return false;
    out.emplace(std::in_place_index<J>, decode<std::variant_alternative_t<J, T>>(d));
    return true;
  };
  (void)(try_alternative(std::integral_constant<std::size_t, I>{}) || ...);
  return std::move(*out);
}

}  // namespace detail

/// Appends the encoding of `value` (see the format table at the top of this
/// file). Unsupported types fail to compile with a message pointing at
/// Encodable and codec_traits; an encode-time CodecError means the value
/// could not be decoded by the other side (too deep, or a codec_traits
/// specialization that writes nothing inside a container).
template <class T>
void encode(Encoder& e, const T& value) {
  static_assert(Encodable<T>,
                "executor_exporter::encode: T is not Encodable. Supported: bool, arithmetic, "
                "enums, std::string, std::vector, std::array, std::pair, std::tuple, "
                "std::optional, std::variant, std::map, std::unordered_map, std::monostate, "
                "trivially copyable classes; for anything else specialize "
                "executor_exporter::codec_traits<T>.");
  using detail::Rule;
  constexpr Rule r = detail::rule_for<T>();
  if constexpr (r == Rule::kUser) {
    Encoder::DepthGuard guard(e);
    codec_traits<T>::encode(e, value);
  } else if constexpr (r == Rule::kBool) {
    e.write_uint<std::uint8_t>(value ? 1 : 0);
  } else if constexpr (r == Rule::kInteger) {
    e.write_uint(static_cast<std::make_unsigned_t<T>>(value));
  } else if constexpr (r == Rule::kFloat) {
    if constexpr (sizeof(T) == 4) {
      e.write_uint(std::bit_cast<std::uint32_t>(value));
    } else if constexpr (sizeof(T) == 8) {
      e.write_uint(std::bit_cast<std::uint64_t>(value));
    } else {
      e.write_bytes(std::addressof(value), sizeof(T));
    }
  } else if constexpr (r == Rule::kEnum) {
    encode(e, static_cast<std::underlying_type_t<T>>(value));
  } else if constexpr (r == Rule::kMonostate) {
    // Nothing to write.
  } else if constexpr (r == Rule::kString) {
    e.write_length(value.size());
    e.write_bytes(value.data(), value.size());
  } else if constexpr (r == Rule::kVector) {
    using E = typename T::value_type;
    Encoder::DepthGuard guard(e);
    e.write_length(value.size());
    if constexpr (detail::bulk_copyable<E> && std::endian::native == std::endian::little) {
      e.write_bytes(value.data(), value.size() * sizeof(E));
    } else {
      for (const auto& element : value) detail::encode_element<E>(e, element);
    }
  } else if constexpr (r == Rule::kArray) {
    Encoder::DepthGuard guard(e);
    for (const auto& element : value) encode(e, element);
  } else if constexpr (r == Rule::kPair) {
    Encoder::DepthGuard guard(e);
    encode(e, value.first);
    encode(e, value.second);
  } else if constexpr (r == Rule::kTuple) {
    Encoder::DepthGuard guard(e);
    std::apply([&e](const auto&... members) { (encode(e, members), ...); }, value);
  } else if constexpr (r == Rule::kOptional) {
    Encoder::DepthGuard guard(e);
    e.write_uint<std::uint8_t>(value.has_value() ? 1 : 0);
    if (value.has_value()) encode(e, *value);
  } else if constexpr (r == Rule::kVariant) {
    Encoder::DepthGuard guard(e);
    if (value.valueless_by_exception()) {
      throw CodecError("codec: cannot encode a valueless_by_exception std::variant");
    }
    e.write_uint(static_cast<std::uint32_t>(value.index()));
    std::visit([&e](const auto& alternative) { encode(e, alternative); }, value);
  } else if constexpr (r == Rule::kMap || r == Rule::kUnorderedMap) {
    detail::encode_map<typename T::key_type, typename T::mapped_type>(e, value);
  } else if constexpr (r == Rule::kTrivial) {
    // Byte copy: only meaningful between processes of the same binary, and
    // any pointer inside points into the sender's address space.
    e.write_bytes(std::addressof(value), sizeof(T));
  }
}

/// Decodes one value of type T from the current position. Lengths are checked
/// against the remaining input before anything is allocated, and no up-front
/// reservation exceeds the bytes that remain; beyond that, memory grows only
/// with elements actually decoded. Throws CodecError on any malformed input;
/// does not require the input to end afterwards (see Decoder::expect_end and
/// decode_message for that).
template <class T>
T decode(Decoder& d) {
  static_assert(Encodable<T>,
                "executor_exporter::decode: T is not Encodable. Supported: bool, arithmetic, "
                "enums, std::string, std::vector, std::array, std::pair, std::tuple, "
                "std::optional, std::variant, std::map, std::unordered_map, std::monostate, "
                "trivially copyable classes; for anything else specialize "
                "executor_exporter::codec_traits<T>.");
  using detail::Rule;
  constexpr Rule r = detail::rule_for<T>();
  if constexpr (r == Rule::kUser) {
    Decoder::DepthGuard guard(d);
    return codec_traits<T>::decode(d);
  } else if constexpr (r == Rule::kBool) {
    const auto byte = d.read_uint<std::uint8_t>("bool");
    if (byte > 1) d.fail("invalid bool value " + std::to_string(byte) + " (must be 0 or 1)");
    return byte == 1;
  } else if constexpr (r == Rule::kInteger) {
    return static_cast<T>(d.read_uint<std::make_unsigned_t<T>>("integer"));
  } else if constexpr (r == Rule::kFloat) {
    if constexpr (sizeof(T) == 4) {
      return std::bit_cast<T>(d.read_uint<std::uint32_t>("float"));
    } else if constexpr (sizeof(T) == 8) {
      return std::bit_cast<T>(d.read_uint<std::uint64_t>("double"));
    } else {
      std::array<std::byte, sizeof(T)> raw{};
      std::memcpy(raw.data(), d.read_bytes(sizeof(T), "long double").data(), sizeof(T));
      return std::bit_cast<T>(raw);
    }
  } else if constexpr (r == Rule::kEnum) {
    return static_cast<T>(decode<std::underlying_type_t<T>>(d));
  } else if constexpr (r == Rule::kMonostate) {
    return T{};
  } else if constexpr (r == Rule::kString) {
    const std::size_t n = d.read_length(1, "std::string");
    const auto bytes = d.read_bytes(n, "std::string");
    return std::string(reinterpret_cast<const char*>(bytes.data()), n);
  } else if constexpr (r == Rule::kVector) {
    using E = typename T::value_type;
    Decoder::DepthGuard guard(d);
    const std::size_t n = d.read_length(detail::min_size<E>(), "std::vector");
    T out;
    if constexpr (detail::bulk_copyable<E> && std::endian::native == std::endian::little) {
      // read_length guaranteed n * sizeof(E) <= remaining, so this allocates
      // no more than the input holds.
      const auto bytes = d.read_bytes(n * sizeof(E), "std::vector elements");
      out.resize(n);
      if (n != 0) std::memcpy(out.data(), bytes.data(), n * sizeof(E));
    } else {
      // Never reserve more memory than there are input bytes left: element
      // types can be much larger in memory than on the wire (an empty
      // optional<array<char, 4096>> is one byte). Growth after that tracks
      // the elements actually decoded.
      out.reserve(std::min(n, d.remaining() / sizeof(E) + 1));
      for (std::size_t i = 0; i < n; ++i) out.push_back(decode<E>(d));
    }
    return out;
  } else if constexpr (r == Rule::kArray) {
    using E = typename T::value_type;
    Decoder::DepthGuard guard(d);
    if constexpr (std::is_default_constructible_v<E> && std::is_move_assignable_v<E>) {
      T out{};
      for (auto& element : out) element = decode<E>(d);
      return out;
    } else {
      return detail::decode_array_pack<T>(d, std::make_index_sequence<std::tuple_size_v<T>>{});
    }
  } else if constexpr (r == Rule::kPair) {
    Decoder::DepthGuard guard(d);
    return T{decode<typename T::first_type>(d), decode<typename T::second_type>(d)};
  } else if constexpr (r == Rule::kTuple) {
    Decoder::DepthGuard guard(d);
    return detail::decode_tuple<T>(d, std::make_index_sequence<std::tuple_size_v<T>>{});
  } else if constexpr (r == Rule::kOptional) {
    Decoder::DepthGuard guard(d);
    const auto tag = d.read_uint<std::uint8_t>("std::optional tag");
    if (tag == 0) return T{};
    if (tag != 1) d.fail("invalid std::optional tag " + std::to_string(tag) + " (must be 0 or 1)");
    return T(std::in_place, decode<typename T::value_type>(d));
  } else if constexpr (r == Rule::kVariant) {
    Decoder::DepthGuard guard(d);
    const auto index = d.read_uint<std::uint32_t>("std::variant index");
    if (index >= std::variant_size_v<T>) {
      d.fail("invalid std::variant index " + std::to_string(index) + " (variant has " +
             std::to_string(std::variant_size_v<T>) + " alternatives)");
    }
    return detail::decode_variant<T>(d, index, std::make_index_sequence<std::variant_size_v<T>>{});
  } else if constexpr (r == Rule::kMap) {
    return detail::decode_map<T>(d, "std::map");
  } else if constexpr (r == Rule::kUnorderedMap) {
    return detail::decode_map<T>(d, "std::unordered_map");
  } else if constexpr (r == Rule::kTrivial) {
    std::array<std::byte, sizeof(T)> raw{};
    std::memcpy(raw.data(), d.read_bytes(sizeof(T), "trivially copyable object").data(), sizeof(T));
    return std::bit_cast<T>(raw);
  }
}

/// Encodes the values one after another into a fresh string: the argument
/// list of a task. The result equals the encoding of std::tuple<Ts...>.
template <class... Ts>
std::string encode_to_string(const Ts&... values) {
  Encoder e;
  (encode(e, values), ...);
  return e.take();
}

/// Decodes a whole message holding exactly Ts... in order (the inverse of
/// encode_to_string) and rejects trailing bytes.
template <class... Ts>
std::tuple<Ts...> decode_all(std::span<const std::byte> bytes) {
  Decoder d(bytes);
  std::tuple<Ts...> out{decode<Ts>(d)...};  // braced init: left to right
  d.expect_end();
  return out;
}
template <class... Ts>
std::tuple<Ts...> decode_all(std::string_view bytes) {
  return decode_all<Ts...>(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

/// Decodes a whole message holding exactly one T (for example a task result)
/// and rejects trailing bytes.
template <class T>
T decode_message(std::span<const std::byte> bytes) {
  Decoder d(bytes);
  T out = decode<T>(d);
  d.expect_end();
  return out;
}
template <class T>
T decode_message(std::string_view bytes) {
  return decode_message<T>(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

}  // namespace executor_exporter
