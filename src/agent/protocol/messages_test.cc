#include "agent/protocol/messages.h"

#include <gtest/gtest.h>

#include "agent/protocol/frame.h"

namespace kiln::agent {
namespace {

TEST(AgentMessages, HelloRoundTrip) {
  auto request = decode_hello_request(encode(HelloRequest{{1, 3}, "kiln 0.1.0"}));
  ASSERT_TRUE(request.has_value()) << request.error().message();
  EXPECT_EQ(request->version, (ProtocolVersion{1, 3}));
  EXPECT_EQ(request->peer, "kiln 0.1.0");

  auto reply = decode_hello_reply(encode(HelloReply{kProtocolVersion, "kiln-agent", {"tty", "signal"}}));
  ASSERT_TRUE(reply.has_value()) << reply.error().message();
  EXPECT_EQ(reply->version, kProtocolVersion);
  EXPECT_EQ(reply->capabilities, (std::vector<std::string>{"tty", "signal"}));
}

TEST(AgentMessages, HelloWithoutVersionIsRejected) {
  EXPECT_FALSE(decode_hello_request(R"({"peer":"x"})").has_value());
  EXPECT_FALSE(decode_hello_request(R"({"version":{"major":-1,"minor":0}})").has_value());
  EXPECT_FALSE(decode_hello_request("not json").has_value());
}

TEST(AgentMessages, ProcessSpecRoundTrip) {
  ProcessSpec spec{.argv = {"sh", "-c", "echo hi"},
                   .env = std::vector<std::string>{"A=1", "PATH=/bin"},
                   .cwd = "/tmp",
                   .uid = 1000,
                   .gid = 100,
                   .tty = true,
                   .size = {50, 132}};
  auto decoded = decode_process_spec(encode(spec));
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message();
  EXPECT_EQ(decoded->argv, spec.argv);
  EXPECT_EQ(decoded->env, spec.env);
  EXPECT_EQ(decoded->cwd, "/tmp");
  EXPECT_EQ(decoded->uid, 1000u);
  EXPECT_EQ(decoded->gid, 100u);
  EXPECT_TRUE(decoded->tty);
  EXPECT_EQ(decoded->size, (TtySize{50, 132}));
}

TEST(AgentMessages, ContainerProcessSpecRoundTrip) {
  ProcessSpec spec{.argv = {"sh"},
                   .container = ContainerSpec{.root = "/run/kiln/containers/abc/rootfs",
                                              .hostname = "web",
                                              .capabilities = {"CAP_CHOWN", "CAP_KILL"},
                                              .privileged = false,
                                              .read_only_root = true,
                                              .user = "app:staff",
                                              .files = {{"etc/hostname", "web\n"}, {"etc/hosts", ""}}}};
  auto decoded = decode_process_spec(encode(spec));
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message();
  ASSERT_TRUE(decoded->container.has_value());
  EXPECT_EQ(*decoded->container, *spec.container);
  EXPECT_FALSE(decode_process_spec(R"({"argv":["true"]})")->container.has_value());
  for (const char* bad : {R"({"argv":["sh"],"container":5})", R"({"argv":["sh"],"container":{}})",
                          R"({"argv":["sh"],"container":{"root":"relative"}})",
                          R"({"argv":["sh"],"container":{"root":"/r","capabilities":"CAP_KILL"}})",
                          R"({"argv":["sh"],"container":{"root":"/r","privileged":"yes"}})",
                          R"({"argv":["sh"],"container":{"root":"/r","files":{"/etc/x":""}}})",
                          R"({"argv":["sh"],"container":{"root":"/r","files":{"etc/x":3}}})"}) {
    auto rejected = decode_process_spec(bad);
    EXPECT_FALSE(rejected.has_value()) << bad;
    if (!rejected) {
      EXPECT_EQ(rejected.error().category(), ErrorCategory::kProtocol) << bad;
    }
  }
}

TEST(AgentMessages, ProcessSpecDefaults) {
  auto decoded = decode_process_spec(R"({"argv":["true"]})");
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message();
  EXPECT_FALSE(decoded->env.has_value());
  EXPECT_FALSE(decoded->uid.has_value());
  EXPECT_FALSE(decoded->tty);
}

TEST(AgentMessages, BuiltinProcessSpecRoundTrip) {
  ProcessSpec spec{.builtin = BuiltinSpec{.name = "archive-put",
                                          .args = {"/tmp", "--no-overwrite-dir-non-dir"},
                                          .root = "/kiln/rootfs"}};
  auto decoded = decode_process_spec(encode(spec));
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message();
  EXPECT_TRUE(decoded->argv.empty());
  ASSERT_TRUE(decoded->builtin.has_value());
  EXPECT_EQ(*decoded->builtin, *spec.builtin);
  for (const char* bad :
       {R"({"builtin":{}})", R"({"builtin":{"name":"../x"}})", R"({"builtin":{"name":"Export"}})",
        R"({"builtin":{"name":"export","root":"relative"}})", R"({"builtin":{"name":"export","args":[1]}})",
        R"({"builtin":{"name":"export"},"container":{"root":"/c"}})", R"({"builtin":"export"})"}) {
    auto refused = decode_process_spec(bad);
    EXPECT_FALSE(refused.has_value()) << bad;
    if (!refused) {
      EXPECT_EQ(refused.error().category(), ErrorCategory::kProtocol) << bad;
    }
  }
}

TEST(AgentMessages, ProcessSpecRejectsBadInput) {
  for (const char* bad :
       {R"({})", R"({"argv":[]})", R"({"argv":[""]})", R"({"argv":"sh"})", R"({"argv":[1]})",
        R"({"argv":["a\u0000b"]})", R"({"argv":["sh"],"env":["NOEQUALS"]})", R"({"argv":["sh"],"uid":-1})",
        R"({"argv":["sh"],"uid":4294967295})", R"({"argv":["sh"],"tty":"yes"})",
        R"({"argv":["sh"],"rows":70000})", R"([1,2])"}) {
    auto decoded = decode_process_spec(bad);
    EXPECT_FALSE(decoded.has_value()) << bad;
    if (!decoded) {
      EXPECT_EQ(decoded.error().category(), ErrorCategory::kProtocol) << bad;
    }
  }
}

TEST(AgentMessages, ExitStatusRoundTrip) {
  for (ExitStatus status : {ExitStatus::exited(0), ExitStatus::exited(7), ExitStatus::signaled(15)}) {
    auto decoded = decode_exit_status(encode(status));
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(*decoded, status);
  }
  EXPECT_FALSE(decode_exit_status(R"({"code":256})").has_value());
  EXPECT_FALSE(decode_exit_status(R"({"signal":0})").has_value());
}

TEST(AgentMessages, SignalAndResize) {
  EXPECT_EQ(decode_signal_request(encode(SignalRequest{2}))->signum, 2);
  EXPECT_FALSE(decode_signal_request(R"({"signum":0})").has_value());
  EXPECT_FALSE(decode_signal_request(R"({"signum":1000})").has_value());
  EXPECT_EQ(*decode_tty_size(encode(TtySize{33, 77})), (TtySize{33, 77}));
  EXPECT_FALSE(decode_tty_size(R"({"rows":1})").has_value());
}

TEST(AgentMessages, ErrorReplyKeepsItsCategory) {
  auto decoded =
      decode_error_reply(encode(ErrorReply{ErrorCategory::kPermissionDenied, "exec /x: Permission denied"}));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->category, ErrorCategory::kPermissionDenied);
  EXPECT_EQ(decoded->message, "exec /x: Permission denied");
  EXPECT_EQ(decode_error_reply(R"({"category":"from the future","message":"m"})")->category,
            ErrorCategory::kInternal);
}

TEST(AgentMessages, CreditGrantIsBinary) {
  std::string bytes = encode(CreditGrant{DataChannel::kStderr, 0x01020304});
  EXPECT_EQ(bytes, std::string("\x02\x04\x03\x02\x01", 5));
  auto decoded = decode_credit_grant(bytes);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->channel, DataChannel::kStderr);
  EXPECT_EQ(decoded->bytes, 0x01020304u);
  EXPECT_FALSE(decode_credit_grant("\x01\x00").has_value());
  EXPECT_FALSE(decode_credit_grant(std::string("\x03\x00\x00\x00\x00", 5)).has_value());
}

