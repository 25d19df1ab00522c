// `kiln image ...`: image subcommands. A thin layer over image::ImageStore: parse arguments, open the store
// at --root, call one store method, print the result. kilnd will serve the same ImageStore calls.
#include <fmt/core.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <memory>

#include "cli/command.h"
#include "cli/image_progress.h"
#include "common/json.h"
#include "image/image_store.h"

namespace kiln::cli {
namespace {

struct ImageGlobals {
  std::string root;
  std::vector<std::string> insecure_registries;
};

std::string default_root() {
  const char* env = std::getenv("KILN_ROOT");  // NOLINT(concurrency-mt-unsafe): read once at startup
  return env && *env ? env : "/var/lib/kiln";
}

std::string docker_config_path() {
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir && *dir)
    return std::string(dir) + "/config.json";  // NOLINT
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.docker/config.json";  // NOLINT
  return "";
}

Result<std::unique_ptr<image::ImageStore>> open_store(const ImageGlobals& globals) {
  return image::ImageStore::open({.root = globals.root,
                                  .insecure_registries = globals.insecure_registries,
                                  .docker_config = docker_config_path()});
}

// Runs `body` with an open store; errors become "kiln: message" and exit code 1.
template <typename Body>
Action with_store(std::shared_ptr<ImageGlobals> globals, Body body) {
  return [globals, body]() -> int {
    auto store = open_store(*globals);
    if (!store) {
      print_error(store.error().message());
      return 1;
    }
    Result<void> result = body(**store);
    if (!result) {
      print_error(result.error().message());
      return 1;
    }
    return 0;
  };
}

TerminalProgress make_progress() {
  return TerminalProgress(stdout, ::isatty(STDOUT_FILENO) == 1);
}

std::string time_ago(int64_t unix_seconds) {
  int64_t seconds = std::max<int64_t>(0, static_cast<int64_t>(std::time(nullptr)) - unix_seconds);
  if (seconds < 60) return "Less than a minute ago";
  if (seconds < 3600) return fmt::format("{} minutes ago", seconds / 60);
  if (seconds < 86400) return fmt::format("{} hours ago", seconds / 3600);
  return fmt::format("{} days ago", seconds / 86400);
}

std::string familiar(const std::string& normalized) {
  auto ref = image::ImageRef::parse(normalized);
  return ref ? ref->familiar() : normalized;
}

Json summary_json(const image::ImageSummary& image) {
  Json tags = Json::array();
  for (const std::string& tag : image.tags) tags.push_back(familiar(tag));
  Json digests = Json::array();
  for (const std::string& digest : image.repo_digests) digests.push_back(familiar(digest));
  return {{"Id", image.record.id.to_string()},
          {"RepoTags", tags},
          {"RepoDigests", digests},
          {"ManifestDigest", image.record.manifest_digest.to_string()},
          {"Created", image.record.created},
          {"Size", image.record.size}};
}

Result<void> list_images(image::ImageStore& store, bool quiet, const std::string& format) {
  auto images = KILN_TRY(store.list());
  if (format == "json") {
    Json out = Json::array();
    for (const auto& image : images) out.push_back(summary_json(image));
    fmt::print("{}\n", out.dump(2));
    return ok();
  }
  if (!quiet)
    fmt::print("{:<40} {:<16} {:<14} {:<24} {}\n", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE");
  for (const auto& image : images) {
    if (quiet) {
      fmt::print("{}\n", image.record.id.short_id());
      continue;
    }
    std::vector<std::pair<std::string, std::string>> rows;
    for (const std::string& tag : image.tags) {
      auto ref = image::ImageRef::parse(tag);
      if (ref) rows.emplace_back(ref->familiar_repository(), ref->tag().value_or("<none>"));
    }
    if (rows.empty()) rows.emplace_back("<none>", "<none>");
    for (const auto& [repository, tag] : rows) {
      fmt::print("{:<40} {:<16} {:<14} {:<24} {}\n", repository, tag, image.record.id.short_id(),
                 time_ago(image.record.added_at), human_size(static_cast<uint64_t>(image.record.size)));
    }
  }
  return ok();
}

Result<void> inspect_images(image::ImageStore& store, const std::vector<std::string>& names) {
  Json out = Json::array();
  for (const std::string& name : names) {
    auto details = KILN_TRY(store.inspect(name));
    Json json = summary_json(details.summary);
    Json layers = Json::array();
    for (const auto& layer : details.manifest.layers) layers.push_back(image::descriptor_to_json(layer));
    json["Manifest"] = {{"mediaType", details.manifest.media_type}, {"layers", layers}};
    Json diff_ids = Json::array();
    for (const auto& diff_id : details.config.diff_ids) diff_ids.push_back(diff_id.to_string());
    json["RootFS"] = {{"Type", "layers"}, {"Layers", diff_ids}, {"ChainID", details.chain_id.to_string()}};
    json["Architecture"] = details.config.architecture;
    json["Os"] = details.config.os;
    json["Config"] = details.config.raw.value("config", Json::object());
    if (details.rootfs_path) json["RootfsImage"] = *details.rootfs_path;
    out.push_back(std::move(json));
  }
  fmt::print("{}\n", out.dump(2));
  return ok();
}

Result<image::ImageRef> parse_ref(const std::string& text) {
  return image::ImageRef::parse(text);
}

}  // namespace

void register_image_commands(CLI::App& app, Action& chosen) {
  auto* image = app.add_subcommand("image", "Pull, load and manage OCI images");
  image->require_subcommand(1);
  // --root and --insecure-registry may also follow the subcommand (`kiln image ls --root DIR`).
  image->fallthrough();
  auto globals = std::make_shared<ImageGlobals>(ImageGlobals{.root = default_root()});
  image->add_option("--root", globals->root, "Kiln's state directory (env KILN_ROOT)")->capture_default_str();
  image->add_option("--insecure-registry", globals->insecure_registries,
                    "Registry (host[:port]) to reach over plain HTTP; loopback registries always are");

  {
    auto* cmd = image->add_subcommand("pull", "Pull an image from a registry");
    auto ref = std::make_shared<std::string>();
    auto user = std::make_shared<std::string>();
    auto parallel = std::make_shared<int>(3);
    cmd->add_option("image", *ref, "Image reference (busybox, host:5000/app:tag, name@sha256:...)")
        ->required();
    cmd->add_option("--user", *user, "USER:PASSWORD for the registry (default: from ~/.docker/config.json)");
    cmd->add_option("--max-concurrent-downloads", *parallel, "Layers downloaded at once")
        ->capture_default_str();
    cmd->callback([&chosen, globals, ref, user, parallel] {
      chosen = [globals, ref, user, parallel]() -> int {
        auto parsed = parse_ref(*ref);
        if (!parsed) {
          print_error(parsed.error().message());
          return 1;
        }
        auto store = image::ImageStore::open({.root = globals->root,
                                              .insecure_registries = globals->insecure_registries,
                                              .docker_config = docker_config_path(),
                                              .max_parallel_downloads = *parallel});
        if (!store) {
          print_error(store.error().message());
          return 1;
        }
        image::PullOptions options;
        if (!user->empty()) {
          auto colon = user->find(':');
          options.credentials = image::RegistryCredentials{
              .username = user->substr(0, colon),
              .password = colon == std::string::npos ? "" : user->substr(colon + 1)};
        }
        fmt::print("{}: Pulling from {}\n",
                   parsed->tag().value_or(parsed->digest() ? parsed->digest()->to_string() : ""),
                   parsed->familiar_repository());
        TerminalProgress progress = make_progress();
        auto id = (*store)->pull(*parsed, options, progress);
        if (!id) {
          print_error(id.error().message());
          return 1;
        }
        fmt::print("Status: Downloaded {} ({})\n", parsed->familiar(), id->short_id());
        return 0;
      };
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
    cmd->callback([&chosen, globals, source, target, user, chunk] {
      chosen = with_store(globals, [source, target, user, chunk](image::ImageStore& store) -> Result<void> {
        image::ImageRef ref = KILN_TRY(parse_ref(target->empty() ? *source : *target));
        image::PushOptions options{.chunk_size = *chunk};
        if (!user->empty()) {
          auto colon = user->find(':');
          options.credentials = image::RegistryCredentials{
              .username = user->substr(0, colon),
              .password = colon == std::string::npos ? "" : user->substr(colon + 1)};
        }
        fmt::print("The push refers to repository [{}]\n", ref.repository());
        TerminalProgress progress = make_progress();
        KILN_TRY(store.push(*source, ref, options, progress));
        return ok();
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("ls", "List images");
    auto quiet = std::make_shared<bool>(false);
    auto format = std::make_shared<std::string>("table");
    cmd->add_flag("-q,--quiet", *quiet, "Only image IDs");
    cmd->add_option("--format", *format, "table or json")->check(CLI::IsMember({"table", "json"}));
    cmd->callback([&chosen, globals, quiet, format] {
      chosen = with_store(
          globals, [quiet, format](image::ImageStore& store) { return list_images(store, *quiet, *format); });
    });
  }
  {
    auto* cmd = image->add_subcommand("inspect", "Show images' manifests and configs as JSON");
    auto names = std::make_shared<std::vector<std::string>>();
    cmd->add_option("image", *names, "Image names or IDs")->required();
    cmd->callback([&chosen, globals, names] {
      chosen =
          with_store(globals, [names](image::ImageStore& store) { return inspect_images(store, *names); });
    });
  }
  {
    auto* cmd = image->add_subcommand("rm", "Remove images (untag; delete when no tag is left)");
    auto names = std::make_shared<std::vector<std::string>>();
    auto force = std::make_shared<bool>(false);
    cmd->add_option("image", *names, "Image names or IDs")->required();
    cmd->add_flag("-f,--force", *force, "Remove by ID even if tagged in several repositories");
    cmd->callback([&chosen, globals, names, force] {
      chosen = with_store(globals, [names, force](image::ImageStore& store) -> Result<void> {
        for (const std::string& name : *names) {
          auto report = KILN_TRY(store.remove(name, *force));
          for (const std::string& ref : report.untagged) fmt::print("Untagged: {}\n", familiar(ref));
          for (const auto& id : report.deleted) fmt::print("Deleted: {}\n", id);
        }
        return ok();
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("tag", "Give an image another name");
    auto source = std::make_shared<std::string>();
    auto target = std::make_shared<std::string>();
    cmd->add_option("source", *source, "Image name or ID")->required();
    cmd->add_option("target", *target, "New reference")->required();
    cmd->callback([&chosen, globals, source, target] {
      chosen = with_store(globals, [source, target](image::ImageStore& store) -> Result<void> {
        return store.tag(*source, KILN_TRY(parse_ref(*target)));
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("load", "Load images from a docker save archive or an OCI layout");
    auto input = std::make_shared<std::string>();
    auto repository = std::make_shared<std::string>();
    cmd->add_option("-i,--input", *input, "Archive (tar, tar.gz) or OCI layout directory")->required();
    cmd->add_option("--repository", *repository, "Repository for OCI layouts whose ref names are bare tags");
    cmd->callback([&chosen, globals, input, repository] {
      chosen = with_store(globals, [input, repository](image::ImageStore& store) -> Result<void> {
        image::LoadOptions options;
        if (!repository->empty()) options.repository = *repository;
        TerminalProgress progress = make_progress();
        KILN_TRY(store.load(*input, options, progress));
        return ok();
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("save", "Save images to a tar (docker save format and OCI layout)");
    auto output = std::make_shared<std::string>();
    auto names = std::make_shared<std::vector<std::string>>();
    cmd->add_option("-o,--output", *output, "Output tar file")->required();
    cmd->add_option("image", *names, "Image names or IDs")->required();
    cmd->callback([&chosen, globals, output, names] {
      chosen = with_store(globals,
                          [output, names](image::ImageStore& store) { return store.save(*names, *output); });
    });
  }
  {
    auto* cmd = image->add_subcommand("import", "Create a one-layer image from a root filesystem tarball");
    auto tarball = std::make_shared<std::string>();
    auto ref = std::make_shared<std::string>();
    cmd->add_option("file", *tarball, "Tarball (plain, gzip or zstd)")->required();
    cmd->add_option("reference", *ref, "Name for the image");
    cmd->callback([&chosen, globals, tarball, ref] {
      chosen = with_store(globals, [tarball, ref](image::ImageStore& store) -> Result<void> {
        std::optional<image::ImageRef> tag;
        if (!ref->empty()) tag = KILN_TRY(parse_ref(*ref));
        auto id = KILN_TRY(store.import(*tarball, tag));
        fmt::print("{}\n", id);
        return ok();
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("prune", "Remove untagged images and unreferenced data");
    auto all = std::make_shared<bool>(false);
    cmd->add_flag("-a,--all", *all, "Remove all images, not only untagged ones");
    cmd->callback([&chosen, globals, all] {
      chosen = with_store(globals, [all](image::ImageStore& store) -> Result<void> {
        auto report = KILN_TRY(store.prune(*all));
        for (const auto& id : report.deleted_images) fmt::print("Deleted: {}\n", id);
        fmt::print("Total reclaimed space: {}\n", human_size(report.bytes_freed));
        return ok();
      });
    });
  }
  {
    auto* cmd = image->add_subcommand("rootfs", "Build (or find) an image's read-only EROFS root filesystem");
    auto name = std::make_shared<std::string>();
    cmd->add_option("image", *name, "Image name or ID")->required();
    cmd->callback([&chosen, globals, name] {
      chosen = with_store(globals, [name](image::ImageStore& store) -> Result<void> {
        TerminalProgress progress(stderr, ::isatty(STDERR_FILENO) == 1);
        fmt::print("{}\n", KILN_TRY(store.rootfs_image(*name, progress)));
        return ok();
      });
    });
  }
}

}  // namespace kiln::cli
