// Applies one image layer (a tar stream, optionally gzip- or zstd-compressed) onto a root directory, with
// OCI whiteouts (image-spec layer.md "Whiteouts"), hard links, symlinks, modes, ownership, xattrs and
// device nodes. Layers are untrusted: every path is resolved one component at a time from the root's fd,
// symlinks are followed only as if the root were "/", and an entry whose name or link target would leave
// the root is rejected with a LayerError, never written. Callers unpack into a private directory and
// delete it when this fails. One call = one thread; distinct roots may be unpacked concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "image/digest.h"

namespace kiln::image {

// The closed set of reasons a layer is refused; each has one message (layer_error_message).
enum class LayerError {
  kAbsolutePath,    // entry name starts with '/'
  kPathTraversal,   // entry name has a ".." component
  kSymlinkEscape,   // resolving the entry's parent through a symlink would leave the root
  kHardlinkEscape,  // a hard link's target is outside the root, missing, or a directory
  kNotADirectory,   // a parent component is a file
  kTooLarge,        // the layer claims or writes more than UnpackOptions::max_bytes
  kCorrupt,         // the archive or its compression is damaged or truncated
  kDiffIdMismatch,  // the uncompressed stream does not hash to the expected diff_id
  kBadEntry,        // an entry Kiln cannot represent (socket, empty name, bad root entry)
};

std::string_view layer_error_message(LayerError kind);
// A kProtocol Error: "<message>: <detail>".
Error make_layer_error(LayerError kind, std::string_view detail);

struct UnpackOptions {
  // Apply uid/gid from the archive (needs CAP_CHOWN); otherwise files belong to the caller.
  bool preserve_ownership = true;
  // Create character/block device nodes (needs CAP_MKNOD); when false or not permitted they are skipped.
  bool allow_devices = true;
  // Bytes of file content a layer may claim and write in total: guards against decompression bombs.
  uint64_t max_bytes = uint64_t{32} << 30;
  // Verified against the SHA-256 of the whole uncompressed tar stream when set.
  std::optional<Digest> expected_diff_id;
};

struct LayerStats {
  uint64_t entries = 0;
  uint64_t content_bytes = 0;
  Digest diff_id;  // no default: always computed  // SHA-256 of the uncompressed tar stream
};

// Applies the layer read from `layer_fd` (compression auto-detected) onto the directory `root_fd`.
Result<LayerStats> apply_layer(int root_fd, int layer_fd, const UnpackOptions& options);

// Reads every header of a (possibly compressed) tar without unpacking anything; the number of entries.
// Anything that is not a complete tar archive is kCorrupt. For import, which must not register garbage.
Result<uint64_t> verify_tar_layer(int layer_fd);

// SHA-256 of the uncompressed stream of a (possibly compressed) tar, for callers that need a diff_id
// without unpacking (import, load).
Result<Digest> compute_diff_id(int layer_fd);

}  // namespace kiln::image
