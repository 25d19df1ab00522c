// Test-only: builds tar archives in memory with libarchive (any name, any link target, optional gzip/zstd),
// for unit tests of layer application and archive loading. Not part of kiln_image.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace kiln::image {

class TarBuilder {
 public:
  enum class Filter { kNone, kGzip, kZstd };
  explicit TarBuilder(Filter filter = Filter::kNone) : archive_(archive_write_new()) {
    archive_write_set_format_pax_restricted(archive_);
    if (filter == Filter::kGzip) archive_write_add_filter_gzip(archive_);
    if (filter == Filter::kZstd) archive_write_add_filter_zstd(archive_);
    archive_write_set_bytes_in_last_block(archive_, 1);
    archive_write_open(archive_, &out_, nullptr, &TarBuilder::append, nullptr);
  }
  ~TarBuilder() { archive_write_free(archive_); }

  TarBuilder& file(const std::string& name, const std::string& content, int mode = 0644, int uid = 0,
                   int gid = 0, std::function<void(archive_entry*)> extra = {}) {
    return add(name, AE_IFREG, mode, uid, gid, content, [&](archive_entry* e) {
      archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
      if (extra) extra(e);
    });
  }
  TarBuilder& dir(const std::string& name, int mode = 0755, int uid = 0, int gid = 0) {
    return add(name, AE_IFDIR, mode, uid, gid, "", {});
  }
  TarBuilder& symlink(const std::string& name, const std::string& target) {
    return add(name, AE_IFLNK, 0777, 0, 0, "",
               [&](archive_entry* e) { archive_entry_set_symlink(e, target.c_str()); });
  }
  TarBuilder& hardlink(const std::string& name, const std::string& target) {
    return add(name, AE_IFREG, 0644, 0, 0, "", [&](archive_entry* e) {
      archive_entry_set_hardlink(e, target.c_str());
      archive_entry_set_size(e, 0);
    });
  }
  TarBuilder& node(const std::string& name, mode_t type, int major, int minor) {
    return add(name, type, 0600, 0, 0, "", [&](archive_entry* e) {
      archive_entry_set_rdevmajor(e, major);
      archive_entry_set_rdevminor(e, minor);
    });
  }
  std::string finish() {
    archive_write_close(archive_);
    return out_;
  }

 private:
  static la_ssize_t append(archive*, void* client, const void* buffer, size_t length) {
    static_cast<std::string*>(client)->append(static_cast<const char*>(buffer), length);
    return static_cast<la_ssize_t>(length);
  }
  TarBuilder& add(const std::string& name, mode_t type, int mode, int uid, int gid,
                  const std::string& content, const std::function<void(archive_entry*)>& extra) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, mode);
    archive_entry_set_uid(e, uid);
    archive_entry_set_gid(e, gid);
    archive_entry_set_mtime(e, 1700000000, 0);
    if (extra) extra(e);
    EXPECT_EQ(archive_write_header(archive_, e), ARCHIVE_OK) << archive_error_string(archive_);
    if (!content.empty()) archive_write_data(archive_, content.data(), content.size());
    archive_entry_free(e);
    return *this;
  }
  archive* archive_;
  std::string out_;
};

}  // namespace kiln::image
