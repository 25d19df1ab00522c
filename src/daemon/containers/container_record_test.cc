#include "daemon/containers/container_record.h"

#include <gtest/gtest.h>

namespace kiln::daemon::containers {
namespace {

ContainerRecord full_record() {
  ContainerRecord record;
  record.id = std::string(64, 'a');
  record.name = "web";
  record.created = "2026-11-30T14:00:23.008446628Z";
  record.config.image = "busybox:latest";
  record.config.image_id = "sha256:" + std::string(64, 'b');
  record.config.entrypoint = {"/bin/sh", "-c"};
  record.config.cmd = {"echo 'a b'", ""};
  record.config.env = {"PATH=/bin", "A=1", "EMPTY="};
  record.config.working_dir = "/srv";
  record.config.user = "1:2";
  record.config.hostname = "hh";
  record.config.domainname = "example.org";
  record.config.tty = true;
  record.config.open_stdin = true;
  record.config.stdin_once = true;
  record.config.attach_stdin = true;
  record.config.attach_stdout = true;
  record.config.attach_stderr = true;
  record.config.labels = {{"a", "b"}, {"c", ""}};
  record.config.stop_signal = "SIGINT";
  record.config.stop_timeout = 5;
  record.config.console_rows = 30;
  record.config.console_cols = 100;
  record.host_config.auto_remove = true;
  record.host_config.restart_policy = {RestartPolicy::Kind::kOnFailure, 3};
  record.host_config.memory_bytes = 64ULL << 20;
  record.host_config.nano_cpus = 1'500'000'000;
  record.host_config.cpu_count = 2;
  record.host_config.cap_add = {"NET_ADMIN", "CAP_SYS_TIME"};
  record.host_config.cap_drop = {"ALL"};
  record.host_config.privileged = true;
  record.host_config.read_only_root = true;
  record.host_config.init = true;
  record.host_config.log_config = {"json-file", {{"max-size", "10m"}, {"max-file", "3"}}};
  record.host_config.network_mode = "none";
  record.raw_config = {{"Image", "busybox"}, {"ExposedPorts", {{"80/tcp", Json::object()}}}};
  record.raw_host_config = {{"Binds", {"/tmp:/x"}}};
  record.raw_networking_config = {{"EndpointsConfig", Json::object()}};
  record.vm_id = "vm-1234";
  record.state = ContainerState::kExited;
  record.exit_code = 137;
  record.error = "oops";
  record.oom_killed = true;
  record.pid = 4242;
  record.started_at = "2026-11-30T14:00:25.691266332Z";
  record.finished_at = "2026-11-30T14:00:25.711234534Z";
  record.restart_count = 7;
  record.main_process = 12;
  record.stopped_by_user = true;
  return record;
}

void expect_same(const ContainerRecord& a, const ContainerRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.created, b.created);
  EXPECT_EQ(a.config.image, b.config.image);
  EXPECT_EQ(a.config.image_id, b.config.image_id);
  EXPECT_EQ(a.config.entrypoint, b.config.entrypoint);
  EXPECT_EQ(a.config.cmd, b.config.cmd);
  EXPECT_EQ(a.config.env, b.config.env);
  EXPECT_EQ(a.config.working_dir, b.config.working_dir);
  EXPECT_EQ(a.config.user, b.config.user);
  EXPECT_EQ(a.config.hostname, b.config.hostname);
  EXPECT_EQ(a.config.domainname, b.config.domainname);
  EXPECT_EQ(a.config.tty, b.config.tty);
  EXPECT_EQ(a.config.open_stdin, b.config.open_stdin);
  EXPECT_EQ(a.config.stdin_once, b.config.stdin_once);
  EXPECT_EQ(a.config.attach_stdin, b.config.attach_stdin);
  EXPECT_EQ(a.config.attach_stdout, b.config.attach_stdout);
  EXPECT_EQ(a.config.attach_stderr, b.config.attach_stderr);
  EXPECT_EQ(a.config.labels, b.config.labels);
  EXPECT_EQ(a.config.stop_signal, b.config.stop_signal);
  EXPECT_EQ(a.config.stop_timeout, b.config.stop_timeout);
  EXPECT_EQ(a.config.console_rows, b.config.console_rows);
  EXPECT_EQ(a.config.console_cols, b.config.console_cols);
  EXPECT_EQ(a.host_config.auto_remove, b.host_config.auto_remove);
  EXPECT_EQ(a.host_config.restart_policy, b.host_config.restart_policy);
  EXPECT_EQ(a.host_config.memory_bytes, b.host_config.memory_bytes);
  EXPECT_EQ(a.host_config.nano_cpus, b.host_config.nano_cpus);
  EXPECT_EQ(a.host_config.cpu_count, b.host_config.cpu_count);
  EXPECT_EQ(a.host_config.cap_add, b.host_config.cap_add);
  EXPECT_EQ(a.host_config.cap_drop, b.host_config.cap_drop);
  EXPECT_EQ(a.host_config.privileged, b.host_config.privileged);
  EXPECT_EQ(a.host_config.read_only_root, b.host_config.read_only_root);
  EXPECT_EQ(a.host_config.init, b.host_config.init);
  EXPECT_EQ(a.host_config.log_config, b.host_config.log_config);
  EXPECT_EQ(a.host_config.network_mode, b.host_config.network_mode);
  EXPECT_EQ(a.raw_config, b.raw_config);
  EXPECT_EQ(a.raw_host_config, b.raw_host_config);
  EXPECT_EQ(a.raw_networking_config, b.raw_networking_config);
  EXPECT_EQ(a.vm_id, b.vm_id);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.exit_code, b.exit_code);
  EXPECT_EQ(a.error, b.error);
  EXPECT_EQ(a.oom_killed, b.oom_killed);
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.started_at, b.started_at);
  EXPECT_EQ(a.finished_at, b.finished_at);
  EXPECT_EQ(a.restart_count, b.restart_count);
  EXPECT_EQ(a.main_process, b.main_process);
  EXPECT_EQ(a.stopped_by_user, b.stopped_by_user);
}

