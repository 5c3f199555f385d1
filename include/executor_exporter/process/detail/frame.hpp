// Framing between the process pool's parent and its fork()ed workers.
//
// Why frames: a pipe or socketpair is a byte stream, and nonblocking reads
// return arbitrary slices of it. Every message therefore carries a fixed
// 17-byte header that says what it is, which task it belongs to and how long
// its payload is, so the reader can reassemble messages from any split and can
// detect a desynchronized or corrupt stream (wrong magic, unknown kind, absurd
// length) before trusting or allocating anything.
//
// Header, little-endian, no padding:
//   uint32 magic        kFrameMagic; encodes the protocol version
//   uint8  kind         FrameKind
//   uint64 task id      0 for Hello and Shutdown
//   uint32 payload size bytes that follow the header
//
// Payloads (encoded with executor_exporter::codec):
//   Hello     int64 pid, bool initializer_ok, std::string message
//   Task      uint64 function pointer, then the encoded arguments (rest of payload)
//   Result    uint64 start_ns, uint64 end_ns, uint64 cpu_ns, then the encoded value
//             (rest of payload)
//   Error     uint64 start_ns, uint64 end_ns, uint64 cpu_ns, std::string type name,
//             std::string what()
// cpu_ns is the worker's CPU time over the task when ExporterOptions::task_cpu_time is on,
// else 0: one fixed layout, so the option changes no parsing.
//   Shutdown  empty
#pragma once

#include <time.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <executor_exporter/process/codec.hpp>

namespace executor_exporter::detail {

/// Thrown when the byte stream cannot be split into valid frames (bad magic,
/// unknown kind, oversized payload, a stream that ends mid-frame) or a frame
/// has the wrong kind for the typed decoder it is given. It derives from
/// CodecError so that the pool can treat every wire-level failure of a worker
/// the same way (kill the worker, fail its task) with a single catch clause.
class FrameError : public CodecError {
 public:
  using CodecError::CodecError;
};

/// 'E','X','F' followed by the protocol version byte 2, read as a
/// little-endian uint32. Bump the last byte whenever the wire format changes
/// so that mismatched builds fail loudly instead of misreading each other.
inline constexpr std::uint32_t kFrameMagic = 0x02465845;
inline constexpr std::size_t kFrameHeaderSize = 4 + 1 + 8 + 4;

/// What a frame carries. The values are wire-visible; never renumber them.
enum class FrameKind : std::uint8_t {
  kHello = 1,     ///< child -> parent: started, pid, initializer outcome
  kTask = 2,      ///< parent -> child: function pointer + encoded arguments
  kResult = 3,    ///< child -> parent: encoded return value + timing
  kError = 4,     ///< child -> parent: exception type name + what() + timing
  kShutdown = 5,  ///< parent -> child: finish and exit
};

/// Human-readable kind name for error messages and logs.
inline const char* frame_kind_name(FrameKind kind) noexcept {
  switch (kind) {
    case FrameKind::kHello:
      return "Hello";
    case FrameKind::kTask:
      return "Task";
    case FrameKind::kResult:
      return "Result";
    case FrameKind::kError:
      return "Error";
    case FrameKind::kShutdown:
      return "Shutdown";
  }
  return "unknown";
}

inline bool is_known_frame_kind(std::uint8_t kind) noexcept {
  return kind >= static_cast<std::uint8_t>(FrameKind::kHello) &&
         kind <= static_cast<std::uint8_t>(FrameKind::kShutdown);
}

/// One complete, header-validated frame. The payload is owned so that a frame
/// can outlive the read buffer it was assembled from.
struct Frame {
  FrameKind kind = FrameKind::kShutdown;
  std::uint64_t task_id = 0;
  std::string payload;

  friend bool operator==(const Frame&, const Frame&) = default;
};

/// Typed payloads. `args` and `value` stay encoded because only the code that
/// knows the function's signature can decode them.
struct HelloMessage {
  std::int64_t pid = 0;
  bool initializer_ok = true;
  std::string message;  ///< initializer failure text; empty on success
};
/// A frame inside FrameDecoder's buffer, valid until the decoder's next feed() or
/// next()/next_view(): read without copying the payload.
struct FrameView {
  FrameKind kind = FrameKind::kShutdown;
  std::uint64_t task_id = 0;
  std::string_view payload;