TEST(AgentMessages, NonUtf8TextDoesNotThrow) {
  std::string encoded = encode(ErrorReply{ErrorCategory::kIo, "bad \xff byte"});
  auto decoded = decode_error_reply(encoded);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_NE(decoded->message.find("bad "), std::string::npos);
}

TEST(AgentMessages, ShutdownPayloadIsOptional) {
  EXPECT_FALSE(decode_shutdown_request("")->reboot);
  EXPECT_TRUE(decode_shutdown_request(encode(ShutdownRequest{true}))->reboot);
}

TEST(AgentMessages, HelloReplyCarriesTheRootDiskStatus) {
  HelloReply mounted{kProtocolVersion,
                     "kiln-agent",
                     {"root_disk"},
                     RootDiskStatus{.serial = "kiln-disk0", .device = "/dev/vda", .mounted = true}};
  auto decoded = decode_hello_reply(encode(mounted));
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message();
  EXPECT_EQ(decoded->root, mounted.root);
  EXPECT_EQ(encode(mounted).find("error"), std::string::npos) << "no error field when mounted";

  HelloReply failed{
      kProtocolVersion, "kiln-agent", {}, RootDiskStatus{.serial = "kiln-disk0", .error = "gone"}};
  decoded = decode_hello_reply(encode(failed));
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message();
  EXPECT_EQ(decoded->root, failed.root);

  // Absent (no root disk asked for, or an older agent) stays absent; a malformed one is an error.
  decoded = decode_hello_reply(encode(HelloReply{kProtocolVersion, "kiln-agent", {}}));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_FALSE(decoded->root.has_value());
  EXPECT_FALSE(decode_hello_reply(R"({"version":{"major":1,"minor":0},"root":"vda"})").has_value());
  EXPECT_FALSE(
      decode_hello_reply(R"({"version":{"major":1,"minor":0},"root":{"mounted":"yes"}})").has_value());
}

