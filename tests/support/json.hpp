// Minimal JSON reader for tests (e.g. Prometheus HTTP API responses). Not a general-purpose
// library: parses RFC 8259 JSON into a simple tree; \u escapes are decoded to UTF-8.
#pragma once

#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ee_test::json {

struct Member;

struct Value {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Value> array;
  std::vector<Member> object;  // in document order

  bool is_null() const { return kind == Kind::Null; }
  bool is_object() const { return kind == Kind::Object; }
  bool is_array() const { return kind == Kind::Array; }
  bool is_string() const { return kind == Kind::String; }

  // Member of an object, or nullptr (also when this is not an object).
  const Value* find(std::string_view key) const;
  // Member of an object; throws when absent.
  const Value& at(std::string_view key) const;
  // Element of an array; throws when absent.
  const Value& at(std::size_t index) const;
  const std::string& str() const {
    if (kind != Kind::String) throw std::runtime_error("json: not a string");
    return string;
  }
};

struct Member {
  std::string key;
  Value value;
};

inline const Value* Value::find(std::string_view key) const {
  if (kind != Kind::Object) return nullptr;
  for (const auto& member : object)
    if (member.key == key) return &member.value;
  return nullptr;
}

inline const Value& Value::at(std::string_view key) const {
  if (const Value* v = find(key)) return *v;
  throw std::runtime_error("json: no member '" + std::string(key) + "'");
}

inline const Value& Value::at(std::size_t index) const {
  if (kind != Kind::Array || index >= array.size())
    throw std::runtime_error("json: no element " + std::to_string(index));
  return array[index];
}

namespace detail {

class Parser {
 public:
  explicit Parser(std::string_view text) : t_(text) {}

  Value document() {
    Value v = value(0);
    ws();
    if (p_ != t_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("json: " + what + " at offset " + std::to_string(p_));
  }
  void ws() {
    while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\t' || t_[p_] == '\n' || t_[p_] == '\r'))
      ++p_;
  }
  bool consume(std::string_view lit) {
    if (t_.substr(p_, lit.size()) != lit) return false;
    p_ += lit.size();
    return true;
  }
  char next() {
    if (p_ >= t_.size()) fail("unexpected end of input");
    return t_[p_++];
  }

  Value value(int depth) {
    if (depth > 200) fail("nesting too deep");
    ws();
    if (p_ >= t_.size()) fail("unexpected end of input");
    Value v;
    const char c = t_[p_];
    if (c == '{') {
      ++p_;
      v.kind = Value::Kind::Object;
      ws();
      if (consume("}")) return v;
      while (true) {
        ws();
        if (p_ >= t_.size() || t_[p_] != '"') fail("expected object key");
        std::string key = string_literal();
        ws();
        if (!consume(":")) fail("expected ':'");
        v.object.push_back(Member{std::move(key), value(depth + 1)});
        ws();
        if (consume(",")) continue;
        if (consume("}")) return v;
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      ++p_;
      v.kind = Value::Kind::Array;
      ws();
      if (consume("]")) return v;
      while (true) {
        v.array.push_back(value(depth + 1));
        ws();
        if (consume(",")) continue;
        if (consume("]")) return v;
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind = Value::Kind::String;
      v.string = string_literal();
      return v;
    }
    if (consume("true")) {
      v.kind = Value::Kind::Bool;
      v.boolean = true;
      return v;
    }
    if (consume("false")) {
      v.kind = Value::Kind::Bool;
      return v;
    }
    if (consume("null")) return v;
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      const auto start = p_;
      if (t_[p_] == '-') ++p_;
      while (p_ < t_.size() && (std::isdigit(static_cast<unsigned char>(t_[p_])) || t_[p_] == '.' ||
                                t_[p_] == 'e' || t_[p_] == 'E' || t_[p_] == '+' || t_[p_] == '-'))
        ++p_;
      const auto num = t_.substr(start, p_ - start);
      auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), v.number);
      if (ec != std::errc() || ptr != num.data() + num.size()) fail("invalid number");
      v.kind = Value::Kind::Number;
      return v;
    }
    fail(std::string("unexpected character '") + c + "'");
  }

  unsigned hex4() {
    unsigned cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = next();
      cp <<= 4;
      if (h >= '0' && h <= '9') {
        cp |= static_cast<unsigned>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        cp |= static_cast<unsigned>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        cp |= static_cast<unsigned>(h - 'A' + 10);
      } else {
        fail("invalid \\u escape");
      }
    }
    return cp;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string_literal() {
    ++p_;  // opening quote
    std::string out;
    while (true) {
      const char c = next();
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      const char e = next();
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF && consume("\\u")) {
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          fail(std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  std::string_view t_;
  std::size_t p_ = 0;
};

}  // namespace detail

// Parses a JSON document; throws std::runtime_error on malformed input.
inline Value parse(std::string_view text) { return detail::Parser(text).document(); }

}  // namespace ee_test::json