  Frame copy() const { return Frame{kind, task_id, std::string(payload)}; }
};

struct TaskMessage {
  std::uint64_t function = 0;  ///< see function_to_wire / function_from_wire
  std::string args;            ///< encode_to_string(args...)
};
struct ResultMessage {
  std::string value;  ///< encode_to_string(result); empty for a void task (std::monostate)
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint64_t cpu_ns = 0;  ///< the task's CPU time with task_cpu_time, else 0
};
struct ErrorMessage {
  std::string type_name;
  std::string what;
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint64_t cpu_ns = 0;
};

/// CLOCK_MONOTONIC in nanoseconds: the clock the child stamps task start and
/// end with. Parent and forked children share it, so the values are directly
/// comparable with the parent's own monotonic readings.
inline std::uint64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Converts a function pointer to the uint64 carried by a Task frame. This is
/// only meaningful because workers are fork()ed without exec: parent and child
/// run the same image at the same addresses. Never send one to a process that
/// was not forked from the sender.
template <class F>
std::uint64_t function_to_wire(F* fn) noexcept {
  static_assert(std::is_function_v<F>, "function_to_wire takes a pointer to a function");
  return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(fn));
}

/// The inverse of function_to_wire, e.g.
/// `function_from_wire<void (*)(Decoder&, Encoder&)>(msg.function)`.
template <class FnPtr>
FnPtr function_from_wire(std::uint64_t bits) noexcept {
  static_assert(std::is_pointer_v<FnPtr> && std::is_function_v<std::remove_pointer_t<FnPtr>>,
                "function_from_wire<FnPtr>: FnPtr must be a pointer-to-function type");
  return reinterpret_cast<FnPtr>(static_cast<std::uintptr_t>(bits));
}

/// Builds one frame: header plus payload in a single allocation. Throws
/// FrameError if the payload does not fit the 32-bit length field; a limit
/// below that (the reader's max_payload) is the caller's policy to check.
inline std::string encode_frame(FrameKind kind, std::uint64_t task_id, std::string_view payload) {
  if (payload.size() > std::numeric_limits<std::uint32_t>::max()) {
    throw FrameError("frame: payload of " + std::to_string(payload.size()) +
                     " bytes does not fit the 32-bit length field");
  }
  std::string out;
  out.reserve(kFrameHeaderSize + payload.size());
  Encoder e(std::move(out));
  e.write_uint<std::uint32_t>(kFrameMagic);
  e.write_uint<std::uint8_t>(static_cast<std::uint8_t>(kind));
  e.write_uint<std::uint64_t>(task_id);
  e.write_uint<std::uint32_t>(static_cast<std::uint32_t>(payload.size()));
  e.write_bytes(payload.data(), payload.size());
  return e.take();
}

/// A frame written in place, for the per-task frames on the hot path: the header
/// (and any fixed words after it) is reserved first, the payload is appended by the
/// caller straight into the same buffer, and seal_frame() fills the header in once the
/// length is known. One buffer per frame instead of one for the arguments, one for
/// the payload and one for the frame.
inline constexpr std::size_t kResultPrefixSize = kFrameHeaderSize + 3 * sizeof(std::uint64_t);

/// A buffer holding a Task frame's header space and its function word; append the
/// encoded arguments (user word first), then seal_frame(buffer, FrameKind::kTask, id).
inline std::string start_task_frame(std::uint64_t function, std::size_t expected_args = 32) {
  std::string out;
  out.reserve(kFrameHeaderSize + sizeof(std::uint64_t) + expected_args);
  out.resize(kFrameHeaderSize);
  Encoder e(std::move(out));
  e.write_uint<std::uint64_t>(function);
  return e.take();
}

/// Writes the header of a frame built in place: everything after the first
/// kFrameHeaderSize bytes of `frame` is its payload. Throws FrameError if the payload
/// does not fit the 32-bit length field.
inline void seal_frame(std::string& frame, FrameKind kind, std::uint64_t task_id) {
  const std::size_t payload = frame.size() - kFrameHeaderSize;
  if (payload > std::numeric_limits<std::uint32_t>::max()) {
    throw FrameError("frame: payload of " + std::to_string(payload) +
                     " bytes does not fit the 32-bit length field");
  }
  Encoder e;
  e.write_uint<std::uint32_t>(kFrameMagic);
  e.write_uint<std::uint8_t>(static_cast<std::uint8_t>(kind));
  e.write_uint<std::uint64_t>(task_id);
  e.write_uint<std::uint32_t>(static_cast<std::uint32_t>(payload));
  std::memcpy(frame.data(), e.buffer().data(), kFrameHeaderSize);
}