TEST(AgentMessages, MountRequestRoundTrip) {
  MountRequest request{.source = "kilnshare0",
                       .target = "/mnt/hgfs/foo",
                       .fstype = "9p",
                       .options = "trans=virtio,version=9p2000.L,msize=262144",
                       .read_only = true};
  auto decoded = decode_mount_request(encode(request));
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message();
  EXPECT_EQ(*decoded, request);

  auto minimal = decode_mount_request(R"({"source":"tag","target":"/x","fstype":"9p"})");
  ASSERT_TRUE(minimal.has_value()) << minimal.error().message();
  EXPECT_EQ(minimal->options, "");
  EXPECT_FALSE(minimal->read_only);

  auto unmount = decode_unmount_request(encode(UnmountRequest{"/mnt/hgfs/foo"}));
  ASSERT_TRUE(unmount.has_value()) << unmount.error().message();
  EXPECT_EQ(unmount->target, "/mnt/hgfs/foo");
}

TEST(AgentMessages, MountRequestRejectsBadInput) {
  for (const char* bad :
       {R"({})", R"({"target":"/x","fstype":"9p"})", R"({"source":"t","fstype":"9p"})",
        R"({"source":"t","target":"/x"})", R"({"source":"","target":"/x","fstype":"9p"})",
        R"({"source":"t","target":"/x","fstype":""})", R"({"source":"t","target":"/a\u0000b","fstype":"9p"})",
        R"({"source":"t","target":"/x","fstype":"9p","read_only":"yes"})",
        R"({"source":"t","target":"/x","fstype":"9p","options":7})", R"([1])"}) {
    auto decoded = decode_mount_request(bad);
    EXPECT_FALSE(decoded.has_value()) << bad;
    if (!decoded) {
      EXPECT_EQ(decoded.error().category(), ErrorCategory::kProtocol) << bad;
    }
  }
  EXPECT_FALSE(decode_unmount_request(R"({})").has_value());
  EXPECT_FALSE(decode_unmount_request(R"({"target":1})").has_value());
}

