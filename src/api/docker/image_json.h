// Images in the Docker Engine API's shapes (API 1.43): the summaries of GET /images/json, the document of
// GET /images/{name}/json, the layers of /history. Familiar names ("busybox:latest") as dockerd shows them.
#pragma once

#include "common/json.h"
#include "image/image_store.h"

namespace kiln::api::docker {

Json image_summary_json(const image::ImageSummary& image);
Json image_inspect_json(const image::ImageDetails& details);
// Newest layer first; the top entry carries the image ID and tags, the rest "<missing>", as for pulled
// images under dockerd.
Json image_history_json(const image::ImageDetails& details);
// (DELETE /images/{name} answers rest::remove_report_json: the Kiln API already uses Docker's shape.)
// "busybox" -> "busybox:latest", "a@sha256:.." as it is: how dockerd names an image in "No such image: X".
std::string image_display_name(std::string_view name);

}  // namespace kiln::api::docker