/// Seals a Result frame built in place: `frame` starts with kResultPrefixSize bytes
/// of room (header, start, end, CPU) followed by the encoded value.
inline void seal_result_frame(std::string& frame, std::uint64_t task_id, std::uint64_t start_ns,
                              std::uint64_t end_ns, std::uint64_t cpu_ns = 0) {
  Encoder e;
  e.write_uint<std::uint64_t>(start_ns);
  e.write_uint<std::uint64_t>(end_ns);
  e.write_uint<std::uint64_t>(cpu_ns);
  std::memcpy(frame.data() + kFrameHeaderSize, e.buffer().data(), 3 * sizeof(std::uint64_t));
  seal_frame(frame, FrameKind::kResult, task_id);
}

/// Hello: sent once by a worker right after fork (and after running the pool
/// initializer), so the parent learns the pid and whether the worker is usable.
inline std::string encode_hello_frame(std::int64_t pid, bool initializer_ok,
                                      std::string_view message) {
  Encoder e;
  encode(e, pid);
  encode(e, initializer_ok);
  e.write_length(message.size());
  e.write_bytes(message.data(), message.size());
  return encode_frame(FrameKind::kHello, 0, e.buffer());
}

/// Task: `args` is the already encoded argument list (encode_to_string).
inline std::string encode_task_frame(std::uint64_t task_id, std::uint64_t function,
                                     std::string_view args) {
  std::string payload;
  payload.reserve(sizeof(std::uint64_t) + args.size());
  Encoder e(std::move(payload));
  e.write_uint<std::uint64_t>(function);
  e.write_bytes(args.data(), args.size());
  return encode_frame(FrameKind::kTask, task_id, e.buffer());
}

/// Result: `value` is the already encoded return value. The timestamps come
/// first so the variable-length value can simply be the rest of the payload.
inline std::string encode_result_frame(std::uint64_t task_id, std::string_view value,
                                       std::uint64_t start_ns, std::uint64_t end_ns,
                                       std::uint64_t cpu_ns = 0) {
  std::string payload;
  payload.reserve(3 * sizeof(std::uint64_t) + value.size());
  Encoder e(std::move(payload));
  e.write_uint<std::uint64_t>(start_ns);
  e.write_uint<std::uint64_t>(end_ns);
  e.write_uint<std::uint64_t>(cpu_ns);
  e.write_bytes(value.data(), value.size());
  return encode_frame(FrameKind::kResult, task_id, e.buffer());
}

/// Error: the task threw. Only the type name and message cross the process
/// boundary; the parent re-raises them as its own exception type.
inline std::string encode_error_frame(std::uint64_t task_id, std::string_view type_name,
                                      std::string_view what, std::uint64_t start_ns,
                                      std::uint64_t end_ns, std::uint64_t cpu_ns = 0) {
  Encoder e;
  e.write_uint<std::uint64_t>(start_ns);
  e.write_uint<std::uint64_t>(end_ns);
  e.write_uint<std::uint64_t>(cpu_ns);
  e.write_length(type_name.size());
  e.write_bytes(type_name.data(), type_name.size());
  e.write_length(what.size());
  e.write_bytes(what.data(), what.size());
  return encode_frame(FrameKind::kError, task_id, e.buffer());
}

/// Shutdown: asks a worker to exit after its current task.
inline std::string encode_shutdown_frame() { return encode_frame(FrameKind::kShutdown, 0, {}); }

inline void expect_frame_kind(const Frame& frame, FrameKind expected) {
  if (frame.kind != expected) {
    throw FrameError(std::string("frame: expected a ") + frame_kind_name(expected) +
                     " frame but got " + frame_kind_name(frame.kind) + " (task id " +
                     std::to_string(frame.task_id) + ")");
  }
}

/// Typed decoders. Each checks the kind (FrameError) and the payload layout
/// (CodecError, including trailing bytes where the layout has a fixed end).
inline HelloMessage decode_hello(const Frame& frame) {
  expect_frame_kind(frame, FrameKind::kHello);
  Decoder d(frame.payload);
  HelloMessage out;
  out.pid = decode<std::int64_t>(d);
  out.initializer_ok = decode<bool>(d);
  out.message = decode<std::string>(d);
  d.expect_end();
  return out;
}

/// Takes the frame by value so that a caller who moves it in gets the
/// arguments without copying them.
inline TaskMessage decode_task(Frame frame) {
  expect_frame_kind(frame, FrameKind::kTask);
  Decoder d(frame.payload);
  TaskMessage out;
  out.function = d.read_uint<std::uint64_t>("Task function pointer");
  frame.payload.erase(0, d.position());
  out.args = std::move(frame.payload);
  return out;
}