TEST(AgentMessages, GuestPathsAreNormalizedOrRefused) {
  EXPECT_EQ(*normalize_guest_path("/mnt/hgfs/foo", "target"), "/mnt/hgfs/foo");
  EXPECT_EQ(*normalize_guest_path("//mnt/./hgfs//foo/", "target"), "/mnt/hgfs/foo");
  for (const char* bad : {"", "mnt/foo", "./foo", "/mnt/../etc", "/..", "/", "//", "/./"}) {
    auto normalized = normalize_guest_path(bad, "target");
    ASSERT_FALSE(normalized.has_value()) << bad;
    EXPECT_EQ(normalized.error().category(), ErrorCategory::kInvalidArgument) << bad;
  }
  EXPECT_NE(normalize_guest_path("x/y", "MOUNT target").error().message().find("MOUNT target \"x/y\""),
            std::string::npos);
}

}  // namespace
}  // namespace kiln::agent

namespace kiln::agent {
namespace {

TEST(SetClockMessageTest, RoundTripsAndRejectsNonsense) {
  auto decoded = decode_set_clock_request(encode(SetClockRequest{1'700'000'000'123'456'789}));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->unix_nanos, 1'700'000'000'123'456'789);
  EXPECT_FALSE(decode_set_clock_request(R"({"unix_nanos":-1})"));
  EXPECT_FALSE(decode_set_clock_request(R"({"unix_nanos":"now"})"));
  EXPECT_FALSE(decode_set_clock_request(R"({})"));
  EXPECT_EQ(to_string(MessageType::kSetClock), "SET_CLOCK");
  EXPECT_TRUE(is_known_message_type(0x34));
  EXPECT_TRUE(is_known_message_type(0x35));
}

TEST(SetHostnameMessageTest, RoundTripsAndRejectsWhatIsNoHostname) {
  auto decoded = decode_set_hostname_request(encode(SetHostnameRequest{"web-1.example_a"}));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->hostname, "web-1.example_a");
  EXPECT_TRUE(decode_set_hostname_request(encode(SetHostnameRequest{std::string(64, 'a')})));
  for (std::string bad :
       {std::string(), std::string(65, 'a'), std::string("-x"), std::string(".x"), std::string("a b"),
        std::string("a/b"), std::string("a\nb"), std::string("\xc3\xa9")}) {
    EXPECT_FALSE(decode_set_hostname_request(encode(SetHostnameRequest{bad}))) << bad;
  }
  EXPECT_FALSE(decode_set_hostname_request(R"({"hostname":7})"));
  EXPECT_FALSE(decode_set_hostname_request(R"({})"));
  EXPECT_EQ(to_string(MessageType::kSetHostname), "SET_HOSTNAME");
  EXPECT_EQ(to_string(MessageType::kSetHostnameReply), "SET_HOSTNAME_REPLY");
  EXPECT_TRUE(is_known_message_type(0x36));
  EXPECT_TRUE(is_known_message_type(0x37));
}

CloneInitRequest full_clone_init() {
  CloneInitRequest request;
  request.unix_nanos = 1'800'000'000'000'000'001;
  request.hostname = "clone-7";
  request.seed = std::string(32, '\0');
  for (size_t i = 0; i < request.seed.size(); ++i) request.seed[i] = static_cast<char>(i * 37 + 200);
  request.machine_id = "0123456789abcdef0123456789abcdef";
  request.mounts = {{"serial:kiln-disk1", "/data", "ext4", "", false},
                    {"kilnshare0", "/mnt/share", "9p", "trans=virtio", true}};
  return request;
}

