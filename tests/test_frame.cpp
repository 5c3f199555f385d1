// Specification tests for executor_exporter/process/detail/frame.hpp.
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "executor_exporter/process/codec.hpp"
#include "executor_exporter/process/detail/frame.hpp"

namespace ee = executor_exporter;
namespace eed = executor_exporter::detail;
using eed::Frame;
using eed::FrameDecoder;
using eed::FrameError;
using eed::FrameKind;

namespace frame_test {

std::string header(std::uint32_t magic, std::uint8_t kind, std::uint64_t task_id,
                   std::uint32_t length) {
  ee::Encoder e;
  e.write_uint(magic);
  e.write_uint(kind);
  e.write_uint(task_id);
  e.write_uint(length);
  return e.take();
}

// Feeds `stream` in the given chunks and collects every frame.
std::vector<Frame> decode_in_chunks(std::string_view stream, const std::vector<std::size_t>& cuts,
                                    FrameDecoder& dec) {
  std::vector<Frame> frames;
  std::size_t at = 0;
  auto drain = [&] {
    while (auto f = dec.next()) frames.push_back(std::move(*f));
  };
  for (std::size_t cut : cuts) {
    dec.feed(stream.substr(at, cut - at));
    drain();
    at = cut;
  }
  dec.feed(stream.substr(at));
  drain();
  return frames;
}

std::string sample_stream() {
  return eed::encode_hello_frame(4242, true, "") +
         eed::encode_task_frame(1, 0xdeadbeef, ee::encode_to_string(std::string("arg"), 7)) +
         eed::encode_result_frame(1, ee::encode_to_string(std::vector<std::string>{"r", "s"}), 10,
                                  20) +
         eed::encode_error_frame(2, "std::runtime_error", "went wrong", 30, 40) +
         eed::encode_frame(FrameKind::kTask, 3, "") + eed::encode_shutdown_frame();
}

int sample_function(int x) { return x * 2; }

}  // namespace frame_test

using namespace frame_test;

TEST_CASE("a frame is a 17-byte little-endian header followed by the payload", "[frame]") {
  const std::string f = eed::encode_frame(FrameKind::kResult, 0x0102030405060708, "xyz");
  REQUIRE(f.size() == eed::kFrameHeaderSize + 3);
  CHECK(eed::kFrameHeaderSize == 17);
  CHECK(f.substr(0, 4) == std::string("EXF\x02", 4));  // magic with version byte
  CHECK(f[4] == static_cast<char>(FrameKind::kResult));
  CHECK(f.substr(5, 8) == std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8));
  CHECK(f.substr(13, 4) == std::string("\x03\0\0\0", 4));
  CHECK(f.substr(17) == "xyz");
}

TEST_CASE("each frame kind round-trips through its encode and typed decode helpers", "[frame]") {
  FrameDecoder dec;
  dec.feed(sample_stream());

  auto hello = dec.next();
  REQUIRE(hello);
  CHECK(hello->kind == FrameKind::kHello);
  CHECK(hello->task_id == 0);
  const auto h = eed::decode_hello(*hello);
  CHECK(h.pid == 4242);
  CHECK(h.initializer_ok);
  CHECK(h.message.empty());

  auto task = dec.next();
  REQUIRE(task);
  CHECK(task->task_id == 1);
  const auto t = eed::decode_task(std::move(*task));
  CHECK(t.function == 0xdeadbeef);
  CHECK(ee::decode_all<std::string, int>(t.args) == std::tuple<std::string, int>{"arg", 7});

  auto result = dec.next();
  REQUIRE(result);
  const auto r = eed::decode_result(*result);
  CHECK(r.start_ns == 10);
  CHECK(r.end_ns == 20);
  CHECK(ee::decode_message<std::vector<std::string>>(r.value) ==
        std::vector<std::string>{"r", "s"});

  auto error = dec.next();
  REQUIRE(error);
  CHECK(error->task_id == 2);
  const auto e = eed::decode_error(*error);
  CHECK(e.type_name == "std::runtime_error");
  CHECK(e.what == "went wrong");
  CHECK(e.start_ns == 30);
  CHECK(e.end_ns == 40);

  auto empty_task = dec.next();
  REQUIRE(empty_task);
  CHECK(empty_task->task_id == 3);
  CHECK_THROWS_AS(eed::decode_task(*empty_task), ee::CodecError);  // no function pointer

  auto shutdown = dec.next();
  REQUIRE(shutdown);
  CHECK(shutdown->kind == FrameKind::kShutdown);
  CHECK(shutdown->payload.empty());

  CHECK_FALSE(dec.next());
  CHECK(dec.buffered_bytes() == 0);
  CHECK_NOTHROW(dec.expect_end());
}