/// By value for the same reason as decode_task: results can be large.
inline ResultMessage decode_result(Frame frame) {
  expect_frame_kind(frame, FrameKind::kResult);
  Decoder d(frame.payload);
  ResultMessage out;
  out.start_ns = d.read_uint<std::uint64_t>("Result start_ns");
  out.end_ns = d.read_uint<std::uint64_t>("Result end_ns");
  out.cpu_ns = d.read_uint<std::uint64_t>("Result cpu_ns");
  frame.payload.erase(0, d.position());
  out.value = std::move(frame.payload);
  return out;
}

/// A Task or Result frame read in place (FrameDecoder::next_view): the same layout
/// checks as decode_task / decode_result, without copying the payload.
struct TaskView {
  std::uint64_t function = 0;
  std::string_view args;
};
struct ResultView {
  std::string_view value;
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint64_t cpu_ns = 0;
};

inline TaskView decode_task(const FrameView& frame) {
  expect_frame_kind(Frame{frame.kind, frame.task_id, {}}, FrameKind::kTask);
  Decoder d(frame.payload);
  TaskView out;
  out.function = d.read_uint<std::uint64_t>("Task function pointer");
  out.args = frame.payload.substr(d.position());
  return out;
}

inline ResultView decode_result(const FrameView& frame) {
  expect_frame_kind(Frame{frame.kind, frame.task_id, {}}, FrameKind::kResult);
  Decoder d(frame.payload);
  ResultView out;
  out.start_ns = d.read_uint<std::uint64_t>("Result start_ns");
  out.end_ns = d.read_uint<std::uint64_t>("Result end_ns");
  out.cpu_ns = d.read_uint<std::uint64_t>("Result cpu_ns");
  out.value = frame.payload.substr(d.position());
  return out;
}

inline ErrorMessage decode_error(const Frame& frame) {
  expect_frame_kind(frame, FrameKind::kError);
  Decoder d(frame.payload);
  ErrorMessage out;
  out.start_ns = d.read_uint<std::uint64_t>("Error start_ns");
  out.end_ns = d.read_uint<std::uint64_t>("Error end_ns");
  out.cpu_ns = d.read_uint<std::uint64_t>("Error cpu_ns");
  out.type_name = decode<std::string>(d);
  out.what = decode<std::string>(d);
  d.expect_end();
  return out;
}

/// Reassembles frames from a byte stream delivered in arbitrary pieces (one
/// byte at a time works). Memory held is what has arrived and not yet been
/// returned as frames: a header's declared length is never reserved up front,
/// so a corrupt or hostile length cannot make the reader allocate more than
/// the bytes actually received. Headers are validated as soon as they are
/// complete, before any of their payload is waited for. After a FrameError the
/// stream is unrecoverable (frame boundaries are lost), so the decoder stays
/// failed and rethrows the same error on every later call.
class FrameDecoder {
 public:
  static constexpr std::size_t kDefaultMaxPayload = std::size_t{64} << 20;

  explicit FrameDecoder(std::size_t max_payload = kDefaultMaxPayload) noexcept
      : max_payload_(max_payload) {}

