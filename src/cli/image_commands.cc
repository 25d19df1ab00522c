// `kiln image ...`: image subcommands, served by kilnd's /v1/images (the store belongs to the daemon, as
// dockerd's does). Parse arguments, make one API call, render its answer: tables, JSON, and per-layer
// progress read back from the daemon's JSON message stream.
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <memory>

#include "cli/command.h"
#include "cli/image_progress.h"
#include "cli/vm_client.h"
#include "cli/vm_table.h"
#include "common/json.h"
#include "common/rfc3339.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"
#include "image/directory_tar.h"
#include "image/reference.h"
#include "image/registry_client.h"

namespace kiln::cli {
namespace {

std::string docker_config_path() {
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir && *dir)  // NOLINT(concurrency-mt-unsafe)
    return std::string(dir) + "/config.json";
  if (const char* home = std::getenv("HOME"); home && *home)  // NOLINT(concurrency-mt-unsafe)
    return std::string(home) + "/.docker/config.json";
  return "";
}

// X-Registry-Auth for `reference`'s registry: --user USER:PASSWORD, else the docker CLI's config.json, as
// `docker pull` does. The daemon never reads the user's files.
Result<api::http::Headers> registry_auth(const std::string& reference, const std::string& user) {
  api::http::Headers headers;
  auto ref = image::ImageRef::parse(reference);
  if (!ref) return headers;  // the daemon rejects it with the proper message
  std::optional<image::RegistryCredentials> credentials;
  if (!user.empty()) {
    auto colon = user.find(':');
    credentials =
        image::RegistryCredentials{.username = user.substr(0, colon),
                                   .password = colon == std::string::npos ? "" : user.substr(colon + 1)};
  } else if (std::string config = docker_config_path(); !config.empty()) {
    credentials = KILN_TRY(image::credentials_from_docker_config(config, ref->domain()));
  }
  if (credentials) headers.set("X-Registry-Auth", image::encode_registry_auth(*credentials, ref->domain()));
  return headers;
}

std::string image_target(std::string_view name, std::string_view suffix = {}) {
  std::string target = "/v1/images/" + percent_encode(name);
  if (!suffix.empty()) target += fmt::format("/{}", suffix);
  return target;
}

// Reads a JSON message stream (progress_stream.h on the daemon's side), drawing progress on `progress`.
// Returns the "aux" result; an "error" line becomes the Error.
Result<Json> follow_progress(const api::http::Client& client, const api::http::ClientRequest& request,
                             TerminalProgress& progress) {
  std::string pending;
  Json aux;
  std::optional<Error> failure;
  auto handle_line = [&](std::string_view line) {
    auto message = parse_json(line);
    if (!message || !message->is_object()) return;
    if (auto error = message->find("error"); error != message->end() && error->is_string()) {
      failure = Error(ErrorCategory::kInternal, error->get<std::string>());
      return;
    }
    if (auto found = message->find("aux"); found != message->end()) {
      aux = *found;
      return;
    }
    std::string status = message->value("status", "");
    std::string id = message->value("id", "");
    auto state = image::progress_state_from_string(status);
    if (!id.empty() && state) {
      Json detail = message->value("progressDetail", Json::object());
      progress.on_progress({.id = id,
                            .state = *state,
                            .current = detail.value("current", uint64_t{0}),
                            .total = detail.value("total", uint64_t{0})});
    } else if (!status.empty()) {
      progress.on_message(id.empty() ? status : fmt::format("{}: {}", id, status));
    }
  };
  api::http::Response response = KILN_TRY(client.request_stream(request, [&](std::string_view data) {
    pending.append(data);
    size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      handle_line(std::string_view(pending).substr(0, newline));
      pending.erase(0, newline + 1);
    }
    return true;
  }));
  if (response.status < 200 || response.status >= 300) return api::http::error_from_response(response);
  if (!pending.empty()) handle_line(pending);
  if (failure) return *failure;
  return aux;
}

TerminalProgress progress_on(std::FILE* out) {
  return TerminalProgress(out, ::isatty(::fileno(out)) == 1);
}

// An upload body read from `fd` (a file, or stdin when `length` is unknown: then sent chunked).
api::http::ClientRequest upload(std::string target, std::shared_ptr<UniqueFd> fd,
                                std::optional<uint64_t> length) {
  api::http::ClientRequest request{.method = "POST", .target = std::move(target)};
  request.headers.set("Content-Type", "application/x-tar");
  request.body_length = length;
  request.body_source = [fd](char* data, size_t size) -> Result<size_t> {
    for (;;) {
      ssize_t n = ::read(fd->get(), data, size);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::last_os_error("read the archive");
      return static_cast<size_t>(n);
    }
  };
  return request;
}

