// Writes the fuzz target's seed corpus: one file per message type, each a chunk-size byte (the target's
// first input byte) followed by a valid frame built with the protocol's own encoders, plus a few streams
// of several frames. Mutations of valid frames reach the payload decoders at once; random bytes rarely get
// past the header check. The output is committed as corpus/; rerun after a message changes:
//   build/fuzz/bin/kiln_agent_frame_seed_corpus src/agent/protocol/fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"

namespace {

using namespace kiln::agent;  // NOLINT(google-build-using-namespace): a small generator
using kiln::ErrorCategory;
using kiln::ExitStatus;

struct Seed {
  std::string name;
  std::string frames;
};

std::string frame(MessageType type, StreamId stream, std::string_view payload) {
  std::string out;
  append_frame(out, type, stream, payload);
  return out;
}

std::vector<Seed> seeds() {
  ProcessSpec spec{.argv = {"sh", "-c", "echo hi"}, .env = std::vector<std::string>{"A=1"}, .cwd = "/tmp"};
  spec.uid = 1000;
  spec.gid = 1000;
  spec.tty = true;
  HelloReply reply{.agent = "kiln-agent 0.1.0", .capabilities = {"tty", "mount"}};
  reply.root = RootDiskStatus{.serial = "kiln-disk0", .device = "/dev/vda", .mounted = true};
  std::vector<Seed> out = {
      {"hello", frame(MessageType::kHello, 0, encode(HelloRequest{.peer = "kiln 0.1.0"}))},
      {"hello-reply", frame(MessageType::kHelloReply, 0, encode(reply))},
      {"ping", frame(MessageType::kPing, 0, "ping")},
      {"shutdown", frame(MessageType::kShutdown, 0, encode(ShutdownRequest{.reboot = true}))},
      {"error", frame(MessageType::kError, 1, encode(ErrorReply{ErrorCategory::kNotFound, "exec x: gone"}))},
      {"run", frame(MessageType::kRun, 1, encode(spec))},
      {"started", frame(MessageType::kStarted, 1, encode(ProcessStarted{.pid = 42}))},
      {"exit-code", frame(MessageType::kExit, 1, encode(ExitStatus::exited(3)))},
      {"exit-signal", frame(MessageType::kExit, 1, encode(ExitStatus::signaled(9)))},
      {"signal", frame(MessageType::kSignal, 1, encode(SignalRequest{15}))},
      {"resize", frame(MessageType::kResize, 1, encode(TtySize{40, 100}))},
      {"close-stdin", frame(MessageType::kCloseStdin, 1, "")},
      {"stdin", frame(MessageType::kStdin, 1, "input bytes")},
      {"credit", frame(MessageType::kCredit, 1, encode(CreditGrant{DataChannel::kStdout, 4096}))},
      {"mount", frame(MessageType::kMount, 2,
                      encode(MountRequest{.source = "kilnshare0",
                                          .target = "/mnt/hgfs/a",
                                          .fstype = "9p",
                                          .options = "trans=virtio",
                                          .read_only = true}))},
      {"unmount", frame(MessageType::kUnmount, 3, encode(UnmountRequest{.target = "/mnt/hgfs/a"}))},
      {"set-clock",
       frame(MessageType::kSetClock, 4, encode(SetClockRequest{.unix_nanos = 1700000000000000000}))},
      {"set-hostname", frame(MessageType::kSetHostname, 5, encode(SetHostnameRequest{.hostname = "web-1"}))},
  };
  std::string session;
  for (const auto& seed : out) session += seed.frames;
  out.push_back({"session", session});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  std::filesystem::path dir(argv[1]);
  std::filesystem::create_directories(dir);
  for (const auto& seed : seeds()) {
    // Chunk-size byte: 63 feeds whole 64-byte chunks; "session" also gets a 1-byte-chunk variant.
    for (char chunk : seed.name == "session" ? std::string("\x3f\x00", 2) : std::string("\x3f")) {
      std::string name = seed.name + (chunk == 0 ? "-bytewise" : "");
      std::ofstream file(dir / name, std::ios::binary | std::ios::trunc);
      file << chunk << seed.frames;
      if (!file.flush()) {
        std::perror(name.c_str());
        return 1;
      }
    }
  }
  return 0;
}
