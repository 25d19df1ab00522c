// Images as the Kiln API v1 spells them (docs/api/kiln-v1.yaml): Docker's field names where Docker has the
// field (Id, RepoTags, RepoDigests, Size, RootFS, Config), familiar names ("busybox:latest") in RepoTags.
#pragma once

#include "common/json.h"
#include "image/image_store.h"

namespace kiln::api::rest {

Json image_summary_json(const image::ImageSummary& image);
Json image_details_json(const image::ImageDetails& details);
// [{"Untagged": "busybox:latest"}, {"Deleted": "sha256:..."}], as Docker's DELETE /images/{name}.
Json remove_report_json(const image::RemoveReport& report);
Json prune_report_json(const image::PruneReport& report);

}  // namespace kiln::api::rest