TEST_CASE("a Hello frame reports a failed initializer with its message", "[frame]") {
  FrameDecoder dec;
  dec.feed(eed::encode_hello_frame(-1, false, "initializer threw: no config"));
  const auto h = eed::decode_hello(*dec.next());
  CHECK(h.pid == -1);
  CHECK_FALSE(h.initializer_ok);
  CHECK(h.message == "initializer threw: no config");
}

TEST_CASE("a stream split at every byte boundary decodes to the same frames", "[frame]") {
  const std::string stream = sample_stream();
  FrameDecoder whole_dec;
  const auto expected = decode_in_chunks(stream, {}, whole_dec);
  REQUIRE(expected.size() == 6);

  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    INFO("split at " << cut);
    FrameDecoder dec;
    CHECK(decode_in_chunks(stream, {cut}, dec) == expected);
    CHECK(dec.buffered_bytes() == 0);
  }
  for (std::size_t a = 0; a <= stream.size(); a += 7) {
    for (std::size_t b = a; b <= stream.size(); b += 5) {
      FrameDecoder dec;
      CHECK(decode_in_chunks(stream, {a, b}, dec) == expected);
    }
  }
}

TEST_CASE("feeding one byte at a time yields each frame exactly when its last byte arrives",
          "[frame]") {
  const std::string stream = sample_stream();
  FrameDecoder dec;
  std::vector<Frame> frames;
  std::vector<std::size_t> completed_at;
  for (std::size_t i = 0; i < stream.size(); ++i) {
    dec.feed(std::string_view(stream).substr(i, 1));
    while (auto f = dec.next()) {
      frames.push_back(std::move(*f));
      completed_at.push_back(i + 1);
    }
  }
  REQUIRE(frames.size() == 6);
  std::size_t end = 0;
  for (std::size_t k = 0; k < frames.size(); ++k) {
    end += eed::kFrameHeaderSize + frames[k].payload.size();
    CHECK(completed_at[k] == end);
  }
}

TEST_CASE("multiple frames in one feed are returned in order, and span feeds work", "[frame]") {
  std::string stream;
  for (std::uint64_t id = 1; id <= 50; ++id) {
    stream += eed::encode_result_frame(id, ee::encode_to_string(id), id, id + 1);
  }
  FrameDecoder dec;
  const auto bytes = std::as_bytes(std::span<const char>(stream.data(), stream.size()));
  dec.feed(bytes);
  for (std::uint64_t id = 1; id <= 50; ++id) {
    auto f = dec.next();
    REQUIRE(f);
    CHECK(f->task_id == id);
    CHECK(ee::decode_message<std::uint64_t>(eed::decode_result(std::move(*f)).value) == id);
  }
  CHECK_FALSE(dec.next());
}

TEST_CASE("bad magic fails with FrameError and the decoder stays failed", "[frame]") {
  FrameDecoder dec;
  dec.feed(eed::encode_shutdown_frame());
  dec.feed(header(0x12345678, 1, 0, 0));
  CHECK(dec.next());  // the good frame before the corruption is still delivered
  CHECK_THROWS_WITH(dec.next(),
                    Catch::Contains("bad magic 0x12345678") && Catch::Contains("stream offset 17"));
  CHECK(dec.failed());
  CHECK_THROWS_AS(dec.next(), FrameError);
  CHECK_THROWS_AS(dec.feed(eed::encode_shutdown_frame()), FrameError);
  CHECK_THROWS_AS(dec.expect_end(), FrameError);
}

