// The worker process of the process pool: forked by the zygote, it runs the tasks the
// parent sends over its socket, one at a time, and names the running one in its shared
// slot so the parent knows what a crash interrupted.
#include "process_internal.hpp"

namespace executor_exporter::detail::process {

namespace {
// A reply buffer grown by one large result is given back rather than kept.
constexpr std::size_t kKeptReplyBytes = std::size_t{1} << 20;
// What a Result or Error frame's payload spends before its value or text: start, end and
// CPU time (a Task frame spends kMessageOverhead).
constexpr std::size_t kResultOverhead = kResultPrefixSize - kFrameHeaderSize;
}  // namespace

[[noreturn]] void worker_main(int channel, std::uint32_t index, const ZygoteConfig& cfg,
                              WorkerSlot* slots, pid_t zygote) {
  keep_only(channel);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != zygote) child_exit(kExitIo);
  char name[16];
  std::snprintf(name, sizeof name, "ee-worker-%u", index);
  ::prctl(PR_SET_NAME, name);
  WorkerSlot& me = slots[index];
  me.task_id.store(0);

  if (cfg.memory_limit != 0) {
    const std::uint64_t base = read_statm_field(0, 0);
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = static_cast<rlim_t>(base + cfg.memory_limit);
    ::setrlimit(RLIMIT_AS, &lim);
  }

  bool init_ok = true;
  std::string init_message;
  if (cfg.initializer != 0) {
    try {
      function_from_wire<void (*)()>(cfg.initializer)();
    } catch (...) {
      auto [type, what] = describe_current_exception();
      init_ok = false;
      init_message = type + (what.empty() ? "" : ": " + what);
    }
  }
  const std::size_t limit = static_cast<std::size_t>(cfg.max_message);
  {
    // The parent reads with the same limit: a huge initializer message is cut, not fatal.
    if (init_message.size() > limit / 2) init_message.resize(limit / 2);
    const std::string hello = encode_hello_frame(::getpid(), init_ok, init_message);
    if (!send_all(kWorkerFd, hello.data(), hello.size())) child_exit(kExitIo);
  }
  if (!init_ok) child_exit(0);

  // The parent refuses larger tasks at submit; this only guards the stream.
  FrameDecoder decoder(limit);
  std::vector<char> buf(64 * 1024);
  // The reply is encoded in place after its header's room (seal_result_frame) and the
  // buffer is kept from task to task: no allocation per task for a small result.
  std::string reply;
  std::uint64_t done = 0;
  for (;;) {
    const ssize_t n = ::read(kWorkerFd, buf.data(), buf.size());
    if (n == 0) child_exit(0);
    if (n < 0) {
      if (errno == EINTR) continue;
      child_exit(kExitIo);
    }
    try {
      decoder.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
      while (auto frame = decoder.next_view()) {
        if (frame->kind == FrameKind::kShutdown) child_exit(0);
        const std::uint64_t id = frame->task_id;
        const TaskView task = decode_task(*frame);
        Decoder d(task.args);
        const std::uint64_t user = d.read_uint<std::uint64_t>("task function");
        const std::string_view args = task.args.substr(d.position());
        const auto trampoline = function_from_wire<ProcessTrampoline>(task.function);

        const std::uint64_t start = monotonic_ns();
        me.start_ns.store(start);
        me.task_id.store(id);
        // Only with task_cpu_time: each read is a system call.
        const std::uint64_t cpu_start = cfg.task_cpu_time != 0 ? own_cpu_ns() : 0;
        auto cpu_used = [&] { return cfg.task_cpu_time != 0 ? own_cpu_ns() - cpu_start : 0; };
        try {
          try {
            if (reply.capacity() > kKeptReplyBytes) reply = std::string();
            reply.assign(kResultPrefixSize, '\0');
            trampoline(user, args, reply);
            const std::size_t size = reply.size() - kResultPrefixSize;
            const std::uint64_t cpu = cpu_used();
            if (size > limit - kResultOverhead) {
              // The parent would refuse the frame and take this worker for broken: only
              // the task fails, with the reason and the option to change.
              reply = std::string();  // gives the memory back now
              throw MessageTooLargeError("the task's result encodes to " + std::to_string(size) +
                                         " bytes, a message of " +
                                         std::to_string(size + kResultOverhead) +
                                         " bytes, above ProcessPoolOptions::max_message_bytes (" +
                                         std::to_string(limit) + " bytes)");
            }
            seal_result_frame(reply, id, start, monotonic_ns(), cpu);
          } catch (const std::bad_alloc&) {
            if (cfg.memory_limit != 0) child_exit(kExitMemory);
            throw;
          }
        } catch (...) {
          const std::uint64_t end = monotonic_ns();
          const std::uint64_t cpu = cpu_used();
          auto [type, what] = describe_current_exception();
          // An exception's text must fit one message too (the limit is at least 1 KiB).
          if (type.size() > 256) type.resize(256);
          const std::size_t room = limit - kResultOverhead - 2 * 8 - type.size();
          if (what.size() > room) what.resize(room);
          reply = encode_error_frame(id, type, what, start, end, cpu);
        }
        if (!send_all(kWorkerFd, reply.data(), reply.size())) child_exit(kExitIo);
        me.task_id.store(0);
        if (cfg.max_tasks_per_child != 0 && ++done >= cfg.max_tasks_per_child) child_exit(0);
      }
    } catch (const std::bad_alloc&) {
      child_exit(cfg.memory_limit != 0 ? kExitMemory : kExitIo);
    } catch (...) {
      child_exit(kExitProtocol);
    }
  }
}

}  // namespace executor_exporter::detail::process