TEST(CloneInitMessageTest, RoundTripsEveryField) {
  CloneInitRequest request = full_clone_init();
  std::string payload = encode(request);
  EXPECT_NE(payload.find("\"seed\":\"c8ed1237"), std::string::npos) << "the seed travels as hex: " << payload;
  auto decoded = decode_clone_init_request(payload);
  ASSERT_TRUE(decoded) << decoded.error().message();
  EXPECT_EQ(*decoded, request);

  // Only the clock and the seed are required; reseed defaults to true.
  auto minimal = decode_clone_init_request(
      R"({"unix_nanos":5,"seed":"000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F"})");
  ASSERT_TRUE(minimal) << minimal.error().message();
  EXPECT_TRUE(minimal->reseed);
  EXPECT_EQ(minimal->seed.size(), 32u);
  EXPECT_EQ(static_cast<uint8_t>(minimal->seed[31]), 0x1f);
  EXPECT_TRUE(minimal->hostname.empty() && minimal->machine_id.empty() && minimal->mounts.empty());

  // reseed:false needs no seed (a test observing the shared RNG).
  auto shared = decode_clone_init_request(R"({"unix_nanos":5,"reseed":false})");
  ASSERT_TRUE(shared) << shared.error().message();
  EXPECT_FALSE(shared->reseed);
  EXPECT_TRUE(shared->seed.empty());
  EXPECT_EQ(to_string(MessageType::kCloneInit), "CLONE_INIT");
  EXPECT_EQ(to_string(MessageType::kCloneInitReply), "CLONE_INIT_REPLY");
  EXPECT_TRUE(is_known_message_type(0x38));
  EXPECT_TRUE(is_known_message_type(0x39));
  EXPECT_FALSE(is_known_message_type(0x3c));
}

TEST(NetworkConfigMessageTest, RoundTripsAndRefusesBadInterfaces) {
  NetworkConfigRequest request{
      .interfaces = {
          {.mac = "02:42:ac:11:00:02", .address = "172.17.0.2/16", .gateway = "172.17.0.1", .mtu = 1400},
          {.mac = "02:42:ac:12:00:09", .address = "172.18.0.9/24"},
          {.mac = "02:42:ac:13:00:09",
           .address = "172.19.0.9/24",
           .device_mac = "52:54:00:6b:00:02",
           .default_route = false},
          {.device_mac = "52:54:00:6b:00:01", .down = true}}};
  auto decoded = decode_network_config_request(encode(request));
  ASSERT_TRUE(decoded) << decoded.error().message();
  EXPECT_EQ(*decoded, request);
  EXPECT_EQ(to_string(MessageType::kConfigureNetwork), "CONFIGURE_NETWORK");
  EXPECT_TRUE(is_known_message_type(0x3b));

  CloneInitRequest clone = full_clone_init();
  clone.network = request.interfaces;
  auto clone_decoded = decode_clone_init_request(encode(clone));
  ASSERT_TRUE(clone_decoded) << clone_decoded.error().message();
  EXPECT_EQ(clone_decoded->network, request.interfaces);

  for (std::string_view bad : {
           R"({"interfaces":[{"mac":"02:42:ac:11:00:02"}]})",
           R"({"interfaces":[{"mac":"zz:42:ac:11:00:02","address":"172.17.0.2/16"}]})",
           R"({"interfaces":[{"mac":"02:42:ac:11:00:02","address":"172.17.0.2/16","gateway":"10.1.1.1"}]})",
           R"({"interfaces":[{"mac":"02:42:ac:11:00:02","address":"172.17.0.2/16","mtu":-1}]})",
           R"({"interfaces":{}})",
           R"({"interfaces":[{"down":true}]})",
           R"({"interfaces":[{"mac":"02:42:ac:11:00:02","address":"172.17.0.2/16","device_mac":"x"}]})",
           R"({"interfaces":[{"mac":"02:42:ac:11:00:02","address":"172.17.0.2/16","default_route":1}]})",
       }) {
    EXPECT_FALSE(decode_network_config_request(bad)) << bad;
  }
}