TEST_CASE("a different protocol version is reported as bad magic", "[frame]") {
  FrameDecoder dec;
  dec.feed(header(eed::kFrameMagic + (1u << 24), 1, 0, 0));
  CHECK_THROWS_WITH(dec.next(), Catch::Contains("different protocol version"));
}

TEST_CASE("an unknown frame kind fails with FrameError", "[frame]") {
  for (std::uint8_t kind : {std::uint8_t{0}, std::uint8_t{6}, std::uint8_t{255}}) {
    FrameDecoder dec;
    dec.feed(header(eed::kFrameMagic, kind, 9, 0));
    CHECK_THROWS_WITH(dec.next(), Catch::Contains("unknown frame kind " + std::to_string(kind)));
  }
}

TEST_CASE("an oversized payload length fails as soon as the header arrives", "[frame]") {
  FrameDecoder dec(1024);
  dec.feed(header(eed::kFrameMagic, static_cast<std::uint8_t>(FrameKind::kResult), 5, 1025));
  CHECK_THROWS_WITH(dec.next(), Catch::Contains("payload of 1025 bytes, above the limit of 1024"));

  FrameDecoder at_limit(1024);
  at_limit.feed(eed::encode_frame(FrameKind::kResult, 5, std::string(1024, 'x')));
  CHECK(at_limit.next()->payload.size() == 1024);

  FrameDecoder default_limit;
  CHECK(default_limit.max_payload() == 64u << 20);
  default_limit.feed(header(eed::kFrameMagic, 3, 1, 0xFFFFFFFF));
  CHECK_THROWS_AS(default_limit.next(), FrameError);
}

TEST_CASE("a declared payload is not allocated before its bytes arrive", "[frame]") {
  FrameDecoder dec;  // 64 MiB limit
  const std::uint32_t declared = 60u << 20;
  dec.feed(header(eed::kFrameMagic, static_cast<std::uint8_t>(FrameKind::kResult), 1, declared));
  dec.feed(std::string(100, 'p'));
  CHECK_FALSE(dec.next());
  CHECK(dec.buffered_bytes() == eed::kFrameHeaderSize + 100);
  CHECK(dec.buffer_capacity() < 4096);
}

TEST_CASE("a stream that ends mid-frame is reported by expect_end", "[frame]") {
  const std::string f = eed::encode_error_frame(3, "E", "m", 1, 2);
  FrameDecoder dec;
  dec.feed(std::string_view(f).substr(0, f.size() - 1));
  CHECK_FALSE(dec.next());
  CHECK_THROWS_WITH(dec.expect_end(), Catch::Contains("ended in the middle of a frame"));
  dec.feed(std::string_view(f).substr(f.size() - 1));
  CHECK(dec.next());
  CHECK_NOTHROW(dec.expect_end());
}

TEST_CASE("typed decode helpers reject a frame of the wrong kind", "[frame]") {
  const Frame shutdown{FrameKind::kShutdown, 0, ""};
  CHECK_THROWS_WITH(eed::decode_result(shutdown),
                    Catch::Contains("expected a Result frame but got Shutdown"));
  CHECK_THROWS_AS(eed::decode_task(shutdown), FrameError);
  CHECK_THROWS_AS(eed::decode_error(shutdown), FrameError);
  CHECK_THROWS_AS(eed::decode_hello(shutdown), FrameError);
}

TEST_CASE("malformed payloads fail with CodecError", "[frame]") {
  CHECK_THROWS_AS(eed::decode_result(Frame{FrameKind::kResult, 1, std::string(15, '\0')}),
                  ee::CodecError);
  CHECK_THROWS_AS(eed::decode_task(Frame{FrameKind::kTask, 1, "short"}), ee::CodecError);
  // An Error payload must end after its two strings.
  std::string err = eed::encode_error_frame(1, "T", "w", 0, 0).substr(eed::kFrameHeaderSize);
  CHECK_NOTHROW(eed::decode_error(Frame{FrameKind::kError, 1, err}));
  CHECK_THROWS_WITH(eed::decode_error(Frame{FrameKind::kError, 1, err + "x"}),
                    Catch::Contains("trailing"));
  CHECK_THROWS_AS(eed::decode_hello(Frame{FrameKind::kHello, 0, std::string(8, '\0') + "\x05"}),
                  ee::CodecError);
  // FrameError is a CodecError, so one catch clause covers the whole wire.
  STATIC_REQUIRE(std::is_base_of_v<ee::CodecError, FrameError>);
}