TEST(ContainerRecordTest, StorageRoundTripKeepsEveryField) {
  ContainerRecord record = full_record();
  // Through text, as kiln.db holds it.
  auto back = container_from_storage_json(Json::parse(to_storage_json(record).dump()));
  ASSERT_TRUE(back) << back.error().message();
  expect_same(record, *back);
}

TEST(ContainerRecordTest, StorageRoundTripOfDefaults) {
  ContainerRecord record;
  record.id = std::string(64, 'c');
  record.name = "quiet_turing";
  auto back = container_from_storage_json(to_storage_json(record));
  ASSERT_TRUE(back) << back.error().message();
  expect_same(record, *back);
  EXPECT_EQ(back->config.stop_timeout, std::nullopt);
  EXPECT_EQ(back->host_config.log_config.type, "json-file");
  EXPECT_EQ(back->host_config.network_mode, "default");
}

TEST(ContainerRecordTest, EveryStateRoundTrips) {
  for (auto state : {ContainerState::kCreated, ContainerState::kRunning, ContainerState::kPaused,
                     ContainerState::kRestarting, ContainerState::kRemoving, ContainerState::kExited,
                     ContainerState::kDead}) {
    EXPECT_EQ(container_state_from_string(to_string(state)), state) << to_string(state);
    ContainerRecord record = full_record();
    record.state = state;
    EXPECT_EQ(container_from_storage_json(to_storage_json(record))->state, state);
  }
  EXPECT_EQ(to_string(ContainerState::kExited), "exited");
  EXPECT_EQ(container_state_from_string("Exited"), std::nullopt);
  EXPECT_EQ(container_state_from_string("stopped"), std::nullopt);
}

TEST(ContainerRecordTest, RefusesBrokenStoredRecords) {
  EXPECT_FALSE(container_from_storage_json(Json::array()));
  Json no_name = to_storage_json(full_record());
  no_name.erase("name");
  EXPECT_FALSE(container_from_storage_json(no_name));
  Json bad_state = to_storage_json(full_record());
  bad_state["state"] = "sleeping";
  auto result = container_from_storage_json(bad_state);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().category(), ErrorCategory::kInternal);
  Json bad_type = to_storage_json(full_record());
  bad_type["exit_code"] = "137";
  auto damaged = container_from_storage_json(bad_type);
  ASSERT_FALSE(damaged);
  EXPECT_EQ(damaged.error().category(), ErrorCategory::kInternal);
  Json bad_policy = to_storage_json(full_record());
  bad_policy["host_config"]["restart_policy"]["name"] = "sometimes";
  EXPECT_FALSE(container_from_storage_json(bad_policy));
}

TEST(ContainerRecordTest, RestartPolicyNamesAsDockerHasThem) {
  EXPECT_EQ(to_string(RestartPolicy::Kind::kNo), "no");
  EXPECT_EQ(to_string(RestartPolicy::Kind::kAlways), "always");
  EXPECT_EQ(to_string(RestartPolicy::Kind::kOnFailure), "on-failure");
  EXPECT_EQ(to_string(RestartPolicy::Kind::kUnlessStopped), "unless-stopped");
  EXPECT_EQ(make_restart_policy("", 0).value(), RestartPolicy{});
  EXPECT_EQ(make_restart_policy("no", 0).value(), RestartPolicy{});
  EXPECT_EQ(make_restart_policy("always", 0)->kind, RestartPolicy::Kind::kAlways);
  EXPECT_EQ(make_restart_policy("unless-stopped", 0)->kind, RestartPolicy::Kind::kUnlessStopped);
  EXPECT_EQ(make_restart_policy("on-failure", 3).value(),
            (RestartPolicy{RestartPolicy::Kind::kOnFailure, 3}));
  EXPECT_EQ(make_restart_policy("on-failure", 0).value(),
            (RestartPolicy{RestartPolicy::Kind::kOnFailure, 0}));
}

TEST(ContainerRecordTest, RestartPolicyErrorsInDockerdsWords) {
  // What dockerd 20.10 answered to POST /containers/create with these HostConfig.RestartPolicy values.
  auto message = [](std::string_view name, int64_t count) {
    auto result = make_restart_policy(name, count);
    EXPECT_FALSE(result) << name;
    if (result) return std::string();
    EXPECT_EQ(result.error().category(), ErrorCategory::kInvalidArgument);
    return result.error().message();
  };
  EXPECT_EQ(message("sometimes", 0), "invalid restart policy 'sometimes'");
  EXPECT_EQ(message("Always", 0), "invalid restart policy 'Always'");
  EXPECT_EQ(message("always", 2), "maximum retry count cannot be used with restart policy 'always'");
  EXPECT_EQ(message("no", 1), "maximum retry count cannot be used with restart policy 'no'");
  EXPECT_EQ(message("on-failure", -2), "maximum retry count cannot be negative");
}

}  // namespace
}  // namespace kiln::daemon::containers