// The archive to upload for `path`: a file as it is, a directory (OCI layout) as a tar made in `scratch`,
// "-" or nothing: standard input.
struct UploadSource {
  std::shared_ptr<UniqueFd> fd;
  std::optional<uint64_t> length;
  std::optional<TempDir> scratch;
};

Result<UploadSource> open_upload(const std::string& path) {
  if (path.empty() || path == "-") {
    if (::isatty(STDIN_FILENO) == 1)
      return Error::invalid_argument("no archive given: use -i FILE or redirect standard input");
    return UploadSource{.fd = std::make_shared<UniqueFd>(::dup(STDIN_FILENO))};
  }
  UploadSource source;
  std::string file = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Error::last_os_error(fmt::format("open {}", path));
  if (S_ISDIR(st.st_mode)) {
    source.scratch = KILN_TRY(TempDir::create("kiln-upload-"));
    file = source.scratch->path() + "/layout.tar";
    KILN_TRY(image::write_directory_tar(path, file));
  }
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::last_os_error(fmt::format("open {}", path));
  if (::fstat(fd.get(), &st) != 0) return Error::last_os_error(fmt::format("stat {}", path));
  source.length = static_cast<uint64_t>(st.st_size);
  source.fd = std::make_shared<UniqueFd>(std::move(fd));
  return source;
}

Result<void> write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::last_os_error("write the archive");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return ok();
}

std::string short_id(const std::string& id) {
  return id.substr(id.find(':') + 1, 12);
}

void print_image_table(const Json& images, bool quiet) {
  if (!quiet)
    fmt::print("{:<40} {:<16} {:<14} {:<24} {}\n", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE");
  for (const Json& image : images) {
    std::string id = short_id(image.value("Id", ""));
    if (quiet) {
      fmt::print("{}\n", id);
      continue;
    }
    // As docker images: when the image was built (its config), else when the store got it.
    std::time_t now = std::time(nullptr);
    auto built = parse_rfc3339(image.value("Created", ""));
    std::string created = time_ago(built ? *built : image.value("Added", std::time_t{0}), now);
    std::vector<std::pair<std::string, std::string>> rows;
    for (const Json& tag : image.value("RepoTags", Json::array())) {
      auto ref = image::ImageRef::parse(tag.get<std::string>());
      if (ref) rows.emplace_back(ref->familiar_repository(), ref->tag().value_or("<none>"));
    }
    if (rows.empty()) rows.emplace_back("<none>", "<none>");
    for (const auto& [repository, tag] : rows) {
      fmt::print("{:<40} {:<16} {:<14} {:<24} {}\n", repository, tag, id, created,
                 human_size(image.value("Size", uint64_t{0})));
    }
  }
}

}  // namespace

