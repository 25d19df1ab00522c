// ContainerManager's file operations (docker cp, export, diff): the agent's file builtins
// (src/agent/file_builtins.h) run as processes in the container's VM, chrooted into its root
// (/kiln/rootfs, where the agent also mounts its volumes and binds) or, for diff, over the overlay's upper
// and lower directories. The tar bytes travel on the process's stdin/stdout over the agent channel, with its
// flow control; the builtin's exit code says which of dockerd's errors to give.
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <sys/socket.h>

#include <cctype>
#include <thread>

#include "agent/file_builtins.h"
#include "common/log.h"
#include "common/stdcopy.h"
#include "common/temp_dir.h"
#include "daemon/containers/container_manager.h"
#include "daemon/containers/container_runtime.h"
#include "image/image_store.h"

namespace kiln::daemon::containers {
namespace {

constexpr std::string_view kUpperInGuest = "/kiln/layer/upper";
constexpr std::string_view kLowerInGuest = "/kiln/image";
constexpr size_t kStderrLimit = 64 * 1024;

Result<std::vector<std::string>> change_arguments(std::string_view rest, bool shell_form_wraps) {
  // JSON form ["a", "b"], else shell form: the whole rest, run by /bin/sh -c (CMD, ENTRYPOINT) or split.
  if (rest.starts_with('[')) {
    if (auto parsed = parse_json(rest); parsed && parsed->is_array()) {
      std::vector<std::string> out;
      for (const auto& item : *parsed) {
        if (!item.is_string()) return Error::invalid_argument(fmt::format("not a list of strings: {}", rest));
        out.push_back(item.get<std::string>());
      }
      return out;
    }
  }
  if (shell_form_wraps) return std::vector<std::string>{"/bin/sh", "-c", std::string(rest)};
  std::vector<std::string> out;
  size_t start = 0;
  while (start < rest.size()) {
    size_t end = rest.find_first_of(" \t", start);
    if (end == std::string_view::npos) end = rest.size();
    if (end > start) out.emplace_back(rest.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Applies `docker commit --change` instructions (dockerd's BuildFromConfig subset) to an image config.
Result<void> apply_changes(Json& config, const std::vector<std::string>& changes) {
  bool cmd_set = false;
  for (const auto& change : changes) {
    std::string_view text = change;
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    size_t space = text.find_first_of(" \t");
    std::string instruction(text.substr(0, space));
    std::string_view rest = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\n')) rest.remove_suffix(1);
    for (char& c : instruction) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (instruction.empty()) continue;
    if (instruction == "CMD") {
      config["Cmd"] = KILN_TRY(change_arguments(rest, true));
      cmd_set = true;
    } else if (instruction == "ENTRYPOINT") {
      config["Entrypoint"] = KILN_TRY(change_arguments(rest, true));
      if (!cmd_set) config["Cmd"] = nullptr;  // as a Dockerfile's ENTRYPOINT drops an inherited CMD
    } else if (instruction == "ENV" || instruction == "LABEL") {
      std::vector<std::pair<std::string, std::string>> pairs;
      if (rest.find('=') == std::string_view::npos ||
          (instruction == "ENV" && rest.find(' ') < rest.find('='))) {
        size_t gap = rest.find(' ');
        if (gap == std::string_view::npos)
          return Error::invalid_argument(fmt::format("{} requires at least one argument", instruction));
        pairs.emplace_back(rest.substr(0, gap), rest.substr(gap + 1));
      } else {
        for (const auto& word : KILN_TRY(change_arguments(rest, false))) {
          size_t equals = word.find('=');
          if (equals == std::string::npos)
            return Error::invalid_argument(fmt::format("{} names must be followed by '='", instruction));
          std::string value = word.substr(equals + 1);
          if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
            value = value.substr(1, value.size() - 2);
          pairs.emplace_back(word.substr(0, equals), value);
        }
      }
      for (const auto& [key, value] : pairs) {
        if (instruction == "LABEL") {
          if (!config["Labels"].is_object()) config["Labels"] = Json::object();
          config["Labels"][key] = value;
          continue;
        }
        if (!config["Env"].is_array()) config["Env"] = Json::array();
        Json env = Json::array();
        for (const auto& entry : config["Env"]) {
          std::string text_entry = entry.get<std::string>();
          if (!text_entry.starts_with(key + "=")) env.push_back(text_entry);
        }
        env.push_back(key + "=" + value);
        config["Env"] = env;
      }
    } else if (instruction == "USER") {
      config["User"] = std::string(rest);
    } else if (instruction == "WORKDIR") {
      std::string dir(rest);
      std::string current = config.value("WorkingDir", "");
      if (!dir.starts_with('/')) dir = (current.empty() ? "/" : current + "/") + dir;
      config["WorkingDir"] = dir;
    } else if (instruction == "STOPSIGNAL") {
      config["StopSignal"] = std::string(rest);
    } else if (instruction == "EXPOSE" || instruction == "VOLUME") {
      std::string key = instruction == "EXPOSE" ? "ExposedPorts" : "Volumes";
      if (!config[key].is_object()) config[key] = Json::object();
      for (auto word : KILN_TRY(change_arguments(rest, false))) {
        if (instruction == "EXPOSE" && word.find('/') == std::string::npos) word += "/tcp";
        config[key][word] = Json::object();
      }
    } else {
      return Error::invalid_argument(fmt::format("{} is not a valid change command", instruction));
    }
  }
  return ok();
}

// The image config of a committed container: its own Config (as dockerd records it), then the request's.
Json committed_config(const ContainerRecord& container, const Json& overrides) {
  const ContainerConfig& config = container.config;
  Json env = Json::array();
  for (const auto& entry : config.env) {
    if (!entry.starts_with("HOSTNAME=")) env.push_back(entry);
  }
  Json out = {{"Hostname", config.hostname},
              {"Domainname", config.domainname},
              {"User", config.user},
              {"AttachStdin", config.attach_stdin},
              {"AttachStdout", config.attach_stdout},
              {"AttachStderr", config.attach_stderr},
              {"Tty", config.tty},
              {"OpenStdin", config.open_stdin},
              {"StdinOnce", config.stdin_once},
              {"Env", env},
              {"Cmd", config.cmd.empty() ? Json(nullptr) : Json(config.cmd)},
              {"Image", config.image},
              {"Volumes", nullptr},
              {"WorkingDir", config.working_dir},
              {"Entrypoint", config.entrypoint.empty() ? Json(nullptr) : Json(config.entrypoint)},
              {"OnBuild", nullptr},
              {"Labels", config.labels.empty() ? Json::object() : Json(config.labels)}};
  if (!config.stop_signal.empty() && config.stop_signal != "SIGTERM") out["StopSignal"] = config.stop_signal;
  if (overrides.is_object()) {
    for (const auto& [key, value] : overrides.items()) {
      bool empty = value.is_null() || (value.is_string() && value.get<std::string>().empty()) ||
                   ((value.is_array() || value.is_object()) && value.empty()) ||
                   (value.is_boolean() && !value.get<bool>());
      if (!empty) out[key] = value;
    }
  }
  return out;
}

}  // namespace

Result<std::string> ContainerManager::commit(const std::string& reference, const CommitOptions& options) {
  std::optional<image::ImageRef> tag;
  if (!options.repo.empty()) {
    auto parsed = image::ImageRef::parse(options.repo + ":" + (options.tag.empty() ? "latest" : options.tag));
    if (!parsed) return Error::invalid_argument(parsed.error().message());
    tag = *parsed;
  } else if (!options.tag.empty()) {
    return Error::invalid_argument("tag without a repository");
  }
  auto files = KILN_TRY(open_files(reference));
  ContainerRecord container = files->container_;
  Json config = committed_config(container, options.config);
  KILN_TRY(apply_changes(config, options.changes));
  TempDir scratch = KILN_TRY(TempDir::create("commit-", config_.root));
  std::string layer_path = scratch.path() + "/layer.tar";
  UniqueFd out(::open(layer_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) return Error::last_os_error(fmt::format("create {}", layer_path));
  std::optional<Error> write_error;
  KILN_TRY(files->layer([&](std::string_view data) {
    auto written = write_all(out.get(), data);
    if (!written) write_error = written.error();
    return written.has_value();
  }));
  if (write_error) return *write_error;
  files.reset();  // the layer is read: a stopped container's VM goes, a `docker start` may proceed
  out.reset();
  std::vector<std::string> command = container.config.entrypoint;
  command.insert(command.end(), container.config.cmd.begin(), container.config.cmd.end());
  image::Digest id = KILN_TRY(images_.commit({.base = container.config.image_id,
                                              .layer_path = layer_path,
                                              .config = config,
                                              .comment = options.comment,
                                              .author = options.author,
                                              .created_by = fmt::format("{}", fmt::join(command, " ")),
                                              .tag = tag}));
  publish(container, "commit", options.comment.empty() ? Json::object() : Json{{"comment", options.comment}});
  return id.to_string();
}

Result<std::unique_ptr<ContainerFiles>> ContainerManager::open_files(const std::string& reference) {
  auto found = KILN_TRY(store_.resolve(reference));
  std::unique_ptr<ContainerFiles> files(new ContainerFiles(*this, reference));
  files->runtime_ = runtime(found.id);
  files->lock_ = std::unique_lock(files->runtime_->lock);
  files->container_ = KILN_TRY(load(*files->runtime_, found.id));
  const ContainerRecord& container = files->container_;
  if (files->runtime_->removing || container.state == ContainerState::kRemoving)
    return Error::failed_precondition(fmt::format("container {} is marked for removal", container.id));
  // A paused container's whole VM is frozen: nothing in it can read the files until it is unpaused.
  if (container.state == ContainerState::kPaused)
    return Error::failed_precondition(fmt::format(
        "Container {} is paused, unpause the container before copying files (Kiln pauses the whole VM)",
        container.id));
  if (container.state == ContainerState::kRunning) {
    // Its VM is up: the container's lock is not needed (and would hold up a stop or kill for as long as a
    // client reads an export). A VM that stops meanwhile ends the builtin with kUnavailable.
    files->lock_.unlock();
  } else {
    KILN_TRY_CONTEXT(vms_.start(container.vm_id, container.id), "start the container's VM for its files");
    files->started_vm_ = true;
  }
  return files;
}

ContainerFiles::~ContainerFiles() {
  if (!started_vm_) return;
  // The VM ran only for the files: no process exit, restart or event belongs to the container.
  if (auto stopped = manager_.vms_.stop(container_.vm_id, manager_.config_.vm_stop_grace); !stopped)
    log::warn("container VM did not stop after a file operation",
              {{"id", container_.id}, {"error", stopped.error().message()}});
}

Result<void> ContainerFiles::run(const std::string& builtin, std::vector<std::string> args, std::string root,
                                 const ArchiveSource* source, const ArchiveSink& sink,
                                 const std::string& path) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    return Error::last_os_error("socketpair");
  UniqueFd mine(pair[0]);
  agent::ExecIo io{.client = UniqueFd(pair[1]), .tty = false, .attach_stdin = source != nullptr};
  agent::ProcessSpec spec{
      .builtin = agent::BuiltinSpec{.name = builtin, .args = std::move(args), .root = std::move(root)}};
  auto handle = KILN_TRY(manager_.vms_.exec(container_.vm_id, spec, io));

  // stdin (PUT) from its own thread, so the output is read meanwhile and an early failure ends both.
  std::thread writer;
  std::optional<Error> input_error;
  if (source) {
    writer = std::thread([&] {
      std::string buffer(128 * 1024, '\0');
      for (;;) {
        auto n = (*source)(buffer.data(), buffer.size());
        if (!n) {
          input_error = n.error();
          break;
        }
        if (*n == 0) break;
        if (!send_all(mine.get(), std::string_view(buffer.data(), *n))) break;  // the builtin has ended
      }
      ::shutdown(mine.get(), SHUT_WR);
    });
  }
  std::string errors;
  bool sink_stopped = false;
  stdcopy::Demuxer demuxer;
  std::string buffer(128 * 1024, '\0');
  for (;;) {
    ssize_t n = ::read(mine.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    demuxer.feed(std::string_view(buffer.data(), static_cast<size_t>(n)),
                 [&](int stream, std::string_view data) {
                   if (stream == stdcopy::kStderr) {
                     if (errors.size() < kStderrLimit)
                       errors.append(data.substr(0, kStderrLimit - errors.size()));
                   } else if (!sink_stopped && !sink(data)) {
                     sink_stopped = true;
                   }
                   return !sink_stopped;
                 });
    if (sink_stopped) {
      (void)handle.signal(SIGKILL);
      break;
    }
  }
  if (writer.joinable()) {
    // A client still sending after the builtin ended: stop reading it.
    ::shutdown(mine.get(), SHUT_RDWR);
    writer.join();
  }
  auto status = KILN_TRY(handle.wait(std::chrono::minutes(5)));
  if (sink_stopped) return Error::cancelled("the client went away");
  if (input_error) return *input_error;
  while (!errors.empty() && errors.back() == '\n') errors.pop_back();
  if (status.success()) return ok();
  switch (status.is_signaled() ? -1 : status.code()) {
    case static_cast<int>(agent::BuiltinExit::kNotFound):
      return Error::not_found(fmt::format("Could not find the file {} in container {}", path, reference_));
    case static_cast<int>(agent::BuiltinExit::kNotADirectory):
      return Error::internal(errors);
    case static_cast<int>(agent::BuiltinExit::kBadArchive):
      return Error::internal(fmt::format("Error processing tar file(exit status 1): {}", errors));
    default:
      return Error::internal(errors.empty() ? fmt::format("{} failed ({})", builtin, status.describe())
                                            : errors);
  }
}

Result<std::string> ContainerFiles::stat(const std::string& path) {
  std::string out;
  KILN_TRY(run(
      "archive-stat", {path}, std::string(kContainerRootInGuest), nullptr,
      [&out](std::string_view data) {
        out.append(data);
        return true;
      },
      path));
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

Result<void> ContainerFiles::get_archive(const std::string& path, const ArchiveSink& sink) {
  return run("archive-get", {path}, std::string(kContainerRootInGuest), nullptr, sink, path);
}

Result<void> ContainerFiles::put_archive(const std::string& path, bool no_overwrite_dir_non_dir,
                                         bool copy_uid_gid, const ArchiveSource& source) {
  // dockerd's rule (and words). TODO(volumes): a path inside a volume or bind of such a container is
  // writable and dockerd allows it; that needs the container's mount list.
  if (container_.host_config.read_only_root) return Error::internal("container rootfs is marked read-only");
  std::vector<std::string> args{path};
  if (no_overwrite_dir_non_dir) args.emplace_back("--no-overwrite-dir-non-dir");
  if (copy_uid_gid) {
    args.emplace_back("--chown-user");
    args.push_back(container_.config.user.empty() ? "0:0" : container_.config.user);
  }
  return run(
      "archive-put", std::move(args), std::string(kContainerRootInGuest), &source,
      [](std::string_view) { return true; }, path);
}

Result<void> ContainerFiles::export_root(const ArchiveSink& sink) {
  return run("export", {}, std::string(kContainerRootInGuest), nullptr, sink, "/");
}

Result<void> ContainerFiles::layer(const ArchiveSink& sink) {
  return run("layer", {std::string(kUpperInGuest)}, "", nullptr, sink, "/");
}

Result<std::vector<ContainerChange>> ContainerFiles::changes() {
  std::string out;
  KILN_TRY(run(
      "diff", {std::string(kUpperInGuest), std::string(kLowerInGuest)}, "", nullptr,
      [&out](std::string_view data) {
        out.append(data);
        return true;
      },
      "/"));
  std::vector<ContainerChange> changes;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    std::string_view line(out.data() + start, end - start);
    start = end + 1;
    if (line.size() < 3 || line[1] != ' ') continue;
    ContainerChange::Kind kind = line[0] == 'A'   ? ContainerChange::Kind::kAdded
                                 : line[0] == 'D' ? ContainerChange::Kind::kDeleted
                                                  : ContainerChange::Kind::kModified;
    changes.push_back({.path = std::string(line.substr(2)), .kind = kind});
  }
  return changes;
}

}  // namespace kiln::daemon::containers
