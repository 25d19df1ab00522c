// kiln.db's schema: the one list of migrations for kilnd's state database. Containers, templates, networks
// and volumes add their tables by appending steps here. Constant data; any thread.
#pragma once

#include "store/database.h"

namespace kiln::daemon {

// <root>/kiln.db.
extern const store::Schema kKilnDbSchema;

}  // namespace kiln::daemon