void register_image_commands(CLI::App& app, std::shared_ptr<DaemonAddress> address, Action& chosen) {
  auto* image = app.add_subcommand("image", "Pull, load and manage OCI images (kilnd's image store)");
  image->require_subcommand(1);
  image->fallthrough();  // -H may follow the subcommands (`kiln image ls -H unix:///tmp/kiln.sock`)

  {
    auto* cmd = image->add_subcommand("pull", "Pull an image from a registry");
    auto ref = std::make_shared<std::string>();
    auto user = std::make_shared<std::string>();
    cmd->add_option("image", *ref, "Image reference (busybox, host:5000/app:tag, name@sha256:...)")
        ->required();
    cmd->add_option("--user", *user, "USER:PASSWORD for the registry (default: from ~/.docker/config.json)");
    cmd->callback([&chosen, address, ref, user] {
      chosen = with_api(address, [ref, user](const VmApi& api) -> Result<int> {
        api::http::ClientRequest request{.method = "POST",
                                         .target = "/v1/images/pull?reference=" + percent_encode(*ref),
                                         .headers = KILN_TRY(registry_auth(*ref, *user))};
        TerminalProgress progress = progress_on(stdout);
        KILN_TRY(follow_progress(api.client(), request, progress));
        auto parsed = image::ImageRef::parse(*ref);
        if (parsed) fmt::print("{}\n", parsed->to_string());
        return 0;
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("push", "Push an image to a registry");
    auto source = std::make_shared<std::string>();
    auto target = std::make_shared<std::string>();
    auto user = std::make_shared<std::string>();
    auto chunk = std::make_shared<uint64_t>(0);
    cmd->add_option("image", *source, "Local image (name or ID)")->required();
    cmd->add_option("target", *target, "Destination reference (default: the image name)");
    cmd->add_option("--user", *user, "USER:PASSWORD for the registry");
    cmd->add_option("--chunk-size", *chunk, "Upload in PATCH chunks of this many bytes (0: one PUT)");
    cmd->callback([&chosen, address, source, target, user, chunk] {
      chosen = with_api(address, [source, target, user, chunk](const VmApi& api) -> Result<int> {
        const std::string& destination = target->empty() ? *source : *target;
        std::string query = fmt::format("?reference={}", percent_encode(destination));
        if (*chunk > 0) query += fmt::format("&chunk_size={}", *chunk);
        api::http::ClientRequest request{.method = "POST",
                                         .target = image_target(*source, "push") + query,
                                         .headers = KILN_TRY(registry_auth(destination, *user))};
        TerminalProgress progress = progress_on(stdout);
        Json result = KILN_TRY(follow_progress(api.client(), request, progress));
        if (result.is_object() && result.contains("Digest"))
          fmt::print("{}: digest: {}\n", result.value("Tag", ""), result.value("Digest", ""));
        return 0;
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("ls", "List images");
    auto quiet = std::make_shared<bool>(false);
    auto format = std::make_shared<std::string>("table");
    cmd->add_flag("-q,--quiet", *quiet, "Only image IDs");
    cmd->add_option("--format", *format, "table or json")->check(CLI::IsMember({"table", "json"}));
    cmd->callback([&chosen, address, quiet, format] {
      chosen = with_api(address, [quiet, format](const VmApi& api) -> Result<int> {
        Json images = KILN_TRY(api.call("GET", "/v1/images"));
        if (*format == "json") {
          fmt::print("{}\n", images.dump(2));
        } else {
          print_image_table(images, *quiet);
        }
        return 0;
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("inspect", "Show images' manifests and configs as JSON");
    auto names = std::make_shared<std::vector<std::string>>();
    cmd->add_option("image", *names, "Image names or IDs")->required();
    cmd->callback([&chosen, address, names] {
      chosen = with_api(address, [names](const VmApi& api) -> Result<int> {
        Json out = Json::array();
        for (const std::string& name : *names)
          out.push_back(KILN_TRY(api.call("GET", image_target(name, "json"))));
        fmt::print("{}\n", out.dump(2));
        return 0;
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("rm", "Remove images (untag; delete when no tag is left)");
    auto names = std::make_shared<std::vector<std::string>>();
    auto force = std::make_shared<bool>(false);
    cmd->add_option("image", *names, "Image names or IDs")->required();
    cmd->add_flag("-f,--force", *force, "Remove by ID even if tagged in several repositories");
    cmd->callback([&chosen, address, names, force] {
      chosen = with_api(address, [names, force](const VmApi& api) -> Result<int> {
        int code = 0;
        for (const std::string& name : *names) {
          // Like docker rmi: go on with the other names, report each failure, exit 1 if any failed.
          auto report = api.call("DELETE", image_target(name) + (*force ? "?force=1" : ""));
          if (!report) {
            print_error(report.error().message());
            code = 1;
            continue;
          }
          for (const Json& entry : *report) {
            if (entry.contains("Untagged"))
              fmt::print("Untagged: {}\n", entry["Untagged"].get<std::string>());
            if (entry.contains("Deleted")) fmt::print("Deleted: {}\n", entry["Deleted"].get<std::string>());
          }
        }
        return code;
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("tag", "Give an image another name");
    auto source = std::make_shared<std::string>();
    auto target = std::make_shared<std::string>();
    cmd->add_option("source", *source, "Image name or ID")->required();
    cmd->add_option("target", *target, "New reference")->required();
    cmd->callback([&chosen, address, source, target] {
      chosen = with_api(address, [source, target](const VmApi& api) -> Result<int> {
        KILN_TRY(api.call("POST", image_target(*source, "tag") + "?reference=" + percent_encode(*target)));
        return 0;
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("load", "Load images from a docker save archive or an OCI layout");
    auto input = std::make_shared<std::string>();
    auto repository = std::make_shared<std::string>();
    cmd->add_option("-i,--input", *input,
                    "Archive (tar, tar.gz), OCI layout directory, or - (default: stdin)");
    cmd->add_option("--repository", *repository, "Repository for OCI layouts whose ref names are bare tags");
    cmd->callback([&chosen, address, input, repository] {
      chosen = with_api(address, [input, repository](const VmApi& api) -> Result<int> {
        UploadSource source = KILN_TRY(open_upload(*input));
        std::string target = "/v1/images/load";
        if (!repository->empty()) target += "?repository=" + percent_encode(*repository);
        TerminalProgress progress = progress_on(stdout);
        KILN_TRY(follow_progress(api.client(), upload(target, source.fd, source.length), progress));
        return 0;
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("save", "Save images to a tar (docker save format and OCI layout)");
    auto output = std::make_shared<std::string>();
    auto names = std::make_shared<std::vector<std::string>>();
    cmd->add_option("-o,--output", *output, "Output tar file (default: standard output)");
    cmd->add_option("image", *names, "Image names or IDs")->required();
    cmd->callback([&chosen, address, output, names] {
      chosen = with_api(address, [output, names](const VmApi& api) -> Result<int> {
        if (output->empty() && ::isatty(STDOUT_FILENO) == 1)
          return Error::invalid_argument(
              "refusing to write a tar to a terminal: use -o FILE or redirect the output");
        std::string query;
        for (const std::string& name : *names)
          query += (query.empty() ? "?names=" : "&names=") + percent_encode(name);
        // Into a temporary file next to the output, renamed at the end: a failed save leaves no half tar.
        std::string partial = output->empty() ? "" : *output + ".partial";
        UniqueFd fd(output->empty()
                        ? ::dup(STDOUT_FILENO)
                        : ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!fd) return Error::last_os_error(fmt::format("open {}", output->empty() ? "stdout" : partial));
        std::optional<Error> write_error;
        auto response =
            api.client().request_stream({.target = "/v1/images/save" + query}, [&](std::string_view data) {
              if (auto written = write_all(fd.get(), data); !written) {
                write_error = written.error();
                return false;
              }
              return true;
            });
        auto discard = [&] {
          if (!partial.empty()) ::unlink(partial.c_str());
        };
        if (!response) {
          discard();
          return response.error();
        }
        if (response->status < 200 || response->status >= 300) {
          discard();
          return api::http::error_from_response(*response);
        }
        if (write_error) {
          discard();
          return *write_error;
        }
        if (!partial.empty()) {
          if (::fsync(fd.get()) != 0 || ::rename(partial.c_str(), output->c_str()) != 0) {
            Error error = Error::last_os_error(fmt::format("write {}", *output));
            discard();
            return error;
          }
        }
        return 0;
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("import", "Create a one-layer image from a root filesystem tarball");
    auto tarball = std::make_shared<std::string>();
    auto ref = std::make_shared<std::string>();
    cmd->add_option("file", *tarball, "Tarball (plain, gzip or zstd), or - for standard input")->required();
    cmd->add_option("reference", *ref, "Name for the image");
    cmd->callback([&chosen, address, tarball, ref] {
      chosen = with_api(address, [tarball, ref](const VmApi& api) -> Result<int> {
        UploadSource source = KILN_TRY(open_upload(*tarball));
        std::string target = "/v1/images/import";
        if (!ref->empty()) target += "?reference=" + percent_encode(*ref);
        auto response = KILN_TRY(api.client().request(upload(target, source.fd, source.length)));
        if (response.status < 200 || response.status >= 300) return api::http::error_from_response(response);
        Json answer = KILN_TRY(parse_json(response.body));
        fmt::print("{}\n", answer.value("Id", ""));
        return 0;
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("prune", "Remove untagged images and unreferenced data");
    auto all = std::make_shared<bool>(false);
    cmd->add_flag("-a,--all", *all, "Remove all images, not only untagged ones");
    cmd->callback([&chosen, address, all] {
      chosen = with_api(address, [all](const VmApi& api) -> Result<int> {
        Json report = KILN_TRY(api.call("POST", std::string("/v1/images/prune") + (*all ? "?all=1" : "")));
        for (const Json& entry : report.value("ImagesDeleted", Json::array()))
          fmt::print("Deleted: {}\n", entry.value("Deleted", ""));
        fmt::print("Total reclaimed space: {}\n", human_size(report.value("SpaceReclaimed", uint64_t{0})));
        return 0;
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("rootfs", "Build (or find) an image's read-only EROFS root filesystem");
    auto name = std::make_shared<std::string>();
    cmd->add_option("image", *name, "Image name or ID")->required();
    cmd->callback([&chosen, address, name] {
      chosen = with_api(address, [name](const VmApi& api) -> Result<int> {
        TerminalProgress progress = progress_on(stderr);
        Json result = KILN_TRY(follow_progress(
            api.client(), {.method = "POST", .target = image_target(*name, "rootfs")}, progress));
        fmt::print("{}\n", result.value("Rootfs", ""));
        return 0;
      });
    });
  }
}

}  // namespace kiln::cli