TEST_CASE("a large frame is handed over without losing bytes", "[frame]") {
  std::string value(3u << 20, '\0');
  for (std::size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 31);
  const std::string f = eed::encode_result_frame(8, value, 1, 2);
  FrameDecoder dec;
  for (std::size_t at = 0; at < f.size(); at += 65536) {
    dec.feed(std::string_view(f).substr(at, 65536));
  }
  auto frame = dec.next();
  REQUIRE(frame);
  CHECK(eed::decode_result(std::move(*frame)).value == value);
  dec.feed(eed::encode_shutdown_frame());
  CHECK(dec.next()->kind == FrameKind::kShutdown);
  CHECK(dec.buffer_capacity() < (1u << 20));  // the big buffer is not kept
}

TEST_CASE("a function pointer survives the wire in the same process image", "[frame]") {
  const std::string f =
      eed::encode_task_frame(1, eed::function_to_wire(&sample_function), ee::encode_to_string(21));
  FrameDecoder dec;
  dec.feed(f);
  const auto task = eed::decode_task(*dec.next());
  auto fn = eed::function_from_wire<int (*)(int)>(task.function);
  CHECK(fn == &sample_function);
  CHECK(fn(std::get<0>(ee::decode_all<int>(task.args))) == 42);
}

TEST_CASE("monotonic_ns is CLOCK_MONOTONIC and never goes backwards", "[frame]") {
  const auto a = eed::monotonic_ns();
  const auto b = eed::monotonic_ns();
  CHECK(a > 0);
  CHECK(b >= a);
}

TEST_CASE("frames built in place are byte for byte the frames built from parts", "[frame]") {
  const std::string args = ee::encode_to_string(std::int64_t{42}, std::string("key"));

  std::string task = eed::start_task_frame(0xABCDEF);
  task += args;
  eed::seal_frame(task, FrameKind::kTask, 7);
  CHECK(task == eed::encode_task_frame(7, 0xABCDEF, args));

  const std::string value = ee::encode_to_string(std::int32_t{-5});
  std::string result(eed::kResultPrefixSize, '\0');
  result += value;
  eed::seal_result_frame(result, 9, 100, 250);
  CHECK(result == eed::encode_result_frame(9, value, 100, 250));
}

TEST_CASE("next_view reads the same frames as next without copying them", "[frame]") {
  const std::string value = ee::encode_to_string(std::string(100, 'v'));
  const std::string stream = eed::encode_task_frame(1, 11, "abc") +
                             eed::encode_result_frame(2, value, 5, 6) +
                             eed::encode_shutdown_frame();
  // Split in two feeds, the second frame straddling them.
  const std::size_t cut = eed::kFrameHeaderSize + 11 + 10;
  FrameDecoder by_view;
  FrameDecoder by_copy;
  std::vector<Frame> viewed;
  std::vector<Frame> copied;
  for (const std::string_view part :
       {std::string_view(stream).substr(0, cut), std::string_view(stream).substr(cut)}) {
    by_view.feed(part);
    by_copy.feed(part);
    while (auto v = by_view.next_view()) {
      // The view points into the decoder's buffer.
      CHECK(v->payload.size() <= by_view.buffer_capacity());
      viewed.push_back(v->copy());
    }
    while (auto f = by_copy.next()) copied.push_back(std::move(*f));
  }
  REQUIRE(viewed.size() == 3);
  CHECK(viewed == copied);

  FrameDecoder d;
  d.feed(eed::encode_result_frame(2, value, 5, 6));
  const auto v = d.next_view();
  REQUIRE(v.has_value());
  const eed::ResultView r = eed::decode_result(*v);
  CHECK(r.start_ns == 5);
  CHECK(r.end_ns == 6);
  CHECK(ee::decode_message<std::string>(r.value) == std::string(100, 'v'));
  CHECK(d.buffered_bytes() == 0);
  CHECK_THROWS_AS(eed::decode_task(*v), FrameError);  // the kind is checked
}
