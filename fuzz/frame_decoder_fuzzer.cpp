// libFuzzer target for the parent<->worker wire: FrameDecoder plus the codec.
//
// Why: the parent must survive whatever a crashed, killed or buggy worker
// leaves in the pipe. The only acceptable outcomes for arbitrary bytes are
// frames, "need more bytes", or a FrameError/CodecError. Anything else (a
// crash, a sanitizer report, another exception type, an oversized allocation,
// or a broken invariant checked below) is a finding.
//
// Invariants checked besides "does not crash":
//  * splitting the stream into random chunks yields exactly the frames (and
//    the same failure) as feeding it in one piece;
//  * every frame respects max_payload;
//  * decoding is canonical: whatever decodes successfully re-encodes to the
//    identical bytes, for frames and for the codec types used below.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "executor_exporter/process/codec.hpp"
#include "executor_exporter/process/detail/frame.hpp"

namespace ee = executor_exporter;
namespace eed = executor_exporter::detail;

namespace {

// A recursive user type, so depth limits are exercised through codec_traits.
struct Tree {
  std::vector<Tree> children;
  std::optional<std::string> label;
};

}  // namespace

template <>
struct executor_exporter::codec_traits<Tree> {
  static void encode(Encoder& e, const Tree& t) {
    executor_exporter::encode(e, t.children);
    executor_exporter::encode(e, t.label);
  }
  static Tree decode(Decoder& d) {
    Tree t;
    t.children = executor_exporter::decode<std::vector<Tree>>(d);
    t.label = executor_exporter::decode<std::optional<std::string>>(d);
    return t;
  }
};

namespace {

#define FUZZ_CHECK(cond)                                                                        \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::fprintf(stderr, "fuzz invariant violated: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)

using ResultTuple =
    std::tuple<std::int64_t, std::optional<double>,
               std::variant<std::monostate, std::string, std::vector<std::uint32_t>>, bool>;

// Decodes `bytes` as a whole T; if that succeeds, re-encoding must give the
// same bytes back. Only the library's error type may escape decode.
template <class T>
void decode_canonical(std::string_view bytes) {
  try {
    const T value = ee::decode_message<T>(bytes);
    FUZZ_CHECK(ee::encode_to_string(value) == bytes);
  } catch (const ee::CodecError&) {
  }
}

template <class T>
void decode_only(std::string_view bytes) {
  try {
    (void)ee::decode_message<T>(bytes);
  } catch (const ee::CodecError&) {
  }
}

void decode_values(std::string_view bytes) {
  decode_canonical<std::string>(bytes);
  decode_canonical<std::vector<std::string>>(bytes);
  decode_canonical<std::map<std::string, std::int64_t>>(bytes);
  decode_canonical<ResultTuple>(bytes);
  decode_canonical<std::vector<std::vector<std::string>>>(bytes);
  decode_canonical<Tree>(bytes);
  decode_only<std::unordered_map<std::string, std::int64_t>>(bytes);
}

void decode_payload(const eed::Frame& frame) {
  const std::string original = eed::encode_frame(frame.kind, frame.task_id, frame.payload);
  try {
    switch (frame.kind) {
      case eed::FrameKind::kHello: {
        const auto h = eed::decode_hello(frame);
        // Hello frames are always written with task id 0; compare payloads.
        FUZZ_CHECK(eed::encode_hello_frame(h.pid, h.initializer_ok, h.message)
                       .substr(eed::kFrameHeaderSize) == frame.payload);
        break;
      }
      case eed::FrameKind::kTask: {
        const auto t = eed::decode_task(frame);
        FUZZ_CHECK(eed::encode_task_frame(frame.task_id, t.function, t.args) == original);
        try {
          const auto [names, counts] =
              ee::decode_all<std::vector<std::string>, std::map<std::string, std::int64_t>>(t.args);
          FUZZ_CHECK(ee::encode_to_string(names, counts) == t.args);
        } catch (const ee::CodecError&) {
        }
        decode_values(t.args);
        break;
      }
      case eed::FrameKind::kResult: {
        const auto r = eed::decode_result(frame);
        FUZZ_CHECK(eed::encode_result_frame(frame.task_id, r.value, r.start_ns, r.end_ns,
                                            r.cpu_ns) == original);
        decode_values(r.value);
        break;
      }
      case eed::FrameKind::kError: {
        const auto e = eed::decode_error(frame);
        FUZZ_CHECK(eed::encode_error_frame(frame.task_id, e.type_name, e.what, e.start_ns, e.end_ns,
                                           e.cpu_ns) == original);
        break;
      }
      case eed::FrameKind::kShutdown:
        break;
    }
  } catch (const ee::CodecError&) {
  }
}

struct Outcome {
  std::vector<eed::Frame> frames;
  bool failed = false;
  std::size_t buffered = 0;
};

// Small deterministic PRNG (splitmix64) for chunk sizes, seeded from the input
// so every run of the same input splits it the same way.
struct SplitMix {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

Outcome run_decoder(std::string_view input, std::size_t max_payload, SplitMix* rng) {
  Outcome out;
  eed::FrameDecoder dec(max_payload);
  try {
    std::size_t at = 0;
    do {
      std::size_t chunk = input.size() - at;
      if (rng != nullptr) {
        const std::uint64_t r = rng->next();
        // Mostly tiny reads (down to single bytes), sometimes large ones.
        chunk = std::min<std::size_t>(chunk, (r & 3) == 0 ? (r >> 8) % 4096 : 1 + (r >> 8) % 24);
      }
      dec.feed(input.substr(at, chunk));
      at += chunk;
      while (auto frame = dec.next()) {
        FUZZ_CHECK(frame->payload.size() <= max_payload);
        out.frames.push_back(std::move(*frame));
      }
    } while (at < input.size());
    out.buffered = dec.buffered_bytes();
    FUZZ_CHECK(dec.buffered_bytes() < eed::kFrameHeaderSize + max_payload);
    try {
      dec.expect_end();
      FUZZ_CHECK(out.buffered == 0);
    } catch (const eed::FrameError&) {
      FUZZ_CHECK(out.buffered != 0);
    }
  } catch (const eed::FrameError&) {
    out.failed = true;
    FUZZ_CHECK(dec.failed());
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  std::uint64_t seed = 1469598103934665603ULL;  // FNV-1a over the input
  for (unsigned char c : input) seed = (seed ^ c) * 1099511628211ULL;
  SplitMix rng{seed};

  // Alternate between the default limit and a tiny one so the size check is
  // hit by short inputs too.
  const std::size_t max_payload = (seed & 1) ? eed::FrameDecoder::kDefaultMaxPayload : 64;

  const Outcome whole = run_decoder(input, max_payload, nullptr);
  const Outcome chunked = run_decoder(input, max_payload, &rng);
  FUZZ_CHECK(whole.frames == chunked.frames);
  FUZZ_CHECK(whole.failed == chunked.failed);
  FUZZ_CHECK(whole.buffered == chunked.buffered);

  for (const auto& frame : whole.frames) decode_payload(frame);

  // The codec on its own, without a frame around it.
  decode_values(input);
  return 0;
}