  /// Appends bytes from a read; call next() until it returns nullopt
  /// afterwards. Does not parse, so it only throws (the stored FrameError) if
  /// the decoder has already failed.
  void feed(std::span<const std::byte> bytes) {
    feed(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  void feed(std::string_view bytes) {
    if (error_) throw FrameError(*error_);
    compact();
    if (!bytes.empty()) buf_.append(bytes.data(), bytes.size());
  }

  /// Returns the next complete frame, or nullopt if more bytes are needed.
  /// Throws FrameError for bad magic, an unknown kind or a payload above
  /// max_payload(), as soon as the offending header has fully arrived.
  std::optional<Frame> next() {
    const auto header = complete_header();
    if (!header) return std::nullopt;
    const auto [kind, task_id, length] = *header;

    Frame frame;
    frame.kind = kind;
    frame.task_id = task_id;
    const std::size_t begin = pos_ + kFrameHeaderSize;
    if (begin + length == buf_.size() && length >= buf_.size() / 2) {
      // This frame ends the buffer and dominates it: hand over the storage
      // instead of copying what may be a large payload.
      frame.payload = std::move(buf_);
      frame.payload.erase(0, begin);
      buf_ = std::string();
      pos_ = 0;
    } else {
      frame.payload.assign(buf_, begin, length);
      pos_ = begin + length;
    }
    consumed_ += kFrameHeaderSize + length;
    return frame;
  }

  /// next() without the copy: the frame's payload stays in the decoder's buffer, so
  /// the view is valid only until the next feed(), next() or next_view(). The hot
  /// path (tasks in the worker, results in the parent) reads frames this way.
  std::optional<FrameView> next_view() {
    const auto header = complete_header();
    if (!header) return std::nullopt;
    const auto [kind, task_id, length] = *header;
    const std::size_t begin = pos_ + kFrameHeaderSize;
    pos_ = begin + length;
    consumed_ += kFrameHeaderSize + length;
    return FrameView{kind, task_id, std::string_view(buf_).substr(begin, length)};
  }

  /// Call when the peer closed the stream: throws FrameError if it ended in
  /// the middle of a frame (a worker that died while writing).
  void expect_end() const {
    if (error_) throw FrameError(*error_);
    if (buffered_bytes() != 0) {
      throw FrameError("frame: stream ended in the middle of a frame (" +
                       std::to_string(buffered_bytes()) + " byte(s) buffered at stream offset " +
                       std::to_string(consumed_) + ")");
    }
  }

  /// Bytes received but not yet returned as frames.
  std::size_t buffered_bytes() const noexcept { return buf_.size() - pos_; }
  /// Memory currently held by the reassembly buffer, for tests and metrics.
  std::size_t buffer_capacity() const noexcept { return buf_.capacity(); }
  std::size_t max_payload() const noexcept { return max_payload_; }
  bool failed() const noexcept { return error_.has_value(); }

 private:
  struct Header {
    FrameKind kind;
    std::uint64_t task_id;
    std::size_t length;
  };

  // The next frame's header once the whole frame has arrived; nullopt while bytes are
  // missing. Throws FrameError for bad magic, an unknown kind or a payload above
  // max_payload(), as soon as the offending header has fully arrived.
  std::optional<Header> complete_header() {
    if (error_) throw FrameError(*error_);
    const std::size_t available = buf_.size() - pos_;
    if (available < kFrameHeaderSize) return std::nullopt;
    Decoder header(std::string_view(buf_).substr(pos_, kFrameHeaderSize));
    const auto magic = header.read_uint<std::uint32_t>();
    const auto kind = header.read_uint<std::uint8_t>();
    const auto task_id = header.read_uint<std::uint64_t>();
    const auto length = header.read_uint<std::uint32_t>();
    if (magic != kFrameMagic) {
      fail("bad magic 0x" + hex(magic) + " (expected 0x" + hex(kFrameMagic) +
           "): the stream is desynchronized or the peer speaks a different protocol version");
    }
    if (!is_known_frame_kind(kind)) {
      fail("unknown frame kind " + std::to_string(kind) + " (task id " + std::to_string(task_id) +
           ")");
    }
    if (length > max_payload_) {
      fail(std::string(frame_kind_name(static_cast<FrameKind>(kind))) + " frame for task id " +
           std::to_string(task_id) + " declares a payload of " + std::to_string(length) +
           " bytes, above the limit of " + std::to_string(max_payload_));
    }
    if (available - kFrameHeaderSize < length) return std::nullopt;
    return Header{static_cast<FrameKind>(kind), task_id, length};
  }

  static std::string hex(std::uint32_t v) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out(8, '0');
    for (int i = 7; i >= 0; --i, v >>= 4) out[static_cast<std::size_t>(i)] = kDigits[v & 0xF];
    return out;
  }

  [[noreturn]] void fail(const std::string& message) {
    error_ = "frame: " + message + " (at stream offset " + std::to_string(consumed_) + ")";
    throw FrameError(*error_);
  }

  // Drops already returned frames from the front of the buffer. Done before
  // appending, so the cost is amortized and a large buffer left over from a
  // big frame is released rather than kept for the rest of the stream.
  void compact() {
    if (pos_ == 0) return;
    if (pos_ == buf_.size()) {
      if (buf_.capacity() > kRetainCapacity) {
        buf_ = std::string();
      } else {
        buf_.clear();
      }
      pos_ = 0;
    } else if (pos_ >= buf_.size() / 2) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
  }

  static constexpr std::size_t kRetainCapacity = std::size_t{1} << 20;

  std::string buf_;
  std::size_t pos_ = 0;         // start of the first unreturned byte in buf_
  std::uint64_t consumed_ = 0;  // stream offset of buf_[pos_], for messages
  std::size_t max_payload_;
  std::optional<std::string> error_;
};

}  // namespace executor_exporter::detail