TEST(CloneInitMessageTest, ReplyCarriesTheGuestsStepTimesInOrder) {
  CloneInitReply reply{.steps = {{.step = "clock", .ms = 1.5},
                                 {.step = "rng", .ms = 2.75},
                                 {.step = "mount0:erofs", .ms = 14}}};
  auto decoded = decode_clone_init_reply(encode(reply));
  ASSERT_TRUE(decoded) << decoded.error().message();
  EXPECT_EQ(*decoded, reply);
  EXPECT_EQ(format_clone_init_steps(*decoded), "clock=1.5 rng=2.8 mount0:erofs=14.0");
  // An agent before 1.9 answers {}: no steps, no error.
  auto old = decode_clone_init_reply("{}");
  ASSERT_TRUE(old) << old.error().message();
  EXPECT_TRUE(old->steps.empty());
  for (std::string_view bad : {R"({"steps_ms":{}})", R"({"steps_ms":[["clock",1]]})",
                               R"({"steps_ms":[{"step":"clock"}]})", R"({"steps_ms":[{"ms":1}]})", "[]"}) {
    auto refused = decode_clone_init_reply(bad);
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error().category(), ErrorCategory::kProtocol) << bad;
  }
}

TEST(CloneInitMessageTest, RefusesBadValuesAsInvalidArgument) {
  auto category = [](const CloneInitRequest& request) {
    auto decoded = decode_clone_init_request(encode(request));
    return decoded ? std::optional<ErrorCategory>() : decoded.error().category();
  };
  CloneInitRequest short_seed = full_clone_init();
  short_seed.seed.resize(31);
  EXPECT_EQ(category(short_seed), ErrorCategory::kInvalidArgument);
  CloneInitRequest huge_seed = full_clone_init();
  huge_seed.seed.assign(kCloneSeedMaxBytes + 1, 'x');
  EXPECT_EQ(category(huge_seed), ErrorCategory::kInvalidArgument);
  CloneInitRequest no_seed = full_clone_init();
  no_seed.seed.clear();
  EXPECT_EQ(category(no_seed), ErrorCategory::kInvalidArgument) << "reseeding needs a seed";
  for (std::string bad : {"0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcde",
                          "0123456789abcdef0123456789abcdef0", "0123456789abcdef0123456789abcdeg"}) {
    CloneInitRequest request = full_clone_init();
    request.machine_id = bad;
    EXPECT_EQ(category(request), ErrorCategory::kInvalidArgument) << bad;
    EXPECT_FALSE(validate_machine_id(bad)) << bad;
  }
  CloneInitRequest bad_host = full_clone_init();
  bad_host.hostname = "../etc";
  EXPECT_EQ(category(bad_host), ErrorCategory::kInvalidArgument);
  CloneInitRequest no_clock = full_clone_init();
  no_clock.unix_nanos = 0;
  EXPECT_EQ(category(no_clock), ErrorCategory::kInvalidArgument);

  std::string seed64(64, '0');
  for (std::string bad_hex : {std::string(63, '0'), std::string(64, 'g'), "0x" + std::string(62, '0')}) {
    auto decoded = decode_clone_init_request(fmt::format(R"({{"unix_nanos":5,"seed":"{}"}})", bad_hex));
    ASSERT_FALSE(decoded) << bad_hex;
    EXPECT_EQ(decoded.error().category(), ErrorCategory::kInvalidArgument) << bad_hex;
  }
  // The wrong shapes are protocol errors.
  for (std::string payload :
       {fmt::format(R"({{"unix_nanos":5,"seed":"{}","mounts":{{}}}})", seed64),
        fmt::format(R"({{"unix_nanos":5,"seed":"{}","mounts":[7]}})", seed64),
        fmt::format(R"({{"unix_nanos":5,"seed":"{}","mounts":[{{"target":"/x"}}]}})", seed64),
        fmt::format(R"({{"unix_nanos":5,"seed":"{}","reseed":"no"}})", seed64),
        fmt::format(R"({{"unix_nanos":5,"seed":7}})"), std::string("[]")}) {
    auto decoded = decode_clone_init_request(payload);
    ASSERT_FALSE(decoded) << payload;
    EXPECT_EQ(decoded.error().category(), ErrorCategory::kProtocol) << payload;
  }
  auto second = decode_clone_init_request(fmt::format(
      R"({{"unix_nanos":5,"seed":"{}","mounts":[{{"source":"a","target":"/a","fstype":"9p"}},{{"target":"/b"}}]}})",
      seed64));
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message().find("CLONE_INIT mount 1"), std::string::npos)
      << second.error().message();
}

}  // namespace
}  // namespace kiln::agent
