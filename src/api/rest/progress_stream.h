// Long image operations (pull, push, load, rootfs builds) as Docker-style JSON message streams: one JSON
// object per line, as dockerd's /images/create and /images/load answer and as the docker CLI's jsonmessage
// reads them:
//   {"status": "Downloading", "id": "3f4d90098f5b", "progressDetail": {"current": 1024, "total": 4096}}
//   {"status": "Digest: sha256:..."}                  a message not tied to a layer
//   {"aux": {...}}                                   the result (the image ID, the pushed digest, ...)
//   {"error": "...", "errorDetail": {"message": "..."}}   the job failed after the stream began
// A job that fails before reporting anything gets an ordinary error response instead (404 for an unknown
// image, 401 for refused credentials), as dockerd does.
#pragma once

#include <functional>

#include "api/http/message.h"
#include "common/error.h"
#include "common/json.h"
#include "image/progress.h"

namespace kiln::api::rest {

// The job runs on its own thread and returns the "aux" object (null: none). The stream ends when the job
// does. A client that leaves sets the listener's cancelled() (noticed within a fraction of a second), which
// a pull obeys as dockerd's does; the connection's thread still waits for the job to end, so it never
// outlives the server.
using ProgressJob = std::function<Result<Json>(image::ProgressListener& progress)>;
Result<http::Reply> progress_stream(ProgressJob job);

// One stream line for a progress event or a message, without the newline.
Json progress_event_json(const image::ProgressEvent& event);
Json progress_message_json(std::string_view text);

}  // namespace kiln::api::rest
